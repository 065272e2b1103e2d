"""End-to-end closed loop on the replay testbed, through the real CLI: what a run writes and what it trains on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from reference import unfolded_float64
from rich.progress import Progress

from analysis.slice_model import load_model
from collectors.dataset import load_qos_csv
from controller.campaign.export import journaled_table
from controller.campaign.journal import completed_points
from controller.cli import main
from controller.loop.evidence import achieved_degradation
from controller.loop.runner import ClosedLoop, LoopInputs
from controller.spec import load_spec, spec_document
from controller.testbeds import open_testbed
from controller.testbeds.base import Allocation, Testbed
from core.errors import RunStopped
from core.runstore import RunStore

pytestmark = pytest.mark.slow


def small_spec(tmp_path: Path, dataset: Path, rounds: int = 2, **sweep: Any) -> Path:
    """A loop of up to ``rounds`` rounds: 3 CPU x 3 bandwidth points of 20 s for each of the levels' 1-5 users,
    200 epochs, two traffic levels validated for 60 s; ``sweep`` overrides sweep keys."""
    spec = {
        "name": "loop-test",
        "seed": 3,
        "rounds": rounds,
        "testbed": {"backend": "replay", "replay": {"source": "dataset", "dataset": str(dataset)}},
        "slices": [{
            "name": "embb",
            "q_thresh": 4.0,
            "beta_thresh": 0.2,
            "bounds": {"cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40]},
            "traffic": [
                {"kind": "constant", "users": 2},
                {"kind": "truncated_normal", "mean": 3, "std": 1, "low": 1, "high": 5},
            ],
        }],
        "sweep": {"cpu_millicores": [1000, 2000, 4000], "bandwidth_mbps": [10, 25, 40], "dwell_s": 20, **sweep},
        "training": {"epochs": 200},
        "validation": {"window_s": 60},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_closed_loop_writes_a_complete_run(tmp_path: Path, microopt_csv: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    code = main(["--quiet", "--runs-dir", str(runs), "loop", "run", str(small_spec(tmp_path, microopt_csv)), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == (0 if summary["holds"] else 1)
    assert summary["sweep_incomplete"] == 0
    run = RunStore(runs).open(summary["run"])

    metadata = run.metadata()
    assert metadata["status"] == "completed" and metadata["finished"] and metadata["testbed"] == "replay"
    assert metadata["packages"]["torch"].startswith("2.13")
    assert metadata["rounds_run"] == summary["rounds"] and metadata["holds"] == summary["holds"]

    samples = run.read_samples()
    first = samples[samples["round"] == 1]
    assert len(first) == 5 * (3 * 3) * 20  # the levels' users 1-5 x CPU x bandwidth points x dwell seconds
    assert set(first["n_users"]) == {1, 2, 3, 4, 5}
    assert not samples.duplicated(["round", "point", "time"]).any()

    results = run.read_samples("results")
    assert list(results[results["round"] == 1]["level"]) == [0, 1]  # round 1 validates every level
    assert results["feasible"].all()
    assert (results["expected_degradation"] <= results["beta_thresh"] + 1e-6).all()
    assert results["achieved_degradation"].between(0, 1).all()
    assert ((results["cpu_millicores"] >= 500) & (results["cpu_millicores"] <= 4000)).all()
    assert set(results["verdict"]) <= {"pass", "retry", "fail"}
    later = results[results["round"] > 1]
    passed = set(results[(results["round"] == 1) & (results["verdict"] == "pass")]["level"])
    assert not passed & set(later["level"])  # a level that passed keeps its allocation

    validation = run.read_samples("validation")
    window = validation[(validation["round"] == 1) & (validation["level"] == 0)]
    assert len(window) == 60
    assert achieved_degradation(window, 4.0) == pytest.approx(results["achieved_degradation"].iloc[0])

    events = [event["event"] for event in run.events()]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    trained = [event for event in run.events() if event["event"] == "model_trained"]
    assert [event["warm_start"] for event in trained] == [False] + [True] * (summary["rounds"] - 1)

    for name in ("report.md", "report.html", "plots/qos-surface-embb.png", "plots/convergence.png",
                 "plots/allocations.png", "plots/degradation.png", "models/round-1/embb/model.pt",
                 "models/round-1/embb/metrics.json", "models/round-1/embb/history.json"):
        assert (run.path / name).stat().st_size > 0, name
    exported = load_qos_csv(run.path / "dataset-embb.csv")
    assert len(exported) == len(samples)

    report = (run.path / "report.md").read_text()
    assert "![convergence](plots/convergence.png)" in report and "## Safety" in report


def test_a_loop_dataset_trains_through_the_same_cli(tmp_path: Path, microopt_csv: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    main(["--quiet", "--runs-dir", str(runs), "loop", "run", str(small_spec(tmp_path, microopt_csv, rounds=1))])
    dataset = RunStore(runs).list()[0].path / "dataset-embb.csv"
    capsys.readouterr()
    assert main(["--quiet", "model", "train", "--data", str(dataset), "--out", str(tmp_path / "model"),
                 "--epochs", "200", "--settle-s", "0", "--no-calibrate"]) == 0  # 9 allocations: too few to calibrate
    assert "sigma scale: 1\n" in capsys.readouterr().out  # the summary for people (uncalibrated: factor 1)
    assert main(["model", "eval", "--model", str(tmp_path / "model"), "--data", str(dataset), "--json",
                 "--settle-s", "0"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    rows = pd.read_csv(dataset)
    assert metrics["n"] == len(rows) == 5 * 3 * 3 * 20
    model = unfolded_float64(load_model(tmp_path / "model"))
    with torch.no_grad():
        predicted = model(torch.tensor(rows[["n_users", "bw", "cpu"]].to_numpy(dtype=float)))[0].numpy()
    errors = np.abs(predicted - rows["qos"].to_numpy())
    assert metrics["mae"] == pytest.approx(errors.mean(), rel=1e-4)  # what the model really misses by
    assert errors.mean() < np.abs(rows["qos"] - rows["qos"].mean()).mean()  # and it beats a constant guess


def test_achieved_degradation_weights_seconds_by_users() -> None:
    samples = pd.DataFrame({"n_users": [1, 3, 1, 5], "qos": [2.0, 5.0, 6.0, 3.0]})
    # seconds below 4 Mbps: users 1 and 5 -> (1 + 5) / (1 + 3 + 1 + 5)
    assert achieved_degradation(samples, 4.0) == pytest.approx(0.6)


def test_runs_never_overwrite_each_other(tmp_path: Path, microopt_csv: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = small_spec(tmp_path, microopt_csv, rounds=1)
    runs = tmp_path / "runs"
    codes = [main(["--quiet", "--runs-dir", str(runs), "loop", "run", str(spec)]) for _ in range(2)]
    assert set(codes) <= {0, 1}  # 1: a level did not pass (said on stderr), the run itself completed
    capsys.readouterr()
    listed = RunStore(runs).list()
    assert len(listed) == 2 and listed[0].path != listed[1].path
    assert all(run.metadata()["status"] == "completed" for run in listed)


def test_a_loop_runs_a_baseline_method_named_in_the_spec(tmp_path: Path, microopt_csv: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Any optimizer of `slicebed optimize --method` can close the loop; here Peak-alloc, one round."""
    path = small_spec(tmp_path, microopt_csv, rounds=1)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec["optimizer"] = {"method": "peak"}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    runs = tmp_path / "runs"
    assert main(["--quiet", "--runs-dir", str(runs), "loop", "run", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    results = RunStore(runs).open(summary["run"]).read_samples("results")
    assert set(results["method"]) == {"peak"}
    assert results["cpu_millicores"].nunique() == 1  # Peak-alloc: one static allocation for every level


class FakeLostTestbed(Testbed):
    """The replay twin whose connection drops at the ``lost_at``-th collect."""

    def __init__(self, inner: Testbed, lost_at: int) -> None:
        self.inner, self.name, self.lost_at, self.collects = inner, inner.name, lost_at, 0

    def apply(self, slice_name: str, allocation: Allocation) -> Allocation:
        return self.inner.apply(slice_name, allocation)

    def set_traffic(self, slice_name: str, users: int) -> None:
        self.inner.set_traffic(slice_name, users)

    def collect(self, seconds: int) -> pd.DataFrame:
        self.collects += 1
        if self.collects == self.lost_at:
            raise ConnectionResetError(104, "Connection reset by peer")
        return self.inner.collect(seconds)


def test_fake_lost_testbed_stops_a_loop_sweep_that_then_measures_each_point_once(tmp_path: Path,
                                                                                  microopt_csv: Path) -> None:
    """The loop's sweep is journaled like a campaign's: a stop keeps the measured points, a crash's orphan part
    is removed, and sweeping the round again measures only the points still missing."""
    spec = load_spec(small_spec(tmp_path, microopt_csv, rounds=1, users=[1, 2, 3, 4, 5], bandwidth_mbps=[10, 40],
                                cpu_millicores=[1000, 4000]))
    run = RunStore(tmp_path / "runs").create(spec.name, spec_document(spec))
    inputs = LoopInputs.load(spec)
    lost = FakeLostTestbed(open_testbed(spec), lost_at=7)
    loop = ClosedLoop(spec, inputs, lost, run, Progress(disable=True))
    with pytest.raises(RunStopped, match="Connection reset by peer") as stopped:
        loop.sweep(1, loop.plan(1))
    assert f"slicebed loop resume {run.path}" in str(stopped.value)
    assert len(completed_points(run)) == 6
    orphan = run.path / "samples" / "part-000006.parquet"  # a kill -9 between a part's rename and its journal line
    orphan.write_bytes((run.path / "samples" / "part-000000.parquet").read_bytes())

    again = FakeLostTestbed(open_testbed(spec), lost_at=0)
    loop = ClosedLoop(spec, inputs, again, run, Progress(disable=True))
    loop.sweep(1, loop.plan(1))
    assert again.collects == 20 - 6  # the six journaled points are not measured again
    completed = completed_points(run)
    assert len(completed) == 20 and all(point.startswith("round1-") for point in completed)
    samples = journaled_table(run)
    assert samples.groupby("point").size().eq(20).all() and len(samples) == 20 * 20
    assert {"round", "point", "holdout"} <= set(samples.columns) and samples["holdout"].any()
    assert len(list((run.path / "samples").glob("*.parquet"))) == 20
    removed = [event["parts"] for event in run.events() if event["event"] == "orphan_parts_removed"]
    assert removed == [["samples/part-000006.parquet"]]
