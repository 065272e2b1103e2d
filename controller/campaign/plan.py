"""The ordered points of a campaign, each with an id that does not depend on the order."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from controller.campaign.spec import CampaignSpec, axis_values


@dataclass(frozen=True)
class Point:
    """One grid point of one repetition: ``users`` users at (``bandwidth_mbps``, ``cpu_millicores``)."""

    index: int
    repetition: int
    users: int
    bandwidth_mbps: float
    cpu_millicores: float

    @property
    def id(self) -> str:
        return f"r{self.repetition}-u{self.users}-bw{self.bandwidth_mbps:g}-cpu{self.cpu_millicores:g}"


def plan_points(spec: CampaignSpec) -> list[Point]:
    """Every point of the campaign in the order it runs (randomized with ``order.seed`` if asked)."""
    grid = spec.grid
    combinations = [
        (repetition, int(users), bandwidth, cpu)
        for repetition in range(1, spec.repetitions + 1)
        for users, bandwidth, cpu in itertools.product(
            axis_values(grid.users), axis_values(grid.bandwidth_mbps), axis_values(grid.cpu_millicores))
    ]
    if spec.order.randomize:
        permutation = np.random.default_rng(spec.order.seed).permutation(len(combinations))
        combinations = [combinations[i] for i in permutation]
    return [Point(index, *combination) for index, combination in enumerate(combinations)]
