"""The closed loop's convergence: per round and level, expected against measured degradation, allocation and cost.

- ``--run RUN`` (repeatable): a finished loop run, e.g. the one `make demo` printed; its rounds as measured,
  its wall time and whether its final round meets issue 11's target (every level's measured degradation
  within beta_thresh, and within 0.1 of the expected one).
- ``--replay-seeds N``: runs `experiments/demo-replay.yaml` with seeds 0..N-1 on the replay twin and prints the
  same for each, then how many met the target.

    .venv/bin/python benchmarks/bench_loop.py [--run runs/<id>-demo-local-<x>] [--replay-seeds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from rich.progress import Progress

from controller.loop.runner import ClosedLoop, LoopInputs
from controller.loop.session import create_loop_run
from controller.spec import load_spec
from controller.testbeds import open_testbed
from core.runstore import Run, RunStore

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT = 0.1
"""Issue 11: expected and measured degradation within 0.1 of each other in the final round."""


def final_round_holds(results: pd.DataFrame) -> bool:
    """Every level's last validation within beta_thresh and within ``AGREEMENT`` of its expected degradation."""
    final = results.sort_values("round", kind="stable").groupby(["level", "slice"]).tail(1)
    gap = (final["expected_degradation"] - final["achieved_degradation"]).abs()
    return bool(((final["achieved_degradation"] <= final["beta_thresh"]) & (gap <= AGREEMENT)).all())


def describe(run: Run) -> bool:
    """Print a run's rounds; whether its final round meets the target."""
    results = run.read_samples("results")
    metadata = run.metadata()
    seconds = (pd.Timestamp(metadata["finished"]) - pd.Timestamp(metadata["started"])).total_seconds()
    table = results.assign(level=results["level"] + 1)[[
        "round", "level", "traffic", "cpu_millicores", "bandwidth_mbps", "normalized", "expected_degradation",
        "achieved_degradation", "p_value", "verdict", "fallback"]]
    holds = final_round_holds(results)
    print(f"\n{run.id}: testbed {metadata.get('testbed')}, {metadata.get('rounds_run')} round(s), "
          f"{seconds / 60:.1f} min; final round meets the target: {'yes' if holds else 'no'}")
    print(table.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    return holds


def replay_run(seed: int, runs: Path) -> Run:
    """The replay demo with ``seed``, run in process."""
    document = yaml.safe_load((ROOT / "experiments" / "demo-replay.yaml").read_text(encoding="utf-8"))
    document["seed"] = seed
    document["testbed"]["replay"]["dataset"] = str(ROOT.parent / "shared" / "datasets" / "microopt" /
                                                  "train_dataset.csv")
    path = runs / f"demo-replay-{seed}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    spec = load_spec(path)
    run = create_loop_run(RunStore(runs), spec, "replay", path)
    loop = ClosedLoop(spec, LoopInputs.load(spec), open_testbed(spec), run, Progress(disable=True))
    outcome = loop.execute()
    run.finish("completed", holds=outcome.holds, rounds_run=outcome.rounds)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", default=[], help="a finished loop run directory")
    parser.add_argument("--replay-seeds", type=int, default=0, help="replay-demo seeds to run (0, 1, ...)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for path in args.run:
        describe(RunStore(path.parent).open(path))
    if args.replay_seeds:
        with tempfile.TemporaryDirectory(prefix="bench-loop-") as directory:
            met = 0
            for seed in range(args.replay_seeds):
                started = time.perf_counter()
                run = replay_run(seed, Path(directory))
                print(f"\nreplay demo, seed {seed}: {time.perf_counter() - started:.0f} s wall")
                met += describe(run)
        print(f"\nreplay demo: the final round met the target for {met} of {args.replay_seeds} seeds")


if __name__ == "__main__":
    main()
