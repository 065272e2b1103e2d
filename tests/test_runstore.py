"""The run store: fresh directories, provenance, Parquet parts and the event log."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from core.errors import InputError, RunStopped
from core.provenance import slicebed_version
from core.runstore import EVENTS, RUNS_ENV, Run, RunStore, runs_root

SPEC = {"name": "unit", "rounds": 2, "slices": [{"name": "embb"}]}


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """A fresh run under a temporary root."""
    return RunStore(tmp_path / "runs").create("unit", SPEC)


def test_runs_created_in_the_same_second_get_their_own_directories(tmp_path: Path) -> None:
    """Runs of one name started within one second never share (or overwrite) a directory."""
    store = RunStore(tmp_path)
    runs = [store.create("same", SPEC) for _ in range(2)]
    while runs[-1].id[:16] != runs[-2].id[:16] and len(runs) < 20:  # the stamp has one-second resolution
        runs.append(store.create("same", SPEC))
    assert runs[-1].id[:16] == runs[-2].id[:16]
    paths = {r.path for r in runs}
    assert len(paths) == len(runs)
    assert all((path / "metadata.json").is_file() for path in paths)
    assert [r.path for r in store.list()] == sorted(paths)


def test_metadata_records_provenance(run: Run) -> None:
    """metadata.json holds the version, git commit, host, packages, start time and running status."""
    metadata = json.loads((run.path / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["run_id"] == run.id and metadata["name"] == "unit" and metadata["kind"] == "loop"
    assert metadata["slicebed_version"] == slicebed_version()
    assert "git_commit" in metadata
    assert metadata["git_commit"] is None or len(metadata["git_commit"].removesuffix("-dirty")) == 40
    assert metadata["host"]["hostname"] and metadata["host"]["python"]
    assert {"torch", "numpy", "pandas", "pydantic"} <= set(metadata["packages"])
    assert metadata["status"] == "running" and metadata["finished"] is None
    assert datetime.fromisoformat(metadata["started"]).tzinfo is not None
    assert yaml.safe_load((run.path / "spec.yaml").read_text(encoding="utf-8")) == SPEC
    assert run.models_dir.is_dir() and run.plots_dir.is_dir()


@pytest.mark.parametrize(("explicit", "env", "expected"), [
    ("given", "from-env", "given"),
    (None, "from-env", "from-env"),
    (None, None, "runs"),
])
def test_runs_root_precedence(monkeypatch: pytest.MonkeyPatch, explicit: str | None, env: str | None,
                              expected: str) -> None:
    """An explicit root beats $SLICEBED_RUNS, which beats ./runs."""
    if env is None:
        monkeypatch.delenv(RUNS_ENV, raising=False)
    else:
        monkeypatch.setenv(RUNS_ENV, env)
    assert runs_root(explicit) == Path(expected)
    assert RunStore(explicit).root == Path(expected)


def test_store_without_root_creates_runs_under_the_env_directory(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """RunStore() puts runs in $SLICEBED_RUNS when no root is given."""
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "env-runs"))
    created = RunStore().create("env", SPEC)
    assert created.path.parent == tmp_path / "env-runs"


def test_samples_are_appended_as_parts_and_read_back_in_order(run: Run) -> None:
    """Each append is a new part; read_samples concatenates them in write order (past part 9 too)."""
    frames = [pd.DataFrame({"part": [index] * 3, "qos": [index + 0.1, index + 0.2, index + 0.3]})
              for index in range(12)]
    paths = [run.append_samples(frame) for frame in frames]
    assert [p.name for p in paths] == [f"part-{index:06d}.parquet" for index in range(12)]
    assert not list((run.path / "samples").glob(".*tmp"))

    pd.testing.assert_frame_equal(run.read_samples(), pd.concat(frames, ignore_index=True))


def test_tables_are_kept_apart(run: Run) -> None:
    """Parts of another table do not leak into samples; an unwritten table reads as empty."""
    run.append_samples(pd.DataFrame({"x": [1]}), table="validation")
    assert run.read_samples().empty
    assert run.read_samples("validation")["x"].tolist() == [1]


def test_events_are_appended_in_order(run: Run) -> None:
    """log_event appends one JSON line per event, after run_started."""
    run.log_event("sweep", point=1)
    run.log_event("sweep", point=2)
    lines = (run.path / EVENTS).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    events = list(run.events())
    assert [e["event"] for e in events] == ["run_started", "sweep", "sweep"]
    assert [e.get("point") for e in events[1:]] == [1, 2]


def test_a_torn_last_event_line_is_skipped(run: Run) -> None:
    """A half-written line (a crash mid-write) is skipped; an event logged after it is still read."""
    run.log_event("sweep", point=1)
    with (run.path / EVENTS).open("a", encoding="utf-8") as handle:
        handle.write('{"time": "2026-01-01T00:00:00", "event": "swe')
    assert [e["event"] for e in run.events()] == ["run_started", "sweep"]

    run.log_event("after_crash")
    assert [e["event"] for e in run.events()] == ["run_started", "sweep", "after_crash"]


@pytest.mark.parametrize("status", ["completed", "failed", "interrupted"])
def test_finish_records_status_and_end_time(run: Run, status: str) -> None:
    """finish() sets status and finished (not before started), keeps extra fields and logs the end."""
    run.finish(status, error="boom")
    metadata = run.metadata()
    assert metadata["status"] == status and metadata["error"] == "boom"
    assert datetime.fromisoformat(metadata["finished"]) >= datetime.fromisoformat(metadata["started"])
    last = list(run.events())[-1]
    assert last["event"] == "run_finished" and last["status"] == status


@pytest.mark.parametrize(("error", "status", "recorded"), [
    (KeyboardInterrupt(), "interrupted", None),
    (RunStopped("disk full while writing samples"), "stopped", "disk full while writing samples"),
    (ValueError("boom"), "failed", "ValueError: boom"),
])
def test_an_error_in_the_block_is_recorded_and_raised(run: Run, error: BaseException, status: str,
                                                      recorded: str | None) -> None:
    with pytest.raises(type(error)), run.finishing_on_error():
        raise error
    metadata = run.metadata()
    assert metadata["status"] == status and metadata["finished"] and metadata.get("error") == recorded


def test_open_finds_runs_by_id_and_by_path(run: Run) -> None:
    """A run opens by its id under the root or by its path; an unknown id is an InputError."""
    store = RunStore(run.path.parent)
    assert store.open(run.id).path == run.path
    assert store.open(run.path).path == run.path
    with pytest.raises(InputError, match="no such run"):
        store.open("20990101T000000Z-missing-000000")
