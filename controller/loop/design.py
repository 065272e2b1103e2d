"""Where the loop measures: the first round's design and the targeted sweep after a level fails.

- The first round measures ``sweep.design``: every combination of the listed values (``grid``), or ``points``
  space-filling (CPU, bandwidth) points per user count from a scrambled Sobol sequence or a Latin hypercube
  (``scipy.stats.qmc``), each user count with its own draw so no two share an allocation.
- A level that exceeded beta_thresh with evidence is followed by a targeted sweep (active learning): points
  around the allocation that failed (more of both resources first), and allocations where the model's predicted
  degradation of the level is closest to the target beta and least certain: the lowest straddle score
  ``|D - beta| - 1.96 spread - 0.1 distance`` (a criterion for level-set estimation), where spread is the standard
  deviation of the predicted degradation over the model's ensemble members (0 for a single model) and distance,
  the tie-breaker, is how far the nearest measured allocation is, as a share of the bounds. Each point holds one
  of the user counts that weigh most in the level's eq. (1), in turn.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import ndtr
from scipy.stats import qmc

from analysis.ensemble_model import EnsembleModel
from analysis.slice_model import SliceModel
from controller.campaign.plan import Point
from controller.spec import ExperimentSpec, SweepDesign, TargetedSweepSpec
from controller.traffic import TrafficDistribution

SweepTarget = tuple[int, float, float]
"""A point to measure before it is numbered: (users, bandwidth Mbps, CPU millicores)."""

AROUND = ((1, 1), (1, 0), (0, 1), (1, -1), (-1, 1), (-1, -1), (-1, 0), (0, -1))
DISTANCE_WEIGHT = 0.1
"""Degradation units one bounds-wide step away from the measured data is worth in the straddle score."""
"""Directions (CPU, bandwidth) around a failed allocation, most promising first: it needed more resources."""


def first_round_targets(spec: ExperimentSpec) -> list[SweepTarget]:
    """The first round's sweep: the spec's design over the sweep's user counts."""
    sweep = spec.sweep
    users = spec.sweep_users()
    if sweep.design == "grid":
        return [(int(count), float(bandwidth), float(cpu))
                for count, bandwidth, cpu in itertools.product(users, sweep.bandwidth_mbps, sweep.cpu_millicores)]
    assert sweep.points is not None, "the spec requires points for a space-filling design"
    return space_filling(sweep.design, users, (sweep.cpu_millicores[0], sweep.cpu_millicores[1]),
                         (sweep.bandwidth_mbps[0], sweep.bandwidth_mbps[1]), sweep.points, spec.seed)


def space_filling(design: SweepDesign, users: Sequence[int], cpu_range: tuple[float, float],
                  bandwidth_range: tuple[float, float], per_user: int, seed: int) -> list[SweepTarget]:
    """``per_user`` Sobol or Latin-hypercube (CPU, bandwidth) points for each user count, each its own draw.

    CPU is rounded to whole millicores and bandwidth to 0.1 Mbps (what the actuators set).
    """
    targets = []
    for count in users:
        rng = np.random.default_rng([seed, count])
        if design == "sobol":
            unit = qmc.Sobol(d=2, scramble=True, rng=rng).random_base2(int(np.log2(per_user)))
        else:
            unit = qmc.LatinHypercube(d=2, rng=rng).random(per_user)
        scaled = qmc.scale(unit, [cpu_range[0], bandwidth_range[0]], [cpu_range[1], bandwidth_range[1]])
        targets += [(int(count), round(float(bandwidth), 1), float(round(cpu))) for cpu, bandwidth in scaled]
    return targets


def numbered_points(targets: Sequence[SweepTarget], repetitions: int, round_index: int,
                    shuffle_seed: Sequence[int] | None = None) -> list[Point]:
    """The round's points in the order they run (shuffled if a seed is given), duplicates dropped."""
    combinations = [(repetition, *target) for repetition in range(1, repetitions + 1) for target in targets]
    if shuffle_seed is not None:
        order = np.random.default_rng(list(shuffle_seed)).permutation(len(combinations))
        combinations = [combinations[i] for i in order]
    points: dict[str, Point] = {}
    for repetition, users, bandwidth, cpu in combinations:
        point = Point(len(points), repetition, users, bandwidth, cpu, round=round_index)
        points.setdefault(point.id, point)
    return list(points.values())


@dataclass(frozen=True)
class FailedLevel:
    """A slice at a traffic level that exceeded its degradation target with evidence, and what it was given."""

    level: int
    slice_name: str
    cpu_millicores: float
    bandwidth_mbps: float
    traffic: TrafficDistribution
    q_thresh: float
    beta: float
    """The degradation the optimizer aimed at (beta_thresh less the spec's margin)."""
    lower: tuple[float, float]
    upper: tuple[float, float]


def targeted_targets(failure: FailedLevel, model: SliceModel, measured: np.ndarray, settings: TargetedSweepSpec,
                     seed: Sequence[int]) -> list[SweepTarget]:
    """The targeted sweep of one failed level (see the module docstring).

    Args:
        measured: the inputs measured so far, (rows, 3) as (n_users, bw, cpu).
        seed: seeds the candidate draw.
    """
    users = heaviest_users(failure.traffic, settings.users)
    lower, span = np.asarray(failure.lower), np.maximum(np.asarray(failure.upper) - failure.lower, 1e-9)
    failed = np.array([failure.cpu_millicores, failure.bandwidth_mbps])
    around = _around(failed, lower, span, settings)
    chosen = [failed, *around]  # the failed allocation itself was measured by its validation window
    candidates = lower + qmc.LatinHypercube(d=2, rng=np.random.default_rng(list(seed))).random(
        settings.candidates) * span
    scores = _straddle(failure, model, measured, candidates, users, span)
    frontier: list[np.ndarray] = []
    for index in np.argsort(scores, kind="stable"):
        if len(frontier) == settings.frontier:
            break
        candidate = candidates[index]
        if all(np.abs((candidate - other) / span).max() >= settings.radius / 2 for other in chosen):
            frontier.append(candidate)
            chosen.append(candidate)
    allocations = [*around, *frontier]
    return [(users[index % len(users)], round(float(allocation[1]), 1), float(round(allocation[0])))
            for index, allocation in enumerate(allocations)]


def heaviest_users(traffic: TrafficDistribution, count: int) -> list[int]:
    """The ``count`` whole user counts that weigh most in the level's eq. (1), heaviest first."""
    weights: dict[int, float] = {}
    for users, weight in zip(traffic.support, traffic.degradation_weights(), strict=True):
        key = max(1, int(np.rint(users)))
        weights[key] = weights.get(key, 0.0) + float(weight)
    return sorted(weights, key=lambda key: (-weights[key], key))[:count]


def _around(failed: np.ndarray, lower: np.ndarray, span: np.ndarray, settings: TargetedSweepSpec) -> list[np.ndarray]:
    """Up to ``settings.around`` allocations one radius from ``failed`` (clipped to the bounds), distinct."""
    points: list[np.ndarray] = []
    for direction in AROUND:
        if len(points) == settings.around:
            break
        point = np.clip(failed + np.asarray(direction) * settings.radius * span, lower, lower + span)
        if not np.allclose(point, failed) and not any(np.allclose(point, other) for other in points):
            points.append(point)
    return points


@torch.no_grad()
def _straddle(failure: FailedLevel, model: SliceModel, measured: np.ndarray, candidates: np.ndarray,
              users: list[int], span: np.ndarray) -> np.ndarray:
    """``|D - beta| - 1.96 spread - 0.1 distance`` for each candidate allocation (CPU, bandwidth); lower is better."""
    support, weights = failure.traffic.support, failure.traffic.degradation_weights()
    grid = np.empty((len(candidates), support.size, 3))  # (C, T, 3): every candidate at every users/s value
    grid[..., 0], grid[..., 1], grid[..., 2] = support, candidates[:, 1:2], candidates[:, 0:1]
    means, stds = member_qos(model, grid.reshape(-1, 3))
    direction = 1.0 if model.higher_is_better else -1.0  # a lower-is-better QoS degrades above its threshold
    below = ndtr(direction * (failure.q_thresh - means) / stds).reshape(len(means), *grid.shape[:2])  # (M, C, T)
    degradation = below @ weights  # (M, C)
    spread = degradation.std(0) if len(degradation) > 1 else np.zeros(len(candidates))
    nearby = measured[np.isin(np.rint(measured[:, 0]), users)][:, [2, 1]]  # (cpu, bw) of the level's users
    if len(nearby):
        gaps = (candidates[:, None, :] - nearby[None, :, :]) / span
        distance = np.sqrt((gaps**2).sum(-1)).min(1) / np.sqrt(2)
    else:
        distance = np.ones(len(candidates))
    score: np.ndarray = np.abs(degradation.mean(0) - failure.beta) - 1.96 * spread - DISTANCE_WEIGHT * distance
    return score


@torch.no_grad()
def member_qos(model: SliceModel, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (Mbps) of the QoS at ``inputs`` (N, 3), per ensemble member: (M, N) each.

    An ensemble's members each give their own Gaussian (with the model's calibrated sigma factor); any other
    model is one member.
    """
    device = next(model.parameters()).device
    tensor = torch.as_tensor(np.asarray(inputs, dtype=np.float32), device=device)
    if isinstance(model, EnsembleModel):
        means, stds = model.member_outputs(tensor)
        stds = stds * model.sigma_scale
    else:
        mean, std = model(tensor)
        means, stds = mean[None], std[None]
    return means.double().cpu().numpy(), stds.double().cpu().numpy()
