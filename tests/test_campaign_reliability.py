"""kill -9 a campaign 20 times, resume after each: no point lost, none duplicated, no orphan part kept.

The replay twin paces itself on the wall clock (``--pace``) so the kills land while points are being
measured, written and journaled. One kill in four comes at a random moment; the others are timed by
watching the parts directory: the campaign is killed the moment a new sample part appears, which lands
between the part's rename into place and its journal line (the window a resume must clean up) about half
the time on a busy machine, so at least one of the fifteen does. The final dataset must hold exactly the
points of an uninterrupted run of the same spec, each once, with all its samples, and each resume must
remove exactly the leftovers its kill left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers import slicebed_argv

from collectors.dataset import load_qos_csv
from controller.campaign.export import journaled_table
from controller.campaign.journal import journaled_parts
from controller.cli import main
from core.errors import InputError
from core.retry import Attempts
from core.runstore import Run, RunStore

KILLS = 20
PACE = "0.01"  # 10 testbed seconds per point -> 0.1 s of wall time

pytestmark = pytest.mark.slow


def kill9_spec(tmp_path: Path, microopt_csv: Path) -> Path:
    """160 points of 10 s: about 18 s of paced work, more than 20 short sessions get through."""
    document = {
        "name": "kill9", "seed": 4,
        "testbed": {"backend": "replay", "replay": {"source": "dataset", "dataset": str(microopt_csv)}},
        "slices": [{"name": "embb", "bounds": {"cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40]}}],
        "grid": {"users": {"start": 1, "stop": 5, "step": 1}, "bandwidth_mbps": [10, 20, 30, 40],
                 "cpu_millicores": {"start": 500, "stop": 4000, "step": 500}},
        "dwell_s": 10, "order": {"randomize": True, "seed": 2},
    }
    path = tmp_path / "kill9.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def start(runs: Path, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(slicebed_argv(*argv, "--pace", PACE, runs=runs),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_until_measuring(runs: Path, process: subprocess.Popen[bytes], timeout_s: float = 60) -> Run | None:
    """The run once ``process`` has started its session (metadata names its pid); None if it exited."""
    for _ in Attempts(timeout_s, 0.02):
        if process.poll() is not None:
            return None
        for run in RunStore(runs).list():
            try:
                sessions = run.metadata().get("sessions", [])
            except InputError:  # metadata.json of a run being created, not written yet
                continue
            if sessions and sessions[-1]["pid"] == process.pid:
                return run
    raise AssertionError(f"the campaign process {process.pid} did not start a session in {timeout_s} s")


def leftovers(run: Run) -> set[str]:
    """Files under samples/ the journal does not vouch for: parts renamed into place but never journaled, and
    temporary files of a part being written."""
    directory = run.path / "samples"
    present = {path.name for path in directory.iterdir()} if directory.is_dir() else set()
    return present - {path.name for path in journaled_parts(run)}


def unjournaled_parts(names: set[str]) -> set[str]:
    """The whole parts (renamed into place) among leftover file names."""
    return {name for name in names if name.startswith("part-")}


def kill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the process group we started: the campaign and nothing else
    process.wait()


def wait_for_clean_start(run: Run, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Wait until the resumed ``process`` has removed the previous kill's leftovers (it does before measuring)."""
    for _ in Attempts(timeout_s, 0.005):
        if not leftovers(run) or process.poll() is not None:
            return
    raise AssertionError(f"the resumed campaign kept {leftovers(run)} for {timeout_s} s")


def kill_when_a_part_appears(run: Run, process: subprocess.Popen[bytes], timeout_s: float = 60) -> bool:
    """SIGKILL ``process`` the moment a new sample part is renamed into place (its journal line is written and
    fsynced only after that); False if the campaign ended first."""
    directory = run.path / "samples"
    known = {path.name for path in directory.glob("part-*")}
    for _ in Attempts(timeout_s, 0):  # no pause: the kill must land before the journal line
        if process.poll() is not None:
            return False
        if {path.name for path in directory.glob("part-*")} - known:
            kill(process)
            return True
    raise AssertionError(f"no new sample part in {timeout_s} s")


def test_twenty_kill_9s_lose_nothing_and_duplicate_nothing(tmp_path: Path, microopt_csv: Path) -> None:
    spec = kill9_spec(tmp_path, microopt_csv)
    reference_runs = tmp_path / "reference"
    assert main(["--quiet", "--runs-dir", str(reference_runs), "campaign", "run", str(spec)]) == 0
    reference = journaled_table(RunStore(reference_runs).list()[0])

    runs = tmp_path / "runs"
    rng = random.Random(20261121)
    process = start(runs, "campaign", "run", str(spec))
    run: Run | None = None
    left_by_kill: list[set[str]] = []
    for number in range(KILLS):
        found = wait_until_measuring(runs, process)
        assert found is not None, f"the campaign finished after only {number} kills: {process.stderr.read()!r}"
        run = found
        wait_for_clean_start(run, process)
        if number % 4:
            assert kill_when_a_part_appears(run, process), f"the campaign finished before kill {number + 1}"
        else:
            time.sleep(rng.uniform(0.0, 0.8))
            assert process.poll() is None, "the campaign finished before the kill"
            kill(process)
        left_by_kill.append(leftovers(run))
        process = start(runs, "campaign", "resume", run.id)
    assert process.wait(timeout=120) == 0, process.stderr.read()
    assert run is not None

    in_the_window = [names for names in left_by_kill if unjournaled_parts(names)]
    assert in_the_window, f"no kill landed between a part's write and its journal line: {left_by_kill}"
    removed = [{Path(part).name for part in event["parts"]} for event in run.events()
               if event["event"] == "orphan_parts_removed"]
    assert removed == [names for names in left_by_kill if names]  # each resume removed exactly what its kill left
    assert not leftovers(run)

    samples = journaled_table(run)
    assert set(samples["point"]) == set(reference["point"])  # no point lost
    assert not samples.duplicated(["point", "time"]).any()  # none measured twice into the dataset
    assert samples.groupby("point").size().eq(10).all()
    assert len(samples) == len(reference) == 160 * 10
    assert len(load_qos_csv(run.path / "dataset-embb.csv")) == 160 * 10
    metadata = run.metadata()
    assert metadata["status"] == "completed" and len(metadata["sessions"]) == KILLS + 1
    parts = sorted((run.path / "samples").iterdir())
    assert len(parts) == 160 and not [part for part in parts if part.name.startswith(".")]
