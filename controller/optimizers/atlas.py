"""Atlas and Atlas+ (MicroOpt Sec. VI-A2, after Liu et al., ref. [7]): Bayesian optimization of a slice's
allocation with a Bayesian neural network of its QoS-degradation function.

Per slice: the BNN is pre-trained on degradations queried from the slice model (standing in for the
simulator) at random allocations; then each BO iteration draws one function from the BNN posterior
(Thompson sampling), queries the allocation minimizing the Lagrangian relaxation
eta^T r + lambda (beta(r) - beta_thresh) over random and incumbent-local candidates, adds the answer to
the BNN's data, and updates lambda by dual ascent with the queried degradation. The answer is the
cheapest queried allocation that met the constraint.

Atlas assumes constant traffic at the peak of the slice's traffic distribution (the original method
needs a simulator pre-training per traffic value); Atlas+ queries the degradation of eq. (1) under the
distribution itself. Either way the answer is judged on the actual problem. Slices are solved one by
one: shared capacities are not traded off (the answer is flagged infeasible when they overflow).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from controller.optimizers.base import BestTracker, Solution, finalize
from controller.optimizers.bnn import BayesianMLP
from controller.problem import Problem, ProblemTensors
from controller.traffic import constant
from core.validation import StrictModel


class AtlasSettings(StrictModel):
    """Budgets and hyper-parameters of Atlas's BNN and its Bayesian optimization."""

    traffic: Literal["peak", "distribution"] = Field("peak", description="peak: Atlas; distribution: Atlas+")
    pretrain_samples: int = Field(256, ge=2, description="slice-model queries at random allocations before BO")
    pretrain_epochs: int = Field(300, ge=1, description="BNN training steps on the pre-training queries")
    iterations: int = Field(40, ge=0, description="BO queries (Thompson samples)")
    candidates: int = Field(1024, ge=1, description="allocations scored by each Thompson sample")
    local_fraction: float = Field(0.5, ge=0, le=1, description="share of candidates drawn around the incumbent")
    local_radius: float = Field(0.05, gt=0, description="std of the incumbent-local candidates, unit scale")
    finetune_epochs: int = Field(30, ge=0, description="BNN training steps after each query")
    hidden: int = Field(32, ge=1)
    layers: int = Field(2, ge=1)
    prior_std: float = Field(1.0, gt=0, description="std of the BNN's Gaussian weight prior")
    lr: float = Field(0.01, gt=0, description="Adam step of the BNN")
    initial_lambda: float = Field(5.0, ge=0, description="initial Lagrange multiplier of the QoS constraint")
    lr_multiplier: float = Field(10.0, gt=0, description="dual-ascent step of lambda")
    seed: int = 0


def solve_atlas(problem: Problem, settings: AtlasSettings | None = None,
                device: torch.device | str = "cpu") -> Solution:
    """Atlas (``traffic='peak'``) or Atlas+ (``traffic='distribution'``) on each slice of ``problem``."""
    settings = settings or AtlasSettings()
    started = time.perf_counter()
    method = "atlas" if settings.traffic == "peak" else "atlas+"
    allocation = np.zeros((len(problem.slices), 2))
    history: tuple[tuple[float, float], ...] = ()
    for index, slice_problem in enumerate(problem.slices):
        if settings.traffic == "peak":
            slice_problem = replace(slice_problem, traffic=constant(float(slice_problem.traffic.support.max())))
        single = Problem((slice_problem,), eta=problem.eta)
        answer = _optimize_slice(single, settings, device, settings.seed + index)
        allocation[index] = answer.allocation[0]
        history = answer.history
    iterations = len(problem.slices) * (settings.pretrain_samples + settings.iterations)
    return finalize(problem, allocation, method, started, iterations, history if len(problem.slices) == 1 else ())


def _optimize_slice(single: Problem, settings: AtlasSettings, device: torch.device | str, seed: int) -> Solution:
    """BO with Thompson sampling and Lagrangian relaxation on a one-slice problem."""
    tensors = ProblemTensors.build(single, device)
    tracker = BestTracker(tensors, single)
    generator = torch.Generator().manual_seed(seed)
    lower, upper = tensors.lower[0].cpu(), tensors.upper[0].cpu()
    eta, beta = tensors.eta.cpu(), float(tensors.beta_thresh[0])

    def query(unit: torch.Tensor) -> torch.Tensor:
        """The slice model's degradation at unit-scaled allocations (N, 2) (the 'simulator' of Atlas)."""
        allocation = (lower + unit * (upper - lower)).to(device)[:, None, :]
        degradation = tensors.expected_degradation(allocation)
        tracker.update(allocation, degradation)
        return degradation[:, 0].cpu()

    with torch.no_grad():
        seen = torch.rand(settings.pretrain_samples, 2, generator=generator)
        seen[0] = 1.0  # the full allocation, feasible whenever anything is
        observed = query(seen)
    bnn = BayesianMLP(2, settings.hidden, settings.layers, settings.prior_std, generator)
    bnn.fit(seen * 2 - 1, observed, settings.pretrain_epochs, settings.lr)
    multiplier = settings.initial_lambda
    for _ in range(settings.iterations):
        candidates = _candidates(tracker, lower, upper, settings, generator)
        draw = bnn.thompson_draw(candidates * 2 - 1)
        acquisition = (lower + candidates * (upper - lower)) @ eta + multiplier * (draw - beta)
        chosen = candidates[int(acquisition.argmin())][None]
        with torch.no_grad():
            degradation = query(chosen)
        seen, observed = torch.cat((seen, chosen)), torch.cat((observed, degradation))
        if settings.finetune_epochs:
            bnn.fit(seen * 2 - 1, observed, settings.finetune_epochs, settings.lr)
        multiplier = max(0.0, multiplier + settings.lr_multiplier * (float(degradation[0]) - beta))
    return tracker.solution("atlas", settings.iterations)


def _candidates(tracker: BestTracker, lower: torch.Tensor, upper: torch.Tensor, settings: AtlasSettings,
                generator: torch.Generator) -> torch.Tensor:
    """Unit-scaled candidates (C, 2): uniform ones, and Gaussian ones around the incumbent when there is one."""
    local = int(settings.candidates * settings.local_fraction) if tracker.best is not None else 0
    uniform = torch.rand(settings.candidates - local, 2, generator=generator)
    if not local:
        return uniform
    incumbent = (tracker.best[0][0].cpu() - lower) / (upper - lower)
    around = incumbent + settings.local_radius * torch.randn(local, 2, generator=generator)
    return torch.cat((uniform, around.clamp(0.0, 1.0)))
