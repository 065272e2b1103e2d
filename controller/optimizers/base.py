"""What every optimizer returns, and the bookkeeping of the best allocation found so far."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from controller.problem import RESOURCES, Problem, ProblemTensors


@dataclass
class Solution:
    """An allocation per slice with its exact expected degradation and cost.

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

    def per_slice(self, problem: Problem) -> list[dict[str, Any]]:
        """One record per slice: name, allocation, normalized allocation and expected degradation."""
        eta = np.asarray(problem.eta)
        return [
            {
                "slice": slice_problem.name,
                RESOURCES[0]: float(self.allocation[index, 0]),
                RESOURCES[1]: float(self.allocation[index, 1]),
                "normalized": float(self.allocation[index] @ eta),
                "expected_degradation": float(self.expected_degradation[index]),
            }
            for index, slice_problem in enumerate(problem.slices)
        ]


class BestTracker:
    """Keeps the cheapest strictly feasible allocation seen, and the least-violating one as a fallback."""

    def __init__(self, tensors: ProblemTensors, problem: Problem) -> None:
        self.tensors = tensors
        # float32 tensors may round a bound outwards: answers are clipped to the exact bounds
        self.lower = np.array([s.lower for s in problem.slices], dtype=np.float64)
        self.upper = np.array([s.upper for s in problem.slices], dtype=np.float64)
        self.started = time.perf_counter()
        self.best_cost = float("inf")
        self.best: tuple[torch.Tensor, torch.Tensor] | None = None
        self.least_violation = float("inf")
        self.fallback: tuple[torch.Tensor, torch.Tensor] | None = None
        self.history: list[tuple[float, float]] = []

    @torch.no_grad()
    def update(self, allocation: torch.Tensor, degradation: torch.Tensor) -> None:
        """Consider a batch of candidates: allocation (N, S, K), exact degradation (N, S)."""
        feasible = self.tensors.feasible(degradation, allocation)
        if feasible.any():
            cost = torch.where(feasible, self.tensors.cost(allocation), torch.inf)
            index = int(cost.argmin())
            if cost[index].item() < self.best_cost:
                self.best_cost = cost[index].item()
                self.best = (allocation[index].detach().clone(), degradation[index].detach().clone())
                self.history.append((time.perf_counter() - self.started, self.best_cost))
        elif self.best is None:
            violation = self.tensors.violation(degradation, allocation)
            index = int(violation.argmin())
            if violation[index].item() < self.least_violation:
                self.least_violation = violation[index].item()
                self.fallback = (allocation[index].detach().clone(), degradation[index].detach().clone())

    def solution(self, method: str, iterations: int) -> Solution:
        """The best feasible allocation, or the least-violating one flagged infeasible."""
        chosen = self.best if self.best is not None else self.fallback
        if chosen is None:
            raise RuntimeError("no candidate was evaluated")
        allocation, degradation = chosen
        return Solution(
            method=method,
            allocation=np.clip(allocation.cpu().double().numpy(), self.lower, self.upper),
            expected_degradation=degradation.cpu().double().numpy(),
            normalized=float(self.tensors.cost(allocation).item()),
            feasible=self.best is not None,
            seconds=time.perf_counter() - self.started,
            iterations=iterations,
            history=tuple(self.history),
        )


@torch.no_grad()
def evaluate_allocation(problem: Problem, allocation: np.ndarray, method: str, started: float,
                        device: torch.device | str = "cpu", iterations: int = 0,
                        history: tuple[tuple[float, float], ...] = ()) -> Solution:
    """A Solution for ``allocation`` (S, K) judged on ``problem`` itself: exact degradation and feasibility.

    Methods that optimize a different problem (the traffic peak, a scalar QoS) are scored with this, so
    every method is measured on the same problem. ``started`` is the ``time.perf_counter()`` of the solve.
    """
    tensors = ProblemTensors.build(problem, device)
    candidate = torch.as_tensor(np.asarray(allocation, dtype=np.float32), device=device)
    degradation = tensors.expected_degradation(candidate)
    return Solution(
        method=method,
        allocation=np.asarray(allocation, dtype=np.float64),
        expected_degradation=degradation.cpu().double().numpy(),
        normalized=float(tensors.cost(candidate).item()),
        feasible=bool(tensors.feasible(degradation, candidate).item()),
        seconds=time.perf_counter() - started,
        iterations=iterations,
        history=history,
    )
