"""The loop closes on the replay twin: a level that fails triggers a targeted sweep and then passes, the safety
guard falls back from a starved allocation, and a killed loop resumes without measuring a point twice.

The twin replays a cliff: 2 users get 2 Mbps each below 30 Mbps of bandwidth and 6 Mbps from 30 Mbps on, whatever
the CPU. The first round measures only 10 and 40 Mbps, so the model draws a smooth line between them and MicroOpt
picks a bandwidth under the cliff: validation must catch it and the loop must find the cliff.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import assert_one_error_line, run_cli, slicebed_argv, venv_environment
from rich.progress import Progress

from controller.campaign.journal import completed_points
from controller.loop.journal import LoopJournal
from controller.loop.runner import ClosedLoop, LoopInputs
from controller.loop.session import create_loop_run
from controller.spec import load_spec
from controller.testbeds import open_testbed
from controller.testbeds.replay import ReplayTestbed
from core.runstore import RunStore

pytestmark = pytest.mark.slow

CLIFF_MBPS = 30.0


@pytest.fixture(scope="module")
def cliff_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MicroOpt-format dataset of the cliff: 40 samples (std 0.3 Mbps) at each grid point."""
    rng = np.random.default_rng(0)
    rows = []
    start = pd.Timestamp("2026-01-01")
    for users in (1, 2, 3):
        for bandwidth in (5.0, 10.0, 29.0, CLIFF_MBPS, 40.0):
            for cpu in (500.0, 4000.0):
                qos = rng.normal(2.0 if bandwidth < CLIFF_MBPS else 6.0, 0.3, 40).clip(0.1)
                for second, value in enumerate(qos):
                    rows.append({"time": start + pd.Timedelta(seconds=len(rows) + second), "total_bandwidth_usage":
                                 value * users, "cpu": cpu, "bw": bandwidth, "n_users": float(users), "qos": value})
    path = tmp_path_factory.mktemp("cliff") / "cliff.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def cliff_spec(directory: Path, dataset: Path, **changes: Any) -> Path:
    """Constant 2 users at q_thresh 4 Mbps, beta_thresh 0.2; a first sweep at 10 and 40 Mbps only; 4 rounds."""
    spec: dict[str, Any] = {
        "name": "cliff",
        "seed": 5,
        "rounds": 4,
        "testbed": {"backend": "replay", "replay": {"source": "dataset", "dataset": str(dataset), "settle_s": 0}},
        "slices": [{"name": "embb", "q_thresh": 4.0, "beta_thresh": 0.2,
                    "bounds": {"cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40]},
                    "traffic": [{"kind": "constant", "users": 2}]}],
        "sweep": {"cpu_millicores": [500, 4000], "bandwidth_mbps": [10, 40], "dwell_s": 20,
                  "targeted": {"around": 3, "frontier": 3}},
        "training": {"epochs": 400, "settle_s": 0},
        "validation": {"window_s": 40},
    }
    for key, value in changes.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    path = directory / "cliff.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def run_loop(spec_path: Path, runs: Path, capfd: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    torch.set_num_threads(1)
    code, out, _err = run_cli(["--runs-dir", str(runs), "loop", "run", str(spec_path), "--json"], capfd)
    return code, json.loads(out)


def test_a_failed_level_triggers_a_targeted_sweep_and_then_passes(tmp_path: Path, cliff_csv: Path,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    code, summary = run_loop(cliff_spec(tmp_path, cliff_csv), tmp_path / "runs", capfd)
    run = RunStore(tmp_path / "runs").open(summary["run"])
    results = run.read_samples("results")
    first = results[results["round"] == 1].iloc[0]
    assert first["bandwidth_mbps"] < CLIFF_MBPS and first["verdict"] == "fail"  # the smooth model was wrong
    assert first["achieved_degradation"] > 0.9 and first["p_value"] < 0.05

    journal = LoopJournal.read(run)
    assert [event["reason"] for event in run.events() if event["event"] == "sweep_planned"][:2] == ["design",
                                                                                                 "targeted"]
    targeted = journal.plans[2]
    assert 1 <= len(targeted) <= 6 and {point.users for point in targeted} == {2}
    assert any(point.bandwidth_mbps > first["bandwidth_mbps"] and point.cpu_millicores > first["cpu_millicores"]
               for point in targeted)  # around the failed allocation, more of both first
    swept = run.read_samples()
    assert set(swept[swept["round"] == 2]["point"]) == {point.id for point in targeted}  # measured as planned

    assert code == 0 and summary["holds"] and summary["verdicts"] == {"1": "pass"}
    last = results.iloc[-1]
    assert last["verdict"] == "pass" and last["bandwidth_mbps"] >= CLIFF_MBPS
    assert last["achieved_degradation"] <= 0.2 and 2 <= last["round"] <= 4
    assert list(results["round"]) == list(range(1, int(last["round"]) + 1))  # one window per round until it passed
    trained = run.read_samples("validation")  # round 1's window joined round 2's training data
    model_events = [event for event in run.events() if event["event"] == "model_trained"]
    assert model_events[1]["samples"] == len(swept[swept["round"] <= 2]) + len(trained[trained["round"] == 1])
    assert (run.path / "plots" / "convergence.png").stat().st_size > 10_000


def test_the_guard_falls_back_from_a_starved_allocation_and_the_report_says_so(
        tmp_path: Path, cliff_csv: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, summary = run_loop(cliff_spec(tmp_path, cliff_csv, rounds=1), tmp_path / "runs", capfd)
    run = RunStore(tmp_path / "runs").open(summary["run"])
    assert code == 1 and summary["verdicts"] == {"1": "fail"}
    fallbacks = [event for event in run.events() if event["event"] == "safety_fallback"]
    assert len(fallbacks) == 1 and fallbacks[0]["allocation"] == [4000.0, 40.0]
    second = fallbacks[0]["second"]
    assert 5 <= second <= 12  # every second starved: the evidence is there within about 9 s
    window = run.read_samples("validation")
    recovery = window[window["fallback"]]  # measured on the safe allocation, then the window ended
    assert len(window) == second + 3 and len(recovery) == 3 and not window["fallback"].iloc[:second].any()
    assert (recovery["bw"] == 40.0).all() and (recovery["qos"] >= 4.0).mean() >= 2 / 3  # the peak serves the slice
    row = run.read_samples("results").iloc[0]
    assert bool(row["fallback"]) and row["fallback_second"] == second and row["verdict"] == "fail"
    report = (run.path / "report.md").read_text(encoding="utf-8")
    assert "The safety guard fell back to the safe allocation" in report and "4000 millicores, 40 Mbps" in report


def test_the_guard_puts_the_safe_allocation_on_the_testbed(tmp_path: Path, cliff_csv: Path) -> None:
    """Second by second: the starved allocation is on the testbed until the guard acts, then the peak is."""
    spec = load_spec(cliff_spec(tmp_path, cliff_csv, rounds=1))
    run = create_loop_run(RunStore(tmp_path / "runs"), spec, "replay", tmp_path / "cliff.yaml")
    testbed = open_testbed(spec)
    assert isinstance(testbed, ReplayTestbed)
    loop = ClosedLoop(spec, LoopInputs.load(spec), testbed, run, Progress(disable=True))
    starved = {"allocations": {"embb": [500.0, 5.0]}, "expected": {"embb": 0.1}}
    samples, fallbacks = loop.validator.window(1, 0, starved)
    assert list(fallbacks) == ["embb"]
    judged, recovery = samples[~samples["fallback"]], samples[samples["fallback"]]
    assert (judged["bw"] == 5.0).all() and (recovery["bw"] == 40.0).all() and len(recovery) == 3
    assert testbed.allocations["embb"].bandwidth_mbps == 40.0
    assert testbed.allocations["embb"].cpu_millicores == 4000.0


def wait_for_event(events: Path, event: str, process: subprocess.Popen[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if events.exists() and f'"event": "{event}"' in events.read_text(encoding="utf-8"):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    pytest.fail(f"no {event} event within {timeout_s} s")


def test_a_killed_loop_resumes_without_measuring_a_point_twice(tmp_path: Path, cliff_csv: Path,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    process = subprocess.Popen(slicebed_argv("loop", "run", str(cliff_spec(tmp_path, cliff_csv)), runs=runs),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=venv_environment(OMP_NUM_THREADS="1"))
    try:
        while not RunStore(runs).list():
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        run = RunStore(runs).list()[0]
        wait_for_event(run.path / "events.jsonl", "round_finished", process)  # round 1 done; round 2 under way
        assert process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert run.metadata()["status"] == "running"  # killed: nothing recorded the end
    before = LoopJournal.read(run)
    assert 1 in before.finished_rounds and 2 not in before.finished_rounds

    torch.set_num_threads(1)
    code, out, _err = run_cli(["--runs-dir", str(runs), "loop", "resume", run.id, "--json"], capfd)
    summary = json.loads(out)
    assert code == 0 and summary["holds"]
    events = list(run.events())
    completed = Counter(event["point"] for event in events if event["event"] == "point_completed")
    assert completed and max(completed.values()) == 1  # no point measured twice
    planned = Counter(event["round"] for event in events if event["event"] == "sweep_planned")
    assert max(planned.values()) == 1  # each round planned once: the resumed loop measured the journaled plan
    windows = Counter((event["round"], event["level"]) for event in events if event["event"] == "level_validated")
    assert max(windows.values()) == 1
    assert len(completed_points(run)) == len(run.read_samples().groupby("point"))
    after = LoopJournal.read(run)
    assert after.plans[1] == before.plans[1] and after.validations[(1, 0)] == before.validations[(1, 0)]
    assert len(run.read_samples("results")) == len(after.validations)
    assert len(run.metadata()["sessions"]) == 2 and run.metadata()["status"] == "completed"

    code, out, _err = run_cli(["--runs-dir", str(runs), "loop", "resume", run.id, "--json"], capfd)
    assert code == 0 and json.loads(out)["note"] == "nothing left to do"


def test_a_validation_part_without_its_journal_line_is_removed_on_resume(tmp_path: Path, cliff_csv: Path) -> None:
    """A kill between writing a window's parts and journaling it leaves orphan parts: the resumed loop deletes
    them and measures that window again, once."""
    spec = load_spec(cliff_spec(tmp_path, cliff_csv, rounds=1))
    run = create_loop_run(RunStore(tmp_path / "runs"), spec, "replay", tmp_path / "cliff.yaml")
    loop = ClosedLoop(spec, LoopInputs.load(spec), open_testbed(spec), run, Progress(disable=True))
    loop.execute()
    journaled = run.read_samples("results")
    for table in ("validation", "results"):
        orphan = run.path / table / "part-000001.parquet"
        orphan.write_bytes((run.path / table / "part-000000.parquet").read_bytes())
    resumed = ClosedLoop(spec, LoopInputs.load(spec), open_testbed(spec), run, Progress(disable=True))
    outcome = resumed.execute()
    assert sorted(path.name for path in (run.path / "results").iterdir()) == ["part-000000.parquet"]
    removed = [event["parts"] for event in run.events() if event["event"] == "orphan_parts_removed"]
    assert removed == [["validation/part-000001.parquet", "results/part-000001.parquet"]]
    pd.testing.assert_frame_equal(outcome.results, journaled)


def test_a_loop_resumed_with_another_spec_is_refused_naming_the_difference(tmp_path: Path, cliff_csv: Path,
                                                                          capfd: pytest.CaptureFixture[str]) -> None:
    spec_path = cliff_spec(tmp_path, cliff_csv, rounds=1)
    spec = load_spec(spec_path)
    run = create_loop_run(RunStore(tmp_path / "runs"), spec, "replay", spec_path)
    edited = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    edited["sweep"]["dwell_s"] = 30
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(edited), encoding="utf-8")

    code, out, err = run_cli(["--runs-dir", str(tmp_path / "runs"), "loop", "resume", run.id, "--spec", str(other)],
                             capfd)
    assert code == 2 and out == ""
    assert_one_error_line(err, str(other), "sweep.dwell_s: 20 when the loop started, 30 now",
                          "start a new one with `slicebed loop run`")
    code, _out, _err = run_cli(["--runs-dir", str(tmp_path / "runs"), "loop", "resume", run.id, "--spec",
                                str(spec_path), "--json"], capfd)
    assert code in (0, 1)  # the spec it started with resumes

    recorded = yaml.safe_load((run.path / "spec.yaml").read_text(encoding="utf-8"))
    recorded["validation"]["window_s"] = 10
    (run.path / "spec.yaml").write_text(yaml.safe_dump(recorded), encoding="utf-8")
    run.update_metadata(status="stopped")
    code, out, err = run_cli(["--runs-dir", str(tmp_path / "runs"), "loop", "resume", run.id], capfd)
    assert code == 2
    assert_one_error_line(err, "spec.yaml: differs from the spec the loop started with",
                          "validation.window_s: 40 when the loop started, 10 now")


def test_the_shipped_replay_demo_holds_every_level_as_the_issue_asks(tmp_path: Path,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    """`make demo-replay`: in its final round every level measures within beta_thresh, and within 0.1 of the
    degradation the model expected."""
    spec = Path(__file__).resolve().parents[1] / "experiments" / "demo-replay.yaml"
    code, summary = run_loop(spec, tmp_path / "runs", capfd)
    assert code == 0 and summary["holds"]
    results = RunStore(tmp_path / "runs").open(summary["run"]).read_samples("results")
    final = results.sort_values("round").groupby("level").tail(1)
    assert len(final) == 3 and (final["verdict"] == "pass").all()
    assert (final["achieved_degradation"] <= final["beta_thresh"]).all()
    assert ((final["expected_degradation"] - final["achieved_degradation"]).abs() <= 0.1).all()
