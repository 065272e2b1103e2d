"""Solve every case of the reproduction with every method, on one slice model, one case at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from analysis.slice_model import SliceModel
from controller.optimizers import default_settings, solve
from controller.optimizers.cadrl import policy_for
from controller.problem import DEFAULT_ETA, Problem, SliceProblem
from controller.reproduce.cases import Case, ReproduceConfig, build_cases

CONVERGENCE_METHODS = ("microopt", "atlas+")
"""Methods whose best-so-far cost over wall time is kept for Fig. 10 (on the dynamic cases)."""


@dataclass
class ReproductionResult:
    """Everything measured in one run."""

    results: pd.DataFrame  # one row per case and method
    policies: pd.DataFrame  # CaDRL's per-SLA policies and their training seconds
    convergence: pd.DataFrame  # (case, method, seconds, normalized) each time the best improved
    seconds: float  # wall time of the whole run


def run_reproduction(model: SliceModel, config: ReproduceConfig, device: torch.device | str = "cpu",
                     advance: Callable[[str], None] | None = None) -> ReproductionResult:
    """Solve ``build_cases(config)`` with their methods; ``advance(description)`` is called after each solve."""
    started = time.perf_counter()
    cases = build_cases(config)
    settings = {method: default_settings(method, **config.settings.get(method, {}))
                for method in {method for case in cases for method in case.methods}}
    solve(problem_of(model, cases[0]), "microopt", settings["microopt"], device)  # warm-up, not measured
    rows, policies, convergence = [], [], []
    for index, case in enumerate(cases):
        problem = problem_of(model, case)
        for method in case.methods:
            if method == "cadrl":
                trained = _train_cadrl_once(problem, settings[method], device, policies)
                if trained is not None:
                    policies.append({"q_thresh": case.q_thresh, "beta_thresh": case.beta_thresh,
                                     "train_seconds": trained})
            solution = solve(problem, method, settings[method], device)
            degradation = float(solution.expected_degradation[0])
            rows.append({
                "case": index, "experiment": case.experiment, "traffic": case.label, "users": case.users,
                "traffic_std": case.traffic_std, "q_thresh": case.q_thresh, "beta_thresh": case.beta_thresh,
                "method": method, "cpu_millicores": float(solution.allocation[0, 0]),
                "bandwidth_mbps": float(solution.allocation[0, 1]), "normalized": solution.normalized,
                "expected_degradation": degradation, "meets_beta": degradation <= case.beta_thresh,
                "feasible": solution.feasible, "seconds": solution.seconds,
            })
            if case.experiment == "dynamic" and method in CONVERGENCE_METHODS:
                convergence += [{"case": index, "method": method, "seconds": seconds, "normalized": cost}
                                for seconds, cost in solution.history]
            if advance is not None:
                advance(f"{case.experiment} {case.label} q={case.q_thresh:g} beta={case.beta_thresh:g} {method}")
    return ReproductionResult(
        results=pd.DataFrame(rows),
        policies=pd.DataFrame(policies, columns=["q_thresh", "beta_thresh", "train_seconds"]),
        convergence=pd.DataFrame(convergence, columns=["case", "method", "seconds", "normalized"]),
        seconds=time.perf_counter() - started,
    )


def problem_of(model: SliceModel, case: Case) -> Problem:
    """The one-slice problem of ``case`` with MicroOpt's default bounds and eta."""
    return Problem((SliceProblem("embb", model, case.traffic, case.q_thresh, case.beta_thresh),), eta=DEFAULT_ETA)


def _train_cadrl_once(problem: Problem, settings: object, device: torch.device | str,
                      policies: list[dict[str, float]]) -> float | None:
    """Train CaDRL's policy for this SLA unless done already; its training seconds, or None if cached."""
    slice_problem = problem.slices[0]
    if any(row["q_thresh"] == slice_problem.q_thresh and row["beta_thresh"] == slice_problem.beta_thresh
           for row in policies):
        return None
    return policy_for(slice_problem, problem.eta, settings, device).train_seconds
