"""Exhaustive grid search on the slice model: Peak-alloc's solver and the exactness oracle for the others.

Each slice is searched over a (CPU, bandwidth) grid inside its bounds with the exact expected degradation.
The grid is visited in bands of increasing cost, so the search stops at the first band holding a feasible
point: every point cheaper than the answer has been evaluated, none beyond its band. Points are screened in
float32 and the candidates judged in float64 on the unfolded model, cheapest first. Slices are independent
except through shared capacities, which grid search cannot trade off: when the per-slice optima overflow R
the answer is flagged infeasible (use the exact solver).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch

from controller.optimizer_settings import GridSettings
from controller.optimizers.base import NEAR_FEASIBLE, Solution, finalize, judge
from controller.problem import Problem, ProblemTensors

BANDS_PER_BATCH = 4
"""Grid points per cost band, in evaluation batches."""


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
    allocation = np.zeros((len(problem.slices), 2))
    queries = 0
    for index, slice_problem in enumerate(problem.slices):
        single = Problem((slice_problem,), eta=problem.eta)
        allocation[index], evaluated = _cheapest_on_grid(single, settings, device)
        queries += evaluated
    return finalize(problem, allocation, "grid", started, 1, queries=queries)


def _cheapest_on_grid(single: Problem, settings: GridSettings, device: torch.device | str) -> tuple[np.ndarray, int]:
    """The cheapest grid point of a one-slice problem meeting its QoS in float64 (else the least violating
    one), and how many points were evaluated."""
    slice_problem = single.slices[0]
    cpu = axis(slice_problem.lower[0], slice_problem.upper[0], settings.cpu_step)
    bandwidth = axis(slice_problem.lower[1], slice_problem.upper[1], settings.bandwidth_step)
    eta_cpu, eta_bandwidth = single.eta
    tensors = ProblemTensors.build(single, device)
    least = (np.inf, np.zeros(2))
    evaluated = 0
    for points in _bands(cpu * eta_cpu, bandwidth * eta_bandwidth, settings.batch * BANDS_PER_BATCH):
        grid = np.stack((cpu[points[:, 0]], bandwidth[points[:, 1]]), -1)
        degradation = _degradation(tensors, grid, settings.batch, device)
        evaluated += len(grid)
        near = degradation <= slice_problem.beta_thresh + NEAR_FEASIBLE
        if near.any():
            candidates = grid[near][np.argsort(grid[near] @ np.asarray(single.eta), kind="stable")]
            judged = judge(single, candidates[:, None, :])
            if judged.feasible.any():
                return candidates[int(np.argmax(judged.feasible))], evaluated
        worst = int(np.argmin(degradation))
        if degradation[worst] < least[0]:
            least = (float(degradation[worst]), grid[worst])
    return least[1], evaluated


def _bands(cpu_cost: np.ndarray, bandwidth_cost: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """The grid's (cpu, bandwidth) index pairs in bands of increasing cost, about ``size`` points each.

    Band k holds the points whose cost lies in [edge_k, edge_k+1) (the first from the cheapest point); the
    comparison with each edge ends one band and starts the next, so every point lies in exactly one band.
    """
    low, high = cpu_cost[0] + bandwidth_cost[0], cpu_cost[-1] + bandwidth_cost[-1]
    count = max(1, int(np.ceil(cpu_cost.size * bandwidth_cost.size / size)))
    edges = np.linspace(low, high, count + 1)
    edges[-1] = np.inf
    starts = np.zeros(cpu_cost.size, dtype=np.int64)
    for edge in edges[1:]:
        ends = np.searchsorted(bandwidth_cost, edge - cpu_cost, side="left")
        lengths = ends - starts
        rows = np.repeat(np.arange(cpu_cost.size), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        columns = offsets + np.repeat(starts, lengths)
        if rows.size:
            yield np.stack((rows, columns), -1)
        starts = ends


def _degradation(tensors: ProblemTensors, points: np.ndarray, batch: int, device: torch.device | str) -> np.ndarray:
    """Float32 expected degradation of a one-slice problem at each (cpu, bw) point."""
    results = []
    for start in range(0, len(points), batch):
        chunk = torch.as_tensor(points[start : start + batch], dtype=torch.float32, device=device)
        results.append(tensors.expected_degradation(chunk[:, None, :])[:, 0].cpu().numpy())
    return np.concatenate(results).astype(np.float64)
