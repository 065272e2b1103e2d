"""An independent float64 evaluation of MicroOpt's expected QoS degradation, and an exact shared-capacity optimum.

Written from the paper (MicroOpt eq. (1)-(3)), not from ``controller.problem``: the slice model runs unfolded
(BatchNorm and both heads as trained) in float64, the QoS at x users/s is Gaussian with the model's mean and
standard deviation (eq. 3), so P(q <= q_thresh) = Phi((q_thresh - mu) / sigma), and eq. (1) weighs each
users/s value x by x * p(x). Tests compare the implementation's float32, folded computation against this.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special

from analysis.slice_model import SliceModel
from collectors.dataset import FEATURES
from controller.traffic import TrafficDistribution


def unfolded_float64(model: SliceModel) -> SliceModel:
    """A float64 copy of ``model`` in evaluation mode."""
    return copy.deepcopy(model).double().eval()


@torch.no_grad()
def expected_degradation(model: SliceModel, traffic: TrafficDistribution, q_thresh: float,
                         cpu_millicores: np.ndarray | float, bandwidth_mbps: np.ndarray | float,
                         higher_is_better: bool = True) -> np.ndarray:
    """E[beta] of eq. (1) for allocations (broadcast arrays of CPU and bandwidth), in float64.

    ``model`` must be a float64 model from :func:`unfolded_float64`. For a lower-is-better QoS (the paper's
    footnote 3: delay) a slot degrades when q >= q_thresh.
    """
    cpu, bandwidth = np.broadcast_arrays(np.asarray(cpu_millicores, dtype=np.float64),
                                         np.asarray(bandwidth_mbps, dtype=np.float64))
    users = np.asarray(traffic.support, dtype=np.float64)
    columns = {"n_users": np.broadcast_to(users, (*cpu.shape, users.size)),
               "bw": np.broadcast_to(bandwidth[..., None], (*cpu.shape, users.size)),
               "cpu": np.broadcast_to(cpu[..., None], (*cpu.shape, users.size))}
    inputs = torch.from_numpy(np.stack([columns[name] for name in FEATURES], axis=-1).copy())
    mean, std = (tensor.numpy() for tensor in model(inputs))
    below = special.ndtr((q_thresh - mean) / std)  # eq. (3): P(q <= q_thresh) under N(mean, std)
    if not higher_is_better:
        below = special.ndtr((mean - q_thresh) / std)  # P(q >= q_thresh)
    weights = users * np.asarray(traffic.probabilities, dtype=np.float64)  # eq. (1): x(t) weighs each slot
    return (below * weights).sum(-1) / weights.sum()


@dataclass(frozen=True)
class Frontier:
    """For each CPU value on a grid, the least bandwidth on a grid at which a slice meets its beta_thresh."""

    cpu: np.ndarray  # (C,)
    bandwidth: np.ndarray  # (C,), inf where no bandwidth on the grid is enough


def frontier(model: SliceModel, traffic: TrafficDistribution, q_thresh: float, beta_thresh: float,
             cpu_grid: np.ndarray, bandwidth_grid: np.ndarray) -> Frontier:
    """The slice's feasibility frontier on the grid, by exhaustive float64 evaluation."""
    degradation = expected_degradation(model, traffic, q_thresh, cpu_grid[:, None], bandwidth_grid[None, :])
    feasible = degradation <= beta_thresh
    least = np.where(feasible.any(1), bandwidth_grid[feasible.argmax(1)], np.inf)
    return Frontier(cpu_grid, least)


@dataclass(frozen=True)
class SharedOptimum:
    """Per-slice allocations minimizing eta . r with the slices' CPU summing to at most a capacity."""

    cpu: np.ndarray  # (S,)
    bandwidth: np.ndarray  # (S,)


def cpu_capped_optimum(frontiers: list[Frontier], cpu_capacity: float, eta: tuple[float, float]) -> SharedOptimum:
    """The exact optimum on the grid (a multiple-choice knapsack over the slices' frontiers, by dynamic
    programming over the CPU spent), with unlimited bandwidth. The frontiers must share one CPU grid."""
    grid = frontiers[0].cpu
    step = float(grid[1] - grid[0])
    units = np.rint((grid - grid[0]) / step).astype(int)  # CPU above each slice's minimum, in grid steps
    usable = min(cpu_capacity, len(frontiers) * grid[-1])  # more CPU than every slice's maximum buys nothing
    budget = int(np.floor((usable - len(frontiers) * grid[0]) / step + 1e-9))
    best = np.full(budget + 1, np.inf)  # least total bandwidth for exactly `spent` steps of CPU so far
    best[0] = 0.0
    choices = []
    for slice_frontier in frontiers:
        candidates = best[:, None] + slice_frontier.bandwidth[None, :]  # (spent before, choice)
        spent = np.arange(budget + 1)[:, None] + units[None, :]
        updated = np.full(budget + 1, np.inf)
        choice = np.full(budget + 1, -1)
        for index in range(units.size):  # minimum over choices landing on each new `spent`
            fits = spent[:, index] <= budget
            targets, values = spent[fits, index], candidates[fits, index]
            better = values < updated[targets]
            updated[targets[better]] = values[better]
            choice[targets[better]] = index
        choices.append(choice)
        best = updated
    costs = eta[0] * (np.arange(budget + 1) * step + len(frontiers) * grid[0]) + eta[1] * best
    spent_total = int(np.argmin(costs))
    if not np.isfinite(costs[spent_total]):
        raise ValueError(f"no allocation on the grid meets every slice's beta_thresh within {cpu_capacity} millicores")
    picked = []
    for choice in reversed(choices):
        index = int(choice[spent_total])
        picked.append(index)
        spent_total -= int(units[index])
    picked.reverse()
    return SharedOptimum(np.array([grid[i] for i in picked]),
                         np.array([f.bandwidth[i] for f, i in zip(frontiers, picked, strict=True)]))
