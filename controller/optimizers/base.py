"""What every optimizer returns, how its answer is judged, and the bookkeeping of the best allocation so far.

Solvers search in float32 (fast, folded models); every answer is then judged once more, as returned:
clipped to the exact bounds first, then its degradation and feasibility computed in float64 on the
unfolded models (:func:`finalize`), so the reported numbers always belong to the reported allocation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from controller.problem import RESOURCES, Problem, ProblemTensors

NEAR_FEASIBLE = 2e-5
"""Candidates whose float32 degradation exceeds beta_thresh by at most this much are kept for the float64
judgement: float32 rounding moves a degradation by up to about 1e-5 near the boundary."""
POOL_SIZE = 16
"""Cheapest (near-)feasible candidates the tracker keeps for the float64 judgement."""

View = Callable[[ProblemTensors], ProblemTensors]
"""A different reading of a problem's tensors (the ablation's scalar QoS); the identity by default."""


@dataclass
class Solution:
    """An allocation per slice with its exact expected degradation (float64) and cost.

    ``feasible`` is False for a best-effort answer: no allocation found meets every constraint, and
    ``allocation`` is the one with the least violation.
    """

    method: str
    allocation: np.ndarray  # (S, K) in RESOURCES order
    expected_degradation: np.ndarray  # (S,)
    normalized: float
    feasible: bool
    seconds: float
    iterations: int = 0
    history: tuple[tuple[float, float], ...] = ()
    """(seconds since the start, best feasible cost) each time the best feasible allocation improved."""
    extrapolated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """(S,) whether each slice's model is asked outside its training data (see ``controller.support``)."""
    queries: int = 0
    """Slice allocations evaluated on the slice model while searching (exact queries)."""
    certificate: dict[str, float] = field(default_factory=dict)
    """How the answer is known to be optimal, where the method says (e.g. the exact solver's KKT residual)."""

    def per_slice(self, problem: Problem) -> list[dict[str, Any]]:
        """One record per slice: name, allocation, normalized allocation, expected degradation, extrapolated."""
        eta = np.asarray(problem.eta)
        return [
            {
                "slice": slice_problem.name,
                RESOURCES[0]: float(self.allocation[index, 0]),
                RESOURCES[1]: float(self.allocation[index, 1]),
                "normalized": float(self.allocation[index] @ eta),
                "expected_degradation": float(self.expected_degradation[index]),
                "extrapolated": bool(self.extrapolated[index]),
            }
            for index, slice_problem in enumerate(problem.slices)
        ]


@dataclass(frozen=True)
class Judgement:
    """Allocations judged in float64 on the unfolded models."""

    allocation: np.ndarray  # (..., S, K), clipped to the bounds
    degradation: np.ndarray  # (..., S)
    cost: np.ndarray  # (...)
    feasible: np.ndarray  # (...) bool


@torch.no_grad()
def judge(problem: Problem, allocation: np.ndarray, view: View | None = None) -> Judgement:
    """Clip allocations (..., S, K) to the exact bounds, then evaluate them in float64 on the unfolded models
    (read through ``view`` when given)."""
    lower = np.array([s.lower for s in problem.slices], dtype=np.float64)
    upper = np.array([s.upper for s in problem.slices], dtype=np.float64)
    clipped = np.clip(np.asarray(allocation, dtype=np.float64), lower, upper)
    tensors = ProblemTensors.build(problem, dtype=torch.float64)
    if view is not None:
        tensors = view(tensors)
    candidate = torch.from_numpy(clipped)
    degradation = tensors.expected_degradation(candidate)
    return Judgement(clipped, degradation.numpy(), tensors.cost(candidate).numpy(),
                     tensors.feasible(degradation, candidate).numpy())


def finalize(problem: Problem, allocation: np.ndarray, method: str, started: float, iterations: int = 0,
             history: tuple[tuple[float, float], ...] = (), queries: int = 0,
             certificate: dict[str, float] | None = None) -> Solution:
    """The Solution for ``allocation`` (S, K) judged on ``problem`` itself (clipped, float64, unfolded).

    Methods that optimize a different problem (the traffic peak, a scalar QoS) are scored with this too, so
    every method is measured on the same problem. ``started`` is the ``time.perf_counter()`` of the solve.
    """
    judged = judge(problem, allocation)
    return Solution(
        method=method,
        allocation=judged.allocation,
        expected_degradation=judged.degradation,
        normalized=float(judged.cost),
        feasible=bool(judged.feasible),
        seconds=time.perf_counter() - started,
        iterations=iterations,
        history=history,
        extrapolated=np.array([s.extrapolated(row) for s, row in zip(problem.slices, judged.allocation,
                                                                      strict=True)]),
        queries=queries,
        certificate=certificate or {},
    )


class BestTracker:
    """Keeps the cheapest (near-)feasible allocations seen for the final float64 judgement, the history of the
    best strictly feasible cost, and the least-violating allocation as a fallback."""

    def __init__(self, tensors: ProblemTensors, problem: Problem, view: View | None = None) -> None:
        self.tensors = tensors
        self.problem = problem
        self.view = view
        self.started = time.perf_counter()
        self.best_cost = float("inf")
        self.best: torch.Tensor | None = None
        self.pool_cost = torch.empty(0, device=tensors.lower.device)
        self.pool = torch.empty(0, *tensors.lower.shape, device=tensors.lower.device)
        self.least_violation = float("inf")
        self.fallback: torch.Tensor | None = None
        self.history: list[tuple[float, float]] = []

    @torch.no_grad()
    def update(self, allocation: torch.Tensor, degradation: torch.Tensor) -> None:
        """Consider a batch of candidates: allocation (N, S, K), float32 degradation (N, S)."""
        allocation = allocation.detach().reshape(-1, *allocation.shape[-2:])
        degradation = degradation.detach().reshape(-1, degradation.shape[-1])
        cost = self.tensors.cost(allocation)
        within = self.tensors.within_capacity(allocation)
        near = (degradation <= self.tensors.beta_thresh + NEAR_FEASIBLE).all(-1) & within
        if near.any():
            self._keep(allocation[near], cost[near])
        feasible = (degradation <= self.tensors.beta_thresh).all(-1) & within
        if feasible.any():
            index = int(torch.where(feasible, cost, torch.inf).argmin())
            if cost[index].item() < self.best_cost:
                self.best_cost = cost[index].item()
                self.best = allocation[index].clone()
                self.history.append((time.perf_counter() - self.started, self.best_cost))
        elif self.best is None:
            violation = self.tensors.violation(degradation, allocation)
            index = int(violation.argmin())
            if violation[index].item() < self.least_violation:
                self.least_violation = violation[index].item()
                self.fallback = allocation[index].clone()

    def _keep(self, allocation: torch.Tensor, cost: torch.Tensor) -> None:
        """Merge candidates into the pool of the ``POOL_SIZE`` cheapest."""
        pool_cost = torch.cat((self.pool_cost, cost))
        pool = torch.cat((self.pool, allocation))
        order = pool_cost.argsort()[:POOL_SIZE]
        self.pool_cost, self.pool = pool_cost[order], pool[order]

    def solution(self, method: str, iterations: int, queries: int = 0) -> Solution:
        """The cheapest candidate that is feasible in float64, or the least-violating one flagged infeasible.

        Searched through a ``view`` (the ablation's scalar QoS), the history of costs feasible in that view says
        nothing about the problem itself and is left out."""
        history = () if self.view is not None else tuple(self.history)
        candidates = [self.pool] + ([self.best[None]] if self.best is not None else [])
        pool = torch.cat(candidates).cpu().double().numpy()
        if len(pool):
            judged = judge(self.problem, pool, self.view)
            if judged.feasible.any():
                index = int(np.argmin(np.where(judged.feasible, judged.cost, np.inf)))
                return finalize(self.problem, pool[index], method, self.started, iterations, history, queries)
        chosen = self.best if self.best is not None else self.fallback
        if chosen is None:
            raise RuntimeError("no candidate was evaluated")
        return finalize(self.problem, chosen.cpu().double().numpy(), method, self.started, iterations, history,
                        queries)
