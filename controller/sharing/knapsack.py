"""The max-weight 0/1 knapsack of the slice multiplexer (paper eq. 17), solved exactly with OR-Tools."""

from __future__ import annotations

from collections.abc import Sequence

from ortools.algorithms.python import knapsack_solver

from core.errors import InputError

WEIGHT_SCALE = 1_000_000
"""Deficits are real numbers; OR-Tools takes integer values, so they are scaled and rounded."""


class MaxWeightKnapsack:
    """Chooses the demands to accept: maximum total weight whose total demand fits the capacity.

    Branch and bound is fastest when the values differ, but explodes on ties (equal deficits, e.g. every slice on
    target): up to seconds for 50 slices. Ties go to dynamic programming, whose time is items x capacity.
    """

    def __init__(self) -> None:
        solvers = knapsack_solver.SolverType
        self._branch_and_bound = knapsack_solver.KnapsackSolver(
            solvers.KNAPSACK_MULTIDIMENSION_BRANCH_AND_BOUND_SOLVER, "slice-multiplexer")
        self._dynamic = knapsack_solver.KnapsackSolver(solvers.KNAPSACK_DYNAMIC_PROGRAMMING_SOLVER, "slice-multiplexer")

    def solve(self, weights: Sequence[float], demands: Sequence[int], capacity: int) -> list[bool]:
        """Which items to accept. Every weight gets one extra unit, so among equal-deficit choices the one that
        accepts more slices wins; demands of 0 are always accepted.

        Raises:
            InputError: a capacity of 0 PRBs or less (nothing can be shared), or a negative weight or demand.
        """
        if capacity <= 0:
            raise InputError(f"knapsack capacity {capacity} PRBs: a multiplexer needs a positive capacity")
        if any(weight < 0 for weight in weights) or any(demand < 0 for demand in demands):
            raise InputError("knapsack weights (deficits) and demands must not be negative")
        candidates = [index for index, demand in enumerate(demands) if 0 < demand <= capacity]
        chosen = [demand == 0 for demand in demands]
        if not candidates:
            return chosen
        if sum(demands[index] for index in candidates) <= capacity:
            for index in candidates:
                chosen[index] = True
            return chosen
        values = [round(weights[index] * WEIGHT_SCALE) + 1 for index in candidates]
        solver = self._branch_and_bound if len(set(values)) == len(values) else self._dynamic
        solver.init(values, [[int(demands[index]) for index in candidates]], [int(capacity)])
        solver.solve()
        for position, index in enumerate(candidates):
            chosen[index] = solver.best_solution_contains(position)
        return chosen
