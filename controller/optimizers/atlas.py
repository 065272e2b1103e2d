"""Atlas and Atlas+ (MicroOpt Sec. VI-A2, after Liu et al., ref. [7]): Bayesian optimization of a slice's
allocation with a Bayesian neural network of its QoS-degradation function.

Per slice: the BNN is pre-trained on degradations queried from the slice model (standing in for the
simulator) at random allocations; then each BO iteration draws ``batch`` functions from the BNN posterior
(batch Thompson sampling), queries for each the allocation minimizing the Lagrangian relaxation
eta^T r + lambda (beta(r) - beta_thresh) over random and incumbent-local candidates, adds the answers to
the BNN's data, and updates lambda by dual ascent with the queried degradations. The cheapest queried
allocation that met the constraint is then polished like MicroOpt's answer (MicroOpt's pattern search).

For a fair comparison Atlas gets an exact-query budget (``queries``: pre-training, BO and polish
together), which the reproduction sets to MicroOpt's count on the same case, and its BNN is fitted with
the KL term scaled by the dataset size (``controller.optimizers.bnn``).

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
from pydantic import Field, model_validator

from controller.optimizer_settings import MicroOptSettings
from controller.optimizers.base import BestTracker, Solution, finalize
from controller.optimizers.bnn import BayesianMLP
from controller.optimizers.polish import allocation_of, pattern_search
from controller.problem import Problem, ProblemTensors
from controller.traffic import constant
from core.validation import StrictModel

POLISH = MicroOptSettings()
"""The pattern search that polishes Atlas's answer: MicroOpt's refinement, with its default settings."""
POLISH_QUERIES = POLISH.refine_rounds * (2 * POLISH.refine_steps + 1) ** 2 + 1
"""Exact queries the polish makes per slice: its boxes, then the polished answer."""


class AtlasSettings(StrictModel):
    """Budgets and hyper-parameters of Atlas's BNN and its Bayesian optimization."""

    traffic: Literal["peak", "distribution"] = Field("peak", description="peak: Atlas; distribution: Atlas+")
    queries: int = Field(1550, ge=1, description="exact slice-model queries per slice in all: pre-training, "
                         "BO and the polish (the reproduction gives Atlas MicroOpt's count on each case)")
    pretrain_samples: int = Field(256, ge=2, description="slice-model queries at random allocations before BO")
    pretrain_epochs: int = Field(300, ge=1, description="BNN training steps on the pre-training queries")
    batch: int = Field(32, ge=1, description="Thompson draws per BO iteration, one query each (batch Thompson "
                       "sampling)")
    candidates: int = Field(1024, ge=1, description="allocations scored by each Thompson draw")
    local_fraction: float = Field(0.5, ge=0, le=1, description="share of candidates drawn around the incumbent")
    local_radius: float = Field(0.05, gt=0, description="std of the incumbent-local candidates, unit scale")
    finetune_epochs: int = Field(30, ge=0, description="BNN training steps after each BO iteration")
    hidden: int = Field(32, ge=1)
    layers: int = Field(2, ge=1)
    prior_std: float = Field(1.0, gt=0, description="std of the BNN's Gaussian weight prior")
    slots: int = Field(60, ge=1, description="Bernoulli outcomes (interval slots) each observed degradation "
                       "stands for; the BNN's KL term is scaled by observations x slots")
    lr: float = Field(0.01, gt=0, description="Adam step of the BNN")
    initial_lambda: float = Field(5.0, ge=0, description="initial Lagrange multiplier of the QoS constraint")
    lr_multiplier: float = Field(10.0, gt=0, description="dual-ascent step of lambda")
    polish: bool = Field(True, description="polish the best queried allocation with MicroOpt's pattern search")
    seed: int = 0

    @model_validator(mode="after")
    def _budget_covers_fixed_costs(self) -> AtlasSettings:
        fixed = self.pretrain_samples + (POLISH_QUERIES if self.polish else 0)
        if self.queries < fixed:
            raise ValueError(f"queries ({self.queries}) must cover the pre-training samples and the polish ({fixed})")
        return self


def solve_atlas(problem: Problem, settings: AtlasSettings | None = None,
                device: torch.device | str = "cpu") -> Solution:
    """Atlas (``traffic='peak'``) or Atlas+ (``traffic='distribution'``) on each slice of ``problem``."""
    settings = settings or AtlasSettings()
    started = time.perf_counter()
    method = "atlas" if settings.traffic == "peak" else "atlas+"
    allocation = np.zeros((len(problem.slices), 2))
    history: tuple[tuple[float, float], ...] = ()
    queries = iterations = 0
    for index, slice_problem in enumerate(problem.slices):
        if settings.traffic == "peak":
            slice_problem = replace(slice_problem, traffic=constant(float(slice_problem.traffic.support.max())))
        single = Problem((slice_problem,), eta=problem.eta)
        answer = _optimize_slice(single, settings, device, settings.seed + index)
        allocation[index] = answer.allocation[0]
        history, queries, iterations = answer.history, queries + answer.queries, iterations + answer.iterations
    return finalize(problem, allocation, method, started, iterations, history if len(problem.slices) == 1 else (),
                    queries)


def _optimize_slice(single: Problem, settings: AtlasSettings, device: torch.device | str, seed: int) -> Solution:
    """BO with batch Thompson sampling and Lagrangian relaxation on a one-slice problem, then the polish."""
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
    bnn.fit(seen * 2 - 1, observed, settings.pretrain_epochs, settings.lr, settings.slots)
    multiplier = settings.initial_lambda
    remaining = settings.queries - settings.pretrain_samples - (POLISH_QUERIES if settings.polish else 0)
    iterations = 0
    while remaining > 0:
        draws = min(settings.batch, remaining)
        candidates = _candidates(tracker, lower, upper, settings, generator)
        functions = bnn.thompson_draws(candidates * 2 - 1, draws)  # (draws, C)
        acquisition = (lower + candidates * (upper - lower)) @ eta + multiplier * (functions - beta)
        chosen = candidates[acquisition.argmin(1)]
        with torch.no_grad():
            degradation = query(chosen)
        seen, observed = torch.cat((seen, chosen)), torch.cat((observed, degradation))
        if settings.finetune_epochs:
            bnn.fit(seen * 2 - 1, observed, settings.finetune_epochs, settings.lr, settings.slots)
        multiplier = max(0.0, multiplier + settings.lr_multiplier * (float(degradation.mean()) - beta))
        remaining -= draws
        iterations += 1
    if settings.polish and tracker.best is not None:
        with torch.no_grad():
            start = ((tracker.best - tensors.lower) / (tensors.upper - tensors.lower))[None]
            polished = allocation_of(tensors, pattern_search(tensors, start, tensors.eta, POLISH))
            tracker.update(polished, tensors.expected_degradation(polished))
    return tracker.solution("atlas", iterations, tensors.queries)


def _candidates(tracker: BestTracker, lower: torch.Tensor, upper: torch.Tensor, settings: AtlasSettings,
                generator: torch.Generator) -> torch.Tensor:
    """Unit-scaled candidates (C, 2): uniform ones, and Gaussian ones around the incumbent when there is one."""
    local = int(settings.candidates * settings.local_fraction) if tracker.best is not None else 0
    uniform = torch.rand(settings.candidates - local, 2, generator=generator)
    if tracker.best is None or not local:
        return uniform
    incumbent = (tracker.best[0].cpu() - lower) / (upper - lower)
    around = incumbent + settings.local_radius * torch.randn(local, 2, generator=generator)
    return torch.cat((uniform, around.clamp(0.0, 1.0)))
