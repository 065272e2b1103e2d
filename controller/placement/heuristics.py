"""The paper's heuristic baselines (Sec. V-B, 2-5): fast, online, blind to slice SLAs.

Each places slices in arrival order and VNFs in chain order on a tier with room for them:

- ``cost-aware``: the cheapest tier for the VNF;
- ``performance-aware``: the tier closest to the users (the spec's tier order), moving outwards as tiers fill;
- ``random``: a uniformly drawn tier (seeded);
- ``load-balancing``: the Kubernetes scheduler's LeastAllocated score, i.e. the tier whose free CPU and memory
  fractions, averaged, are largest after the VNF is placed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from controller.placement.placement import Chooser, Placement, Step, place_sequentially
from controller.placement.problem import Problem, Requests


def _cheapest(step: Step) -> int:
    costs = np.where(step.fits, step.problem.cost[step.type_index, step.vnf], np.inf)
    return int(np.argmin(costs))


def _closest(step: Step) -> int:
    return int(np.argmax(step.fits))  # the first tier (closest to the radio) with room


def _least_allocated(step: Step) -> int:
    p, used = step.problem, step.occupancy
    free_cpu = (p.cap_cpu - used.cpu - p.cpu[step.type_index, step.vnf]) / p.cap_cpu
    free_mem = (p.cap_mem - used.mem - p.mem[step.type_index, step.vnf]) / p.cap_mem
    return int(np.argmax(np.where(step.fits, (free_cpu + free_mem) / 2, -np.inf)))


def _random(seed: int) -> Chooser:
    rng = np.random.default_rng(seed)

    def choose(step: Step) -> int:
        return int(rng.choice(np.flatnonzero(step.fits)))

    return choose


HEURISTICS: dict[str, Callable[[int], Chooser]] = {
    "cost-aware": lambda _seed: _cheapest,
    "performance-aware": lambda _seed: _closest,
    "random": _random,
    "load-balancing": lambda _seed: _least_allocated,
}
"""Heuristic name -> a chooser factory taking the random seed."""


def place_heuristic(problem: Problem, requests: Requests, name: str, seed: int = 0) -> Placement:
    """Place ``requests`` with heuristic ``name`` (one of :data:`HEURISTICS`)."""
    return place_sequentially(problem, requests, name, HEURISTICS[name](seed))
