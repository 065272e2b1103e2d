"""Peak-alloc (MicroOpt Sec. VI-A2): a static allocation for the peak traffic and a strict QoS.

The operator provisions every slice once for ``peak_users`` users/s with q_thresh ``q_thresh`` and
beta_thresh ``beta_thresh`` (the paper: 5 users/s, 5 Mbps, 0.01), found by the exhaustive grid search,
whatever the interval's actual traffic and SLA. The answer is then judged on the actual problem.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
from pydantic import Field

from controller.optimizer_settings import GridSettings
from controller.optimizers.base import Solution, finalize
from controller.optimizers.grid import solve_grid
from controller.problem import Problem
from controller.traffic import constant
from core.validation import StrictModel


class PeakSettings(StrictModel):
    """The static provisioning target of Peak-alloc and the grid it is searched on."""

    peak_users: float | None = Field(5.0, gt=0, description="users/s provisioned for; None: the traffic's peak")
    q_thresh: float = Field(5.0, gt=0, description="QoS threshold provisioned for, Mbps per user")
    beta_thresh: float = Field(0.01, gt=0, lt=1, description="degradation threshold provisioned for")
    grid: GridSettings = GridSettings()


def peak_problem(problem: Problem, settings: PeakSettings) -> Problem:
    """The problem Peak-alloc solves: each slice at its peak traffic with the strict SLA."""
    return replace(problem, slices=tuple(
        replace(slice_problem,
                traffic=constant(settings.peak_users or float(slice_problem.traffic.support.max())),
                q_thresh=settings.q_thresh, beta_thresh=settings.beta_thresh)
        for slice_problem in problem.slices))


def solve_peak(problem: Problem, settings: PeakSettings | None = None, device: torch.device | str = "cpu") -> Solution:
    """Peak-alloc's allocation, with its degradation and feasibility on ``problem``."""
    settings = settings or PeakSettings()
    started = time.perf_counter()
    static = solve_grid(peak_problem(problem, settings), settings.grid, device)
    return finalize(problem, static.allocation, "peak", started, static.iterations, queries=static.queries)
