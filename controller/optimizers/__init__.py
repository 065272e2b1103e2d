"""Allocation optimizers, chosen by name: MicroOpt, its ablations, and the paper's baselines."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from pydantic import BaseModel

from controller.optimizer_settings import GridSettings
from controller.optimizers.atlas import AtlasSettings, solve_atlas
from controller.optimizers.base import Solution
from controller.optimizers.cadrl import CaDRLSettings, solve_cadrl
from controller.optimizers.exact import ExactSettings, solve_exact
from controller.optimizers.grid import solve_grid
from controller.optimizers.microopt import MicroOptSettings, solve_microopt
from controller.optimizers.peak import PeakSettings, solve_peak
from controller.problem import Problem
from core.errors import InputError

SOLVERS: dict[str, tuple[Callable[..., Solution], Callable[[], BaseModel]]] = {
    "exact": (solve_exact, ExactSettings),
    "microopt": (solve_microopt, MicroOptSettings),
    "microopt-alg1": (solve_microopt, partial(MicroOptSettings, refine_rounds=0)),
    "microopt-0sigma": (solve_microopt, partial(MicroOptSettings, sigma_multiplier=0.0)),
    "microopt-2sigma": (solve_microopt, partial(MicroOptSettings, sigma_multiplier=2.0)),
    "grid": (solve_grid, GridSettings),
    "peak": (solve_peak, PeakSettings),
    "atlas": (solve_atlas, AtlasSettings),
    "atlas+": (solve_atlas, partial(AtlasSettings, traffic="distribution")),
    "cadrl": (solve_cadrl, CaDRLSettings),
    "cadrl+": (solve_cadrl, partial(CaDRLSettings, traffic="predicted")),
}
"""Method name -> (solver, factory of its default settings). ``microopt-alg1`` is Algorithm 1 as published,
``microopt`` Algorithm 1 plus this project's refinement (``controller.optimizers.microopt``)."""


def default_settings(method: str, **overrides: Any) -> BaseModel:
    """The settings of ``method`` with its defaults, some fields overridden (e.g. a smaller budget)."""
    if method not in SOLVERS:
        raise InputError(f"unknown optimizer method {method!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[method][1](**overrides)


def solve(problem: Problem, method: str, settings: Any = None, device: torch.device | str = "cpu") -> Solution:
    """Solve ``problem`` with the optimizer named ``method`` (settings: its pydantic settings, or defaults)."""
    if method not in SOLVERS:
        raise InputError(f"unknown optimizer method {method!r}; choose one of {', '.join(SOLVERS)}")
    solver, _ = SOLVERS[method]
    solution = solver(problem, settings if settings is not None else default_settings(method), device=device)
    solution.method = method
    return solution
