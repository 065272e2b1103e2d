"""kill -9 a campaign at 20 random moments, resume after each: no point lost, none duplicated.

The replay twin paces itself on the wall clock (``--pace``) so the kills land while points are being
measured, written and journaled. The final dataset must hold exactly the points of an uninterrupted
run of the same spec, each once, with all its samples.
"""

from __future__ import annotations

import json
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
from controller.cli import main
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
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        for run in RunStore(runs).list():
            try:
                sessions = run.metadata().get("sessions", [])
            except Exception:
                continue
            if sessions and sessions[-1]["pid"] == process.pid:
                return run
        time.sleep(0.02)
    raise AssertionError(f"the campaign process {process.pid} did not start a session in {timeout_s} s")


def test_twenty_kill_9s_lose_nothing_and_duplicate_nothing(tmp_path: Path, microopt_csv: Path) -> None:
    spec = kill9_spec(tmp_path, microopt_csv)
    reference_runs = tmp_path / "reference"
    assert main(["--quiet", "--runs-dir", str(reference_runs), "campaign", "run", str(spec)]) == 0
    reference = journaled_table(RunStore(reference_runs).list()[0])

    runs = tmp_path / "runs"
    rng = random.Random(20261121)
    process = start(runs, "campaign", "run", str(spec))
    run: Run | None = None
    moments = []
    while len(moments) < KILLS:
        found = wait_until_measuring(runs, process)
        assert found is not None, f"the campaign finished after only {len(moments)} kills: {process.stderr.read()!r}"
        run = found
        moment = rng.uniform(0.0, 0.8)
        time.sleep(moment)
        assert process.poll() is None, "the campaign finished before the kill"
        os.killpg(process.pid, signal.SIGKILL)  # the process group we started: the campaign and nothing else
        process.wait()
        moments.append(moment)
        process = start(runs, "campaign", "resume", run.id)
    assert process.wait(timeout=120) == 0, process.stderr.read()
    assert run is not None

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
    print(json.dumps({"kills": len(moments), "orphans_removed": sum(
        len(event["parts"]) for event in run.events() if event["event"] == "orphan_parts_removed")}))
