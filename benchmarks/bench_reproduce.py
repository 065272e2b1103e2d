"""Time ``slicebed reproduce microopt`` and print its summary figures.

Runs the full reproduction (or ``--quick``) in-process on one model and prints the wall time, the Fig. 6
grid per method (mean over seeds with 95 % intervals), each method's median solve seconds and median
seconds to within 1 % of the best known cost, and CaDRL's policy training seconds. Nothing is written to
a run directory.

    python benchmarks/bench_reproduce.py --model /tmp/benchmodel --threads 1
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from analysis.slice_model import load_model
from controller.reproduce.cases import THRESHOLD_METHODS, ReproduceConfig
from controller.reproduce.runner import run_reproduction
from controller.reproduce.summaries import seed_summary, speed, threshold_rows, time_to_within


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="slice model directory")
    parser.add_argument("--quick", action="store_true", help="the CI-sized configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = ReproduceConfig.quick() if args.quick else ReproduceConfig()
    result = run_reproduction(load_model(args.model), config)
    print(f"wall time {result.seconds:.1f} s for {len(result.results)} solves "
          f"({args.threads} torch thread(s), load average {os.getloadavg()[0]:.2f} at the end)")
    print("\nFig. 6 grid, per method (mean over seeds, 95 % interval):")
    print(seed_summary(threshold_rows(result.results, THRESHOLD_METHODS)).to_string(
        index=False, float_format=lambda value: f"{value:.4g}"))
    print("\nsolve seconds and seconds to within 1 % of the best known cost:")
    times = time_to_within(result.results, result.convergence)
    print(speed(result.results, times, result.policies).to_string(index=False,
                                                                  float_format=lambda value: f"{value:.4g}"))
    print(f"\nCaDRL policy training: {len(result.policies)} policies, median "
          f"{result.policies['train_seconds'].median():.2f} s, total {result.policies['train_seconds'].sum():.1f} s")


if __name__ == "__main__":
    main()
