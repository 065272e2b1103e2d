"""Sweep plans: the ordered grid points of a campaign or of a closed loop's round, each with a stable id.

A point's id does not depend on the order the points run in, so a journal keyed by it can tell a resumed
run which points are done.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.campaign.spec import CampaignSpec, PrometheusSpec, axis_values
from controller.testbeds.base import Allocation


@dataclass(frozen=True)
class Point:
    """One grid point of one repetition: ``users`` users at (``bandwidth_mbps``, ``cpu_millicores``)."""

    index: int
    repetition: int
    users: int
    bandwidth_mbps: float
    cpu_millicores: float
    round: int | None = None
    """The closed-loop round the point is measured in (None: a campaign, which has no rounds)."""

    @property
    def id(self) -> str:
        prefix = f"round{self.round}-" if self.round is not None else ""
        return f"{prefix}r{self.repetition}-u{self.users}-bw{self.bandwidth_mbps:g}-cpu{self.cpu_millicores:g}"


@dataclass(frozen=True)
class Sweep:
    """How every point of a sweep is held and measured."""

    name: str
    safe_allocations: dict[str, Allocation]
    """Slice -> its safe (peak) allocation, restored after an actuator fault; the slices the sweep drives."""
    dwell_s: int
    """Seconds measured at each point (every slice must return one sample per second)."""
    settle_s: int = 0
    """Seconds held before the dwell, not recorded."""
    prometheus: PrometheusSpec | None = None
    """Prometheus series exported for each point's wall-clock window (a point without them is incomplete)."""


def plan_grid(users: Sequence[float], bandwidth_mbps: Sequence[float], cpu_millicores: Sequence[float],
              repetitions: int, shuffle_seed: int | Sequence[int] | None = None,
              round_index: int | None = None) -> list[Point]:
    """Every (repetition, users, bandwidth, CPU) combination in the order it runs.

    Args:
        shuffle_seed: a seed to randomize the order with (None: the nested-loop order).
        round_index: the closed-loop round the points belong to (part of their ids), if any.
    """
    combinations = [
        (repetition, int(user), bandwidth, cpu)
        for repetition in range(1, repetitions + 1)
        for user, bandwidth, cpu in itertools.product(users, bandwidth_mbps, cpu_millicores)
    ]
    if shuffle_seed is not None:
        permutation = np.random.default_rng(shuffle_seed).permutation(len(combinations))
        combinations = [combinations[i] for i in permutation]
    return [Point(index, *combination, round=round_index) for index, combination in enumerate(combinations)]


def plan_points(spec: CampaignSpec) -> list[Point]:
    """Every point of the campaign in the order it runs (randomized with ``order.seed`` if asked)."""
    grid = spec.grid
    return plan_grid(axis_values(grid.users), axis_values(grid.bandwidth_mbps), axis_values(grid.cpu_millicores),
                     spec.repetitions, spec.order.seed if spec.order.randomize else None)


def campaign_sweep(spec: CampaignSpec) -> Sweep:
    """How the campaign holds and measures each of its points."""
    return Sweep(spec.name, {s.name: Allocation(*s.bounds.upper) for s in spec.slices}, spec.dwell_s, spec.settle_s,
                 spec.prometheus)
