"""Benchmark the exact solver and MicroOpt against the exhaustive grid, and batched solves of many slices.

Cases (issue 15): the 45 Table I cases (constant traffic 1-5 users/s x q_thresh {3, 4, 5} Mbps x beta_thresh
{0.1, 0.2, 0.3}) and the 10 dynamic cases (truncated normals on [1, 5] users/s centred at 1-5 with std 0.5 and
1.5, q_thresh 5, beta_thresh 0.1). The exact solver solves all cases at once (one problem whose slices are the
cases: one tensor program) and each case alone; the grid searches each case on a 1 mc x 0.01 Mbps grid (the
reference); MicroOpt (with refinement) and Algorithm 1 as published solve each case. Prints one row per case
and a summary: the largest cost gap to the grid per method and the time ratios against the grid.

``--batched N [N ...]`` then solves N random constant-traffic slices as one problem on ``--device`` and prints
the time per slice (issue 15 item 6; ``--device cuda`` where a GPU is present, the default sizes grow there).

    python benchmarks/bench_optimizer.py --model /tmp/model --threads 1
    python benchmarks/bench_optimizer.py --model /tmp/model --skip-cases --batched 1000 --device cpu
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from analysis.slice_model import SliceModel, load_model, save_model
from analysis.training import TrainingConfig, train
from collectors.dataset import load_qos_csv
from controller.optimizer_settings import GridSettings
from controller.optimizers import solve
from controller.optimizers.base import Solution
from controller.optimizers.exact import solve_exact
from controller.optimizers.grid import solve_grid
from controller.problem import Problem, SliceProblem
from controller.traffic import TrafficDistribution, constant, dynamic_traffic

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "microopt" / "train_dataset.csv"
METHODS = ("microopt", "microopt-alg1")


def obtain_model(model_dir: Path | None, data: Path, save_to: Path | None) -> SliceModel:
    """Load ``model_dir``, or train a model with the default TrainingConfig on ``data``."""
    if model_dir is not None:
        return load_model(model_dir)
    print(f"training a slice model on {data} (TrainingConfig defaults)...", flush=True)
    model = train(load_qos_csv(data, settle_s=10), TrainingConfig()).model.eval()
    if save_to is not None:
        save_model(model, save_to)
    return model


def cases(which: str) -> list[tuple[str, TrafficDistribution, float, float]]:
    """(label, traffic, q_thresh, beta_thresh) of the Table I and/or dynamic cases."""
    table1 = [(f"{users} users/s", constant(users), float(q), beta)
              for users, q, beta in itertools.product(range(1, 6), (3, 4, 5), (0.1, 0.2, 0.3))]
    dynamic = [(f"N({centre:g}, {std:g})", traffic, 5.0, 0.1)
               for centre, std, traffic in dynamic_traffic(0.5, 1.5)]
    return {"table1": table1, "dynamic": dynamic, "all": table1 + dynamic}[which]


def run_cases(model: SliceModel, which: str, grid: GridSettings, skip_grid: bool, device: torch.device) -> None:
    """Every case with every method; the rows and the summary."""
    slices = [SliceProblem(label, model, traffic, q, beta) for label, traffic, q, beta in cases(which)]
    solve_exact(Problem(tuple(slices[:2])), device=device)  # warm-up, not measured
    batched = solve_exact(Problem(tuple(slices)), device=device)
    print(f"exact, all {len(slices)} cases as one problem: {batched.seconds:.3f} s, "
          f"KKT residual max {batched.certificate['kkt_residual']:.3g}", flush=True)
    answers: dict[str, list[Solution]] = {"exact": [], "grid": [], **{method: [] for method in METHODS}}
    print(f"{'case':>14} {'q':>3} {'beta':>4} {'grid':>8} {'exact':>8} {'gap %':>8} "
          + " ".join(f"{method + ' gap %':>19}" for method in METHODS)
          + f" {'E[beta]':>7} {'cpu':>7} {'bw':>7} {'grid s':>7} {'exact s':>7}")
    for index, slice_problem in enumerate(slices):
        problem = Problem((slice_problem,))
        answers["exact"].append(solve_exact(problem, device=device))
        for method in METHODS:
            answers[method].append(solve(problem, method, device=device))
        reference = answers["exact"][-1] if skip_grid else solve_grid(problem, grid, device)
        answers["grid"].append(reference)
        exact = answers["exact"][-1]
        print(f"{slice_problem.name:>14} {slice_problem.q_thresh:>3g} {slice_problem.beta_thresh:>4g} "
              f"{reference.normalized:>8.4f} {exact.normalized:>8.4f} {_gap(exact, reference):>+8.4f} "
              + " ".join(f"{_gap(answers[method][-1], reference):>+19.4f}" for method in METHODS)
              + f" {exact.expected_degradation[0]:>7.4f} {exact.allocation[0, 0]:>7.1f} {exact.allocation[0, 1]:>7.3f}"
              f" {reference.seconds:>7.2f} {exact.seconds:>7.3f}"
              + ("" if exact.feasible and reference.feasible else " INFEASIBLE"), flush=True)
        if not np.allclose(batched.allocation[index], exact.allocation[0], rtol=1e-4):
            print(f"    batched answer differs: {batched.allocation[index]} vs {exact.allocation[0]}")
    grid_seconds = sum(answer.seconds for answer in answers["grid"])
    reference_name = "exact (grid skipped)" if skip_grid else f"grid {grid.cpu_step:g} x {grid.bandwidth_step:g}"
    print(f"\n{len(slices)} cases; reference: {reference_name}, {grid_seconds:.1f} s in total")
    for method in ("exact", *METHODS):
        gaps = [_gap(answer, reference) for answer, reference in zip(answers[method], answers["grid"], strict=True)]
        seconds = sum(answer.seconds for answer in answers[method])
        feasible = sum(answer.feasible for answer in answers[method])
        print(f"{method:>14}: max gap {max(gaps):+.4f} %, mean gap {np.mean(gaps):+.4f} %, feasible {feasible}/"
              f"{len(slices)}, {seconds:.2f} s case by case ({seconds / grid_seconds:.4f}x the grid's), "
              f"{np.mean([answer.queries for answer in answers[method]]):.0f} queries per case")
    print(f"{'exact batched':>14}: {batched.seconds:.2f} s ({batched.seconds / grid_seconds:.4f}x the grid's)")


def _gap(answer: Solution, reference: Solution) -> float:
    """Relative cost gap in percent (negative: cheaper than the reference)."""
    return 100 * (answer.normalized - reference.normalized) / reference.normalized


def run_batched(model: SliceModel, sizes: list[int], device: torch.device, seed: int) -> None:
    """N random constant-traffic slices as one problem per size; time per slice."""
    rng = np.random.default_rng(seed)
    solve_exact(Problem((SliceProblem("warm", model, constant(3), 4, 0.2),)), device=device)
    for size in sizes:
        slices = tuple(SliceProblem(f"s{index}", model, constant(float(rng.uniform(1, 5))),
                                    float(rng.choice([3.0, 4.0, 5.0])), float(rng.choice([0.1, 0.2, 0.3])))
                       for index in range(size))
        if device.type == "cuda":
            torch.cuda.synchronize()
        answer = solve_exact(Problem(slices), device=device)
        met = int((answer.expected_degradation <= np.array([s.beta_thresh for s in slices])).sum())
        print(f"batched exact, {size} slices on {device}: {answer.seconds:.2f} s, "
              f"{1e3 * answer.seconds / size:.3f} ms per slice, {met} slices meet their QoS, "
              f"{answer.queries / size:.0f} queries per slice", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="slice model directory (default: train one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training CSV when no --model")
    parser.add_argument("--save-model", type=Path, help="where to save the model trained without --model")
    parser.add_argument("--cases", choices=("all", "table1", "dynamic"), default="all", help="which cases")
    parser.add_argument("--skip-cases", action="store_true", help="only the batched solves")
    parser.add_argument("--skip-grid", action="store_true", help="compare with the exact solver, not the grid")
    parser.add_argument("--grid-cpu-step", type=float, default=1.0, help="reference grid, millicores")
    parser.add_argument("--grid-bw-step", type=float, default=0.01, help="reference grid, Mbps")
    parser.add_argument("--batched", type=int, nargs="*", help="slice counts solved as one problem (default "
                        "1000 on cpu, 1000 10000 100000 on cuda)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batched slices")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = obtain_model(args.model, args.data, args.save_model)
    started = time.perf_counter()
    if not args.skip_cases:
        run_cases(model, args.cases, GridSettings(cpu_step=args.grid_cpu_step, bandwidth_step=args.grid_bw_step),
                  args.skip_grid, device)
    sizes = args.batched if args.batched is not None else ([1000, 10000, 100000] if device.type == "cuda" else [1000])
    run_batched(model, sizes, device, args.seed)
    print(f"\nbenchmark wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
