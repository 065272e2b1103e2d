"""Exhaustive grid search on the slice model: Peak-alloc's solver and the exactness oracle for MicroOpt.

Each slice is searched over a fine (CPU, bandwidth) grid inside its bounds with the exact expected
degradation. Slices are independent except through shared capacities, which grid search cannot trade
off: when the per-slice optima overflow R the answer is flagged infeasible (use MicroOpt).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from controller.optimizer_settings import GridSettings
from controller.optimizers.base import Solution
from controller.problem import Problem, ProblemTensors, SliceProblem


def axis(low: float, high: float, step: float) -> np.ndarray:
    """Grid values from ``low`` to ``high`` inclusive, ``step`` apart."""
    count = int(np.floor((high - low) / step + 1e-9)) + 1
    values = low + step * np.arange(count)
    return values if values[-1] >= high - 1e-9 else np.append(values, high)


@torch.no_grad()
def solve_grid(problem: Problem, settings: GridSettings | None = None, device: torch.device | str = "cpu") -> Solution:
    """Cheapest feasible grid allocation of each slice (least violating one when none is feasible)."""
    settings = settings or GridSettings()
    started = time.perf_counter()
    n_slices = len(problem.slices)
    eta = np.asarray(problem.eta)
    allocation = np.zeros((n_slices, 2))
    degradation = np.zeros(n_slices)
    slices_feasible = True
    for index, slice_problem in enumerate(problem.slices):
        cpu = axis(slice_problem.lower[0], slice_problem.upper[0], settings.cpu_step)
        bandwidth = axis(slice_problem.lower[1], slice_problem.upper[1], settings.bandwidth_step)
        points = np.stack(np.meshgrid(cpu, bandwidth, indexing="ij"), -1).reshape(-1, 2)
        slice_degradation = _degradation_of_slice(slice_problem, points, settings.batch, device)
        meets = slice_degradation <= slice_problem.beta_thresh
        if meets.any():
            best = int(np.argmin(np.where(meets, points @ eta, np.inf)))
        else:
            slices_feasible = False
            best = int(np.argmin(slice_degradation))
        allocation[index] = points[best]
        degradation[index] = slice_degradation[best]
    within_capacity = problem.capacity is None or bool((allocation.sum(0) <= np.asarray(problem.capacity)).all())
    return Solution(
        method="grid",
        allocation=allocation,
        expected_degradation=degradation,
        normalized=float((allocation @ eta).sum()),
        feasible=slices_feasible and within_capacity,
        seconds=time.perf_counter() - started,
        iterations=1,
    )


def _degradation_of_slice(slice_problem: SliceProblem, points: np.ndarray, batch: int,
                          device: torch.device | str) -> np.ndarray:
    """Exact expected degradation of one slice at each (cpu, bw) point."""
    tensors = ProblemTensors.build(Problem((slice_problem,)), device)
    results = []
    for start in range(0, len(points), batch):
        chunk = torch.as_tensor(points[start : start + batch], dtype=torch.float32, device=device)
        results.append(tensors.expected_degradation(chunk[:, None, :])[:, 0].cpu().numpy())
    return np.concatenate(results).astype(np.float64)
