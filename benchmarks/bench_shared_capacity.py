"""Benchmark slices sharing CPU and bandwidth capacities that both bind: the exact solver and MicroOpt.

Slices draw a truncated-normal traffic (mean 1-5 users/s, on [1, 5]), q_thresh 3-5 Mbps and beta_thresh 0.1-0.3
from ``--seed``. The CPU capacity is ``--cpu-fraction`` times what the slices take alone; the bandwidth capacity
is ``--bw-fraction`` times what the optimum under that CPU capacity alone uses, so the optimum uses all of both.
The reference (the DP optimum) is the knapsack over the slices' frontiers on a ``--reference-step`` CPU grid
over the whole CPU bounds (not the solver's coarse-to-fine windows).
Prints, per slice count and method, the solve seconds, feasibility, cost, gap to the reference and capacity use
(issue 15 targets: 10 slices feasible, within 0.5 % of the DP optimum, <= 0.5 s; 100 slices <= 5 s).

    python benchmarks/bench_shared_capacity.py --model /tmp/model --slices 10 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from analysis.slice_model import SliceModel
from controller.optimizer_settings import ExactSettings
from controller.optimizers import solve
from controller.optimizers.exact import solve_exact
from controller.problem import Problem, SliceProblem
from controller.traffic import truncated_normal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_optimizer import DEFAULT_DATA, obtain_model  # a sibling script, not a package

UNLIMITED_BANDWIDTH = 1e9
"""A bandwidth capacity that never binds (Mbps), for the optimum under the CPU capacity alone."""


def build_slices(model: SliceModel, count: int, seed: int) -> tuple[SliceProblem, ...]:
    """``count`` random slices on ``model``."""
    rng = np.random.default_rng(seed)
    return tuple(
        SliceProblem(f"slice{index}", model, truncated_normal(rng.uniform(1, 5), rng.uniform(0.3, 1.5), 1, 5),
                     float(rng.choice([3.0, 4.0, 5.0])), float(rng.choice([0.1, 0.2, 0.3])))
        for index in range(count)
    )


def binding_capacities(slices: tuple[SliceProblem, ...], cpu_fraction: float, bw_fraction: float,
                       reference: ExactSettings) -> tuple[float, float]:
    """A CPU capacity below what the slices take alone, and a bandwidth capacity just above what the optimum
    under that CPU capacity uses."""
    alone = solve_exact(Problem(slices)).allocation.sum(0)
    cpu = float(cpu_fraction * alone[0])
    capped = solve_exact(Problem(slices, capacity=(cpu, UNLIMITED_BANDWIDTH)), reference)
    return cpu, float(bw_fraction * capped.allocation[:, 1].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="slice model directory (default: train one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training CSV when no --model")
    parser.add_argument("--slices", type=int, nargs="+", default=[10, 100], help="slice counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-fraction", type=float, default=0.98,
                        help="CPU capacity as a multiple of what the slices take alone")
    parser.add_argument("--bw-fraction", type=float, default=1.01,
                        help="bandwidth capacity as a multiple of what the CPU-capped optimum uses")
    parser.add_argument("--reference-step", type=float, help="CPU grid of the reference knapsack, mc (default 2 "
                        "up to 20 slices, else 5)")
    parser.add_argument("--methods", nargs="+", default=["exact", "microopt"], help="methods to time")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = obtain_model(args.model, args.data, None)
    for count in args.slices:
        step = args.reference_step or (2.0 if count <= 20 else 5.0)
        # one DP over the whole CPU bounds from their lower end, independent of the solver's windows
        reference_settings = ExactSettings(knapsack_cpu_step=step, knapsack_refine_steps=(), knapsack_window=False)
        slices = build_slices(model, count, args.seed)
        capacity = binding_capacities(slices, args.cpu_fraction, args.bw_fraction, reference_settings)
        problem = Problem(slices, capacity=capacity)
        reference = solve_exact(problem, reference_settings)
        print(f"\n{count} slices, capacity cpu {capacity[0]:.1f} mc, bw {capacity[1]:.2f} Mbps; DP optimum on a "
              f"{step:g} mc grid: cost {reference.normalized:.5f} ({reference.seconds:.2f} s)")
        print(f"{'method':>10} {'seconds':>8} {'feasible':>8} {'cost':>9} {'gap %':>8} {'cpu use':>14} {'bw use':>14}")
        for method in args.methods:
            answer = solve(problem, method)
            use = answer.allocation.sum(0)
            gap = 100 * (answer.normalized - reference.normalized) / reference.normalized
            print(f"{method:>10} {answer.seconds:>8.3f} {answer.feasible!s:>8} {answer.normalized:>9.5f} {gap:>+8.3f} "
                  f"{100 * use[0] / capacity[0]:>13.3f}% {100 * use[1] / capacity[1]:>13.3f}%", flush=True)


if __name__ == "__main__":
    main()
