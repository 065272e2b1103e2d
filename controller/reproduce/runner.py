"""Solve every case of the reproduction with every method and seed, on one slice model, one case at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from analysis.slice_model import SliceModel
from controller.optimizer_settings import DEFAULT_ETA
from controller.optimizers import default_settings, solve
from controller.optimizers.base import Solution
from controller.optimizers.cadrl import policy_for
from controller.problem import Problem, SliceProblem
from controller.reproduce.cases import (
    DETERMINISTIC_METHODS,
    MATCHED_BUDGET_METHODS,
    Case,
    ReproduceConfig,
    build_cases,
)


@dataclass
class ReproductionResult:
    """Everything measured in one run."""

    results: pd.DataFrame  # one row per case, method and seed
    policies: pd.DataFrame  # CaDRL's per-SLA (and seed) policies and their training seconds
    convergence: pd.DataFrame  # (case, seed, method, seconds, normalized): best feasible cost over time
    seconds: float  # wall time of the whole run


def solves(config: ReproduceConfig) -> int:
    """How many solves ``run_reproduction(config)`` makes (for a progress bar)."""
    seeded = len(config.seeds)
    return sum(1 if method in DETERMINISTIC_METHODS else seeded
               for case in build_cases(config) for method in case.methods)


def run_reproduction(model: SliceModel, config: ReproduceConfig, device: torch.device | str = "cpu",
                     advance: Callable[[str], None] | None = None) -> ReproductionResult:
    """Solve ``build_cases(config)`` with their methods for every seed; ``advance(description)`` after each solve.

    MicroOpt runs before the baselines of ``MATCHED_BUDGET_METHODS`` on each case and seed, which then get
    its exact-query count as their budget.
    """
    started = time.perf_counter()
    cases = build_cases(config)
    solve(problem_of(model, cases[0]), "microopt", default_settings("microopt"), device)  # warm-up, not measured
    rows: list[dict[str, Any]] = []
    policies: list[dict[str, float]] = []
    convergence: list[dict[str, Any]] = []
    for seed in config.seeds:
        for index, case in enumerate(cases):
            problem = problem_of(model, case)
            microopt_queries = 0
            for method in case.methods:
                if method in DETERMINISTIC_METHODS and seed != config.seeds[0]:
                    continue
                overrides = {**config.settings.get(method, {}), **_seeded(method, seed)}
                if method in MATCHED_BUDGET_METHODS and microopt_queries:
                    overrides["queries"] = microopt_queries
                settings = default_settings(method, **overrides)
                if method == "cadrl":
                    trained = _train_cadrl_once(problem, settings, device, seed, policies)
                    if trained is not None:
                        policies.append({"q_thresh": case.q_thresh, "beta_thresh": case.beta_thresh, "seed": seed,
                                         "train_seconds": trained})
                solution = solve(problem, method, settings, device)
                if method == "microopt":
                    microopt_queries = solution.queries
                rows.append(_row(index, case, method, seed, solution))
                convergence += [{"case": index, "seed": seed, "method": method, "seconds": seconds,
                                 "normalized": cost} for seconds, cost in _trace(solution)]
                if advance is not None:
                    advance(f"seed {seed} {case.experiment} {case.label} q={case.q_thresh:g} "
                            f"beta={case.beta_thresh:g} {method}")
    return ReproductionResult(
        results=pd.DataFrame(rows),
        policies=pd.DataFrame(policies, columns=["q_thresh", "beta_thresh", "seed", "train_seconds"]),
        convergence=pd.DataFrame(convergence, columns=["case", "seed", "method", "seconds", "normalized"]),
        seconds=time.perf_counter() - started,
    )


def _seeded(method: str, seed: int) -> dict[str, int]:
    """The seed override of a randomized method (none for the deterministic ones)."""
    return {} if method in DETERMINISTIC_METHODS else {"seed": seed}


def _row(index: int, case: Case, method: str, seed: int, solution: Solution) -> dict[str, Any]:
    degradation = float(solution.expected_degradation[0])
    return {
        "case": index, "experiment": case.experiment, "traffic": case.label, "users": case.users,
        "traffic_std": case.traffic_std, "q_thresh": case.q_thresh, "beta_thresh": case.beta_thresh,
        "method": method, "seed": seed, "cpu_millicores": float(solution.allocation[0, 0]),
        "bandwidth_mbps": float(solution.allocation[0, 1]), "normalized": solution.normalized,
        "expected_degradation": degradation, "meets_beta": degradation <= case.beta_thresh,
        "feasible": solution.feasible, "seconds": solution.seconds, "queries": solution.queries,
    }


def _trace(solution: Solution) -> list[tuple[float, float]]:
    """The best feasible cost over the solve's wall time: its history, ending with the returned answer."""
    final = [(solution.seconds, solution.normalized)] if solution.feasible else []
    return [*solution.history, *final]


def problem_of(model: SliceModel, case: Case) -> Problem:
    """The one-slice problem of ``case`` with the default bounds (the training data's range) and eta."""
    return Problem((SliceProblem("embb", model, case.traffic, case.q_thresh, case.beta_thresh),), eta=DEFAULT_ETA)


def _train_cadrl_once(problem: Problem, settings: Any, device: torch.device | str, seed: int,
                      policies: list[dict[str, float]]) -> float | None:
    """Train CaDRL's policy for this SLA and seed unless done already; its training seconds, or None if cached."""
    slice_problem = problem.slices[0]
    if any(row["q_thresh"] == slice_problem.q_thresh and row["beta_thresh"] == slice_problem.beta_thresh
           and row["seed"] == seed for row in policies):
        return None
    return policy_for(slice_problem, problem.eta, settings, device).train_seconds
