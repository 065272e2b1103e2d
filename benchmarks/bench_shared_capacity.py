"""Benchmark MicroOpt on ten slices sharing CPU and bandwidth capacities.

Slices draw a truncated-normal traffic (mean 1-5 users/s, on [1, 5]), q_thresh 3-5 Mbps and
beta_thresh 0.1-0.3 from ``--seed``. Each slice is first solved alone; the capacities are then
``--cpu-fraction`` and ``--bw-fraction`` times the sums of those optima (by default CPU binds:
the slices must trade CPU for bandwidth). ``--distinct-models`` gives every slice its
own copy of the model, so the problem evaluates ten model groups. Prints the solve seconds,
feasibility, per-slice allocations and capacity use.

    python benchmarks/bench_shared_capacity.py --model /tmp/model3000
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

from controller.optimizers.microopt import solve_microopt
from controller.problem import Problem, SliceProblem
from controller.traffic import truncated_normal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_optimizer import DEFAULT_DATA, obtain_model  # a sibling script, not a package


def build_slices(model: torch.nn.Module, count: int, seed: int, distinct_models: bool) -> tuple[SliceProblem, ...]:
    """``count`` random slices on ``model`` (a copy per slice with ``distinct_models``)."""
    rng = np.random.default_rng(seed)
    return tuple(
        SliceProblem(
            f"slice{index}",
            copy.deepcopy(model) if distinct_models else model,
            truncated_normal(rng.uniform(1, 5), rng.uniform(0.3, 1.5), 1, 5),
            float(rng.choice([3.0, 4.0, 5.0])),
            float(rng.choice([0.1, 0.2, 0.3])),
        )
        for index in range(count)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="slice model directory (default: train one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training CSV when no --model")
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-fraction", type=float, default=0.98,
                        help="CPU capacity as a multiple of the sum of the per-slice optima")
    parser.add_argument("--bw-fraction", type=float, default=1.5,
                        help="bandwidth capacity as a multiple of the sum of the per-slice optima")
    parser.add_argument("--distinct-models", action="store_true", help="one model object per slice")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = obtain_model(args.model, args.data, None)
    slices = build_slices(model, args.slices, args.seed, args.distinct_models)
    alone = np.array([solve_microopt(Problem((s,))).allocation[0] for s in slices])  # also warms torch up
    fractions = np.array([args.cpu_fraction, args.bw_fraction])
    capacity = tuple(float(value) for value in fractions * alone.sum(0))
    problem = Problem(slices, capacity=capacity)
    answer = solve_microopt(problem)
    print(f"{'slice':>8} {'users':>5} {'q':>3} {'beta':>4} {'cpu':>8} {'bw':>7} {'E[beta]':>7} {'alone cpu':>9} "
          f"{'alone bw':>8}")
    for s, row, single in zip(slices, answer.per_slice(problem), alone, strict=True):
        print(f"{s.name:>8} {s.traffic.mean:>5.2f} {s.q_thresh:>3.0f} {s.beta_thresh:>4} {row['cpu_millicores']:>8.1f} "
              f"{row['bandwidth_mbps']:>7.2f} {row['expected_degradation']:>7.4f} {single[0]:>9.1f} {single[1]:>8.2f}")
    use = answer.allocation.sum(0)
    print(f"\nseconds {answer.seconds:.3f}, feasible {answer.feasible}, cost {answer.normalized:.4f} "
          f"(slices alone {alone @ np.asarray(problem.eta) @ np.ones(len(slices)):.4f})")
    print(f"capacity use: cpu {use[0]:.1f} / {capacity[0]:.1f} mc, bw {use[1]:.2f} / {capacity[1]:.2f} Mbps")


if __name__ == "__main__":
    main()
