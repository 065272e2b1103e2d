"""Benchmark MicroOpt against the exhaustive grid oracle on single-slice problems.

Cases: users 1-5 x q_thresh {3, 4, 5} Mbps x beta_thresh {0.1, 0.2, 0.3}, constant traffic by default
or truncated-normal traffic (``--traffic-std``). Prints one row per case and a summary: median and
p90 MicroOpt solve seconds, the largest cost gap to the grid optimum, and how many answers are
strictly feasible and within ``--tolerance`` of the grid.

    python benchmarks/bench_optimizer.py --model /tmp/model3000 --threads 1
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from analysis.slice_model import SliceModel, load_model, save_model
from analysis.training import TrainingConfig, train
from collectors.dataset import load_qos_csv
from controller.optimizers.grid import solve_grid
from controller.optimizers.microopt import solve_microopt
from controller.problem import Problem, SliceProblem
from controller.traffic import TrafficDistribution, constant, truncated_normal

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "microopt" / "train_dataset.csv"


def obtain_model(model_dir: Path | None, data: Path, save_to: Path | None) -> SliceModel:
    """Load ``model_dir``, or train a model with the default TrainingConfig on ``data``."""
    if model_dir is not None:
        return load_model(model_dir)
    print(f"training a slice model on {data} (TrainingConfig defaults)...", flush=True)
    model = train(load_qos_csv(data, settle_s=10), TrainingConfig()).model.eval()
    if save_to is not None:
        save_model(model, save_to)
    return model


def traffic_for(users: int, std: float | None) -> TrafficDistribution:
    """Constant traffic, or a truncated normal on [1, 5] users/s around ``users``."""
    return constant(users) if std is None else truncated_normal(users, std, 1, 5)


def run(model: SliceModel, std: float | None, tolerance: float) -> None:
    """Solve every case with MicroOpt and the grid; print the rows and the summary."""
    seconds, gaps, feasible, within = [], [], 0, 0
    print(f"{'users':>5} {'q':>3} {'beta':>4} {'grid':>8} {'microopt':>8} {'gap %':>8} {'E[beta]':>7} "
          f"{'cpu':>7} {'bw':>6} {'seconds':>8}")
    for users, q_thresh, beta in itertools.product(range(1, 6), (3, 4, 5), (0.1, 0.2, 0.3)):
        problem = Problem((SliceProblem("slice", model, traffic_for(users, std), q_thresh, beta),))
        answer = solve_microopt(problem)  # first: the grid's large batches would disturb its timing
        grid = solve_grid(problem)
        gap = (answer.normalized - grid.normalized) / grid.normalized
        seconds.append(answer.seconds)
        gaps.append(gap)
        feasible += answer.feasible
        within += answer.feasible and gap <= tolerance
        print(f"{users:>5} {q_thresh:>3} {beta:>4} {grid.normalized:>8.4f} {answer.normalized:>8.4f} "
              f"{100 * gap:>+8.3f} {answer.expected_degradation[0]:>7.4f} {answer.allocation[0, 0]:>7.1f} "
              f"{answer.allocation[0, 1]:>6.2f} {answer.seconds:>8.4f}{'' if answer.feasible else ' INFEASIBLE'}")
    print(f"\ncases {len(gaps)}: median {np.median(seconds):.4f} s, p90 {np.percentile(seconds, 90):.4f} s, "
          f"max gap {100 * max(gaps):+.3f} %, feasible {feasible}, within {100 * tolerance:g} % {within}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="slice model directory (default: train one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training CSV when no --model")
    parser.add_argument("--save-model", type=Path, help="where to save the model trained without --model")
    parser.add_argument("--traffic-std", type=float, help="truncated-normal traffic of this std (default constant)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--tolerance", type=float, default=0.005, help="relative cost gap counted as optimal")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = obtain_model(args.model, args.data, args.save_model)
    run(model, args.traffic_std, args.tolerance)


if __name__ == "__main__":
    main()
