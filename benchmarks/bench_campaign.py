"""Campaign orchestration and resume overhead on the replay twin (the MicroOpt grid, 320 points of 70 s).

- Orchestration overhead per point: on the replay twin the dwell is virtual, so a point's whole wall
  time (apply, traffic, collect, Parquet part with fsync, journal with fsync) is overhead beyond the
  dwell. Target <= 0.2 s.
- Resume overhead, in process: from ``SweepRunner.execute()`` on a run with ``--done`` points
  journaled (plus an orphan part and a torn journal line, as a kill -9 leaves them) to the start of the
  first pending point. Target <= 2 s plus the point in progress.
- Resume overhead, whole command: ``slicebed campaign resume`` from exec to the first new point
  journaled, minus that point's own time (includes the interpreter, imports and the twin's dataset).

    .venv/bin/python benchmarks/bench_campaign.py [--done 300] [--runs-dir /tmp/bench-campaign]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.progress import Progress

from controller.campaign.journal import COMPLETED, completed_points
from controller.campaign.plan import Point, campaign_sweep, plan_points
from controller.campaign.runner import SweepRunner
from controller.campaign.spec import load_campaign_spec
from controller.testbeds import open_testbed
from core.runstore import Run, RunStore

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "datasets" / "microopt" / "train_dataset.csv"
SLICEBED = Path(sys.executable).parent / "slicebed"


class TimedRunner(SweepRunner):
    """Records the wall time of every point and when the first one started."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.point_seconds: list[float] = []
        self.first_point_at: float | None = None

    def run_point(self, point: Point) -> bool:
        started = time.perf_counter()
        if self.first_point_at is None:
            self.first_point_at = started
        completed = super().run_point(point)
        self.point_seconds.append(time.perf_counter() - started)
        return completed


def write_spec(directory: Path) -> Path:
    document = yaml.safe_load((ROOT / "campaigns" / "microopt-grid.yaml").read_text(encoding="utf-8"))
    document["testbed"] = {"backend": "replay", "replay": {"source": "dataset", "dataset": str(DATASET)}}
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def crash_after(run: Run, done: int) -> None:
    """Make ``run`` look killed after ``done`` points: later journal lines dropped, the next one torn."""
    lines = (run.path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    completed = [index for index, line in enumerate(lines) if f'"{COMPLETED}"' in line]
    cut = completed[done]
    (run.path / "events.jsonl").write_text("\n".join(lines[:cut]) + "\n" + lines[cut][:40], encoding="utf-8")
    run.update_metadata(status="running")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--done", type=int, default=300, help="points journaled before the simulated crash")
    parser.add_argument("--runs-dir", type=Path, default=None, help="where runs go (default: a temp dir)")
    args = parser.parse_args()
    root = args.runs_dir or Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    root.mkdir(parents=True, exist_ok=True)
    spec_path = write_spec(root)
    spec = load_campaign_spec(spec_path)
    store = RunStore(root / "runs")

    run = store.create(spec.name, spec.model_dump(mode="json"), kind="campaign")
    run.update_metadata(testbed="replay", points_total=spec.points, seed=spec.seed, sessions=[])
    testbed = open_testbed(spec, "replay")  # type: ignore[arg-type]
    resume = f"slicebed campaign resume {run.id}"
    full = TimedRunner(campaign_sweep(spec), run, testbed, Progress(disable=True), resume)
    full.execute(plan_points(spec))
    seconds = sorted(full.point_seconds)
    orchestration = {
        "points": len(seconds), "dwell_s": spec.dwell_s,
        "mean_s": round(statistics.mean(seconds), 4), "median_s": round(statistics.median(seconds), 4),
        "p95_s": round(seconds[int(0.95 * (len(seconds) - 1))], 4), "max_s": round(seconds[-1], 4),
    }

    crash_after(run, args.done)
    started = time.perf_counter()
    resumed = TimedRunner(campaign_sweep(spec), run, open_testbed(spec, "replay"),  # type: ignore[arg-type]
                          Progress(disable=True), resume)
    resumed.execute(plan_points(spec))
    assert resumed.first_point_at is not None
    in_process = resumed.first_point_at - started

    crash_after(run, args.done)
    journaled = len(completed_points(run))
    started = time.perf_counter()
    process = subprocess.Popen([str(SLICEBED), "--quiet", "--runs-dir", str(store.root), "campaign", "resume", run.id],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while len(completed_points(run)) == journaled:
        if process.poll() is not None:
            raise SystemExit(f"resume failed: {process.stderr.read() if process.stderr else ''}")
        time.sleep(0.005)
    first_point = time.perf_counter() - started
    process.wait()
    command = first_point - orchestration["median_s"]

    print(json.dumps({
        "orchestration_overhead_per_point": orchestration,
        "resume_overhead_in_process_s": round(in_process, 3),
        "resume_command_to_first_new_point_s": round(first_point, 3),
        "resume_command_overhead_s": round(command, 3),
        "journaled_before_crash": journaled,
        "targets": {"orchestration_per_point_s": 0.2, "resume_s": 2.0},
    }, indent=2))
    if args.runs_dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
