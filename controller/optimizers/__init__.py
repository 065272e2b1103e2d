"""Allocation optimizers, chosen by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from collectors.errors import InputError
from controller.optimizers.base import Solution
from controller.optimizers.grid import GridSettings, solve_grid
from controller.optimizers.microopt import MicroOptSettings, solve_microopt
from controller.problem import Problem

SOLVERS: dict[str, tuple[Callable[..., Solution], type]] = {
    "microopt": (solve_microopt, MicroOptSettings),
    "grid": (solve_grid, GridSettings),
}


def solve(problem: Problem, method: str, settings: Any = None, device: torch.device | str = "cpu") -> Solution:
    """Solve ``problem`` with the optimizer named ``method`` (settings: its pydantic settings, or defaults)."""
    if method not in SOLVERS:
        raise InputError(f"unknown optimizer method {method!r}; choose one of {', '.join(SOLVERS)}")
    solver, settings_type = SOLVERS[method]
    return solver(problem, settings if settings is not None else settings_type(), device=device)
