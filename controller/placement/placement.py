"""A placement (slice -> VNF -> tier), the resources it occupies, and the sequential driver the online methods share.

The placement document (:meth:`Placement.document`) is what later steps consume: the lab manifests here, and
the local testbed's ``testbed place`` (issue 12) reads the same ``slices.<name>.vnfs.<vnf>: <tier>`` mapping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controller.placement.problem import Problem, Requests

Assignment = tuple[int, ...]
"""A tier index per VNF of the chain."""


@dataclass
class Placement:
    """Where every slice's VNFs run (``None``: the slice was rejected) and how long deciding took."""

    method: str
    assignment: dict[str, Assignment | None]
    decision_s: float
    """wall time of every placement decision together (for batch methods: the one solve)"""
    details: dict[str, Any] = field(default_factory=dict)

    def document(self, problem: Problem, requests: Requests) -> dict[str, Any]:
        """Plain data: method, times and ``slices.<name>`` -> type, tier per VNF (``vnfs: null`` if rejected), flavors,
        the user-plane latency of eq. (4) and the bound a testbed check should confirm."""
        slices = {}
        for name, type_index in zip(requests.names, requests.types, strict=True):
            tiers = self.assignment.get(name)
            slices[name] = {"type": problem.types[type_index],
                            "vnfs": None if tiers is None else {problem.vnfs[v]: problem.tiers[k]
                                                                for v, k in enumerate(tiers)},
                            "flavors": dict(zip(problem.vnfs, problem.flavors[type_index], strict=True)),
                            "latency_ms": None if tiers is None else problem.slice_latency_ms(tiers),
                            "latency_bound_ms": float(problem.bounds_ms[type_index])}
        return {"method": self.method, "decision_s": self.decision_s, "details": self.details,
                "tiers": list(problem.tiers), "slices": slices}


class Occupancy:
    """CPU and memory in use on each tier."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.cpu = np.zeros(problem.n_tiers, dtype=np.int64)
        self.mem = np.zeros(problem.n_tiers, dtype=np.int64)

    def fits(self, type_index: int, vnf: int) -> np.ndarray:
        """Boolean mask of the tiers with room for this VNF."""
        p = self.problem
        return (self.cpu + p.cpu[type_index, vnf] <= p.cap_cpu) & (self.mem + p.mem[type_index, vnf] <= p.cap_mem)

    def add(self, type_index: int, vnf: int, tier: int, sign: int = 1) -> None:
        self.cpu[tier] += sign * self.problem.cpu[type_index, vnf]
        self.mem[tier] += sign * self.problem.mem[type_index, vnf]

    def add_slice(self, type_index: int, assignment: Assignment, sign: int = 1) -> None:
        for vnf, tier in enumerate(assignment):
            self.add(type_index, vnf, tier, sign)

    def free_fraction(self) -> tuple[np.ndarray, np.ndarray]:
        """Free CPU and memory per tier as fractions of capacity."""
        p = self.problem
        return 1 - self.cpu / p.cap_cpu, 1 - self.mem / p.cap_mem


@dataclass
class Step:
    """What a sequential chooser sees when it places one VNF."""

    problem: Problem
    requests: Requests
    occupancy: Occupancy
    slice_index: int
    type_index: int
    vnf: int
    partial: list[int]
    """tiers of this slice's VNFs placed so far (in chain order)"""
    fits: np.ndarray


Chooser = Callable[[Step], int]


def place_sequentially(problem: Problem, requests: Requests, method: str, choose: Chooser,
                       occupancy: Occupancy | None = None) -> Placement:
    """Place slices in arrival order, VNF by VNF in chain order, asking ``choose`` for a tier that fits.

    A slice whose next VNF fits no tier is rejected and its VNFs released; earlier slices stay (online).
    """
    occupancy = occupancy or Occupancy(problem)
    assignment: dict[str, Assignment | None] = {}
    started = time.perf_counter()
    for index, (name, type_index) in enumerate(zip(requests.names, requests.types, strict=True)):
        partial: list[int] = []
        for vnf in range(problem.n_vnfs):
            fits = occupancy.fits(type_index, vnf)
            if not fits.any():
                break
            tier = choose(Step(problem, requests, occupancy, index, type_index, vnf, partial, fits))
            occupancy.add(type_index, vnf, tier)
            partial.append(tier)
        if len(partial) == problem.n_vnfs:
            assignment[name] = tuple(partial)
        else:
            occupancy.add_slice(type_index, tuple(partial), sign=-1)
            assignment[name] = None
    return Placement(method, assignment, time.perf_counter() - started)


def score(problem: Problem, requests: Requests, placement: Placement) -> dict[str, Any]:
    """Cost ($/h), SLA violations among placed slices, rejected slices, utilization per tier (%), decision time."""
    occupancy = Occupancy(problem)
    cost, violations, rejected = 0.0, 0, 0
    for name, type_index in zip(requests.names, requests.types, strict=True):
        tiers = placement.assignment.get(name)
        if tiers is None:
            rejected += 1
            continue
        occupancy.add_slice(type_index, tiers)
        cost += problem.slice_cost(type_index, tiers)
        violations += not problem.sla_met(type_index, tiers)
    row: dict[str, Any] = {"method": placement.method, "slices": len(requests), "cost_per_hour": cost,
                           "sla_violations": violations, "rejected": rejected,
                           "sla_violation_pct": 100.0 * (violations + rejected) / max(len(requests), 1),
                           "decision_s": placement.decision_s,
                           "decision_ms_per_slice": 1000 * placement.decision_s / max(len(requests), 1)}
    for tier, name in enumerate(problem.tiers):
        row[f"cpu_pct_{name}"] = float(100.0 * occupancy.cpu[tier] / problem.cap_cpu[tier])
        row[f"mem_pct_{name}"] = float(100.0 * occupancy.mem[tier] / problem.cap_mem[tier])
    return row
