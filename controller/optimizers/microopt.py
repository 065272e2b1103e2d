"""MicroOpt (Algorithm 1): primal-dual optimization of slice resources on the slice model.

The inner loop runs Adam on the surrogate Lagrangian, where the degradation indicator of eq. (1) is
replaced by a sigmoid of sharpness ``rho`` over reparameterized QoS samples q = mu + sigma * eps. The
outer loop updates the multipliers with the strict degradation (lambda) and the capacity excess (mu)
and stops when the gap between the best feasible cost (UB) and the Lagrangian (LB) closes. Random
starts and slices form one tensor program: allocations have shape (starts, slices, resources), and
each start carries its own multipliers.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from controller.optimizers.base import BestTracker, Solution
from controller.problem import Problem, ProblemTensors


class MicroOptSettings(BaseModel):
    """Hyper-parameters of Algorithm 1 (names follow the paper where it names them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    random_samples: int = Field(256, ge=1, description="random allocations evaluated to pick the starts")
    starts: int = Field(8, ge=1, description="gradient-descent starts run in parallel")
    outer_iterations: int = Field(30, ge=1, description="tau_1,max")
    inner_iterations: int = Field(8, ge=1, description="tau_2,max")
    min_outer_iterations: int = Field(4, ge=1, description="outer iterations before the gap test may stop")
    lr_allocation: float = Field(0.02, gt=0, description="alpha_1, Adam step on allocations scaled to [0, 1]")
    lr_qos_multiplier: float = Field(2.0, gt=0, description="alpha_2, dual step of lambda")
    lr_capacity_multiplier: float = Field(2.0, gt=0, description="alpha_3, dual step of mu")
    initial_lambda: float = Field(1.0, ge=0, description="initial QoS multipliers")
    rho: float = Field(10.0, gt=0, description="sigmoid sharpness, per QoS unit (Mbps)")
    qos_samples: int = Field(32, ge=2, description="reparameterized QoS samples per traffic point")
    gap_tolerance: float = Field(1e-3, ge=0, description="epsilon_1: stop when (UB - LB) / UB is below")
    gradient_tolerance: float = Field(1e-5, ge=0, description="epsilon_2: end the inner loop when below")
    seed: int = 0


def stratified_normal_samples(count: int, device: torch.device | str) -> torch.Tensor:
    """``count`` standard-normal quantiles at evenly spaced probabilities: low-variance eps for eq. (5)."""
    levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    return torch.special.ndtri(levels).to(device=device, dtype=torch.float32)


def solve_microopt(problem: Problem, settings: MicroOptSettings | None = None,
                   device: torch.device | str = "cpu") -> Solution:
    """Solve ``problem`` with Algorithm 1; returns the best strictly feasible allocation found."""
    settings = settings or MicroOptSettings()
    tensors = ProblemTensors.build(problem, device)
    tracker = BestTracker(tensors)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    lower, span = tensors.lower, tensors.upper - tensors.lower
    n_slices, n_resources = lower.shape

    with torch.no_grad():
        unit = torch.rand(settings.random_samples, n_slices, n_resources, generator=generator, device=device)
        unit[0] = 1.0  # the full allocation: the recommended fallback start (Sec. VI-D)
        allocation = lower + unit * span
        degradation = tensors.expected_degradation(allocation)
        tracker.update(allocation, degradation)
        unit = _pick_starts(unit, allocation, degradation, tensors, settings.starts)

    unit.requires_grad_(True)
    adam = torch.optim.Adam([unit], lr=settings.lr_allocation)
    n_starts = unit.shape[0]
    qos_multiplier = torch.full((n_starts, n_slices), settings.initial_lambda, device=device)
    capacity_multiplier = torch.zeros((n_starts, n_resources), device=device)
    eps = stratified_normal_samples(settings.qos_samples, device)
    lower_bound = torch.full((n_starts,), -torch.inf, device=device)
    iterations = 0
    for outer in range(1, settings.outer_iterations + 1):
        for _ in range(settings.inner_iterations):
            iterations += 1
            allocation = lower + unit * span
            mean, std = tensors.qos_distribution(allocation)
            with torch.no_grad():
                tracker.update(allocation, tensors.degradation_from(mean, std))
            samples = mean.unsqueeze(-1) + std.unsqueeze(-1) * eps
            below = torch.sigmoid(settings.rho * (tensors.q_thresh[:, None, None] - samples)).mean(-1)
            surrogate = (below * tensors.weights).sum(-1)
            lagrangian = (
                tensors.cost(allocation)
                + (qos_multiplier * (surrogate - tensors.beta_thresh)).sum(-1)
                + (capacity_multiplier * tensors.capacity_excess(allocation)).sum(-1)
            )
            adam.zero_grad(set_to_none=True)
            lagrangian.sum().backward()
            adam.step()
            with torch.no_grad():
                unit.clamp_(0.0, 1.0)
            if unit.grad is not None and unit.grad.abs().max().item() < settings.gradient_tolerance:
                break
        with torch.no_grad():
            allocation = lower + unit * span
            degradation = tensors.expected_degradation(allocation)
            tracker.update(allocation, degradation)
            excess = tensors.capacity_excess(allocation)
            qos_multiplier = (qos_multiplier + settings.lr_qos_multiplier * (degradation - tensors.beta_thresh))
            qos_multiplier.clamp_(min=0.0)
            if tensors.capacity is not None:
                capacity_multiplier = capacity_multiplier + settings.lr_capacity_multiplier * excess / tensors.capacity
                capacity_multiplier.clamp_(min=0.0)
            strict_lagrangian = (
                tensors.cost(allocation)
                + (qos_multiplier * (degradation - tensors.beta_thresh)).sum(-1)
                + (capacity_multiplier * excess).sum(-1)
            )
            lower_bound = torch.maximum(lower_bound, strict_lagrangian)
        if outer >= settings.min_outer_iterations and _gap_closed(tracker, lower_bound, settings.gap_tolerance):
            break
    return tracker.solution("microopt", iterations)


def _pick_starts(unit: torch.Tensor, allocation: torch.Tensor, degradation: torch.Tensor,
                 tensors: ProblemTensors, starts: int) -> torch.Tensor:
    """Per slice, the cheapest feasible random samples first, then the least violating ones."""
    slice_cost = (allocation * tensors.eta).sum(-1)  # (N, S)
    violation = (degradation - tensors.beta_thresh).clamp(min=0)
    score = torch.where(violation > 0, 1e6 + violation, slice_cost)
    order = score.argsort(dim=0)[: min(starts, unit.shape[0])]  # (starts, S)
    return unit.gather(0, order.unsqueeze(-1).expand(-1, -1, unit.shape[-1])).clone()


def _gap_closed(tracker: BestTracker, lower_bound: torch.Tensor, tolerance: float) -> bool:
    """True when the best feasible cost UB and the best Lagrangian LB agree within ``tolerance``."""
    upper = tracker.best_cost
    if upper == float("inf"):
        return False
    candidates = lower_bound[lower_bound <= upper]
    if candidates.numel() == 0:
        return False
    return (upper - candidates.max().item()) / upper <= tolerance


__all__ = ["MicroOptSettings", "Solution", "solve_microopt"]
