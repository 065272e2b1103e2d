"""MicroOpt (Algorithm 1): primal-dual optimization of slice resources on the slice model.

The inner loop runs Adam on the surrogate Lagrangian, where the degradation indicator of eq. (1) is
replaced by a sigmoid of sharpness ``rho`` over reparameterized QoS samples q = mu + sigma * eps. The
outer loop updates the multipliers with the strict degradation (lambda) and the capacity excess (mu),
decays the allocation step, and stops when the gap between the best feasible cost (UB) and the
Lagrangian (LB) closes. Random starts and slices form one tensor program: allocations have shape
(starts, slices, resources), and each start carries its own multipliers.

A final boundary refinement sharpens the answer: the primal-dual iterates oscillate around the
boundary of the feasible set, so each start's best feasible allocation is bisected (a few points at
a time) towards its last iterate when that one is cheaper, with the exact degradation. Every answer
is the cheapest strictly feasible allocation evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field

from controller.optimizers.base import BestTracker, Solution
from controller.problem import Problem, ProblemTensors


class MicroOptSettings(BaseModel):
    """Hyper-parameters of Algorithm 1 (names follow the paper where it names them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    random_samples: int = Field(256, ge=1, description="random allocations evaluated to pick the starts")
    starts: int = Field(4, ge=1, description="gradient-descent starts run in parallel")
    outer_iterations: int = Field(12, ge=1, description="tau_1,max")
    inner_iterations: int = Field(5, ge=1, description="tau_2,max")
    min_outer_iterations: int = Field(6, ge=1, description="outer iterations before the gap test may stop")
    lr_allocation: float = Field(0.03, gt=0, description="alpha_1, initial Adam step on allocations scaled to [0, 1]")
    lr_decay: float = Field(0.7, gt=0, le=1, description="factor on alpha_1 after each outer iteration")
    lr_qos_multiplier: float = Field(2.0, gt=0, description="alpha_2, dual step of lambda")
    lr_capacity_multiplier: float = Field(2.0, gt=0, description="alpha_3, dual step of mu (excess relative to R)")
    initial_lambda: float = Field(1.0, ge=0, description="initial QoS multipliers")
    rho: float = Field(10.0, gt=0, description="sigmoid sharpness, per QoS unit (Mbps)")
    qos_samples: int = Field(16, ge=2, description="reparameterized QoS samples per traffic point")
    gap_tolerance: float = Field(1e-3, ge=0, description="epsilon_1: stop when (UB - LB) / UB is below")
    gradient_tolerance: float = Field(1e-5, ge=0, description="epsilon_2: end the inner loop when below")
    refine_rounds: int = Field(10, ge=0, description="boundary-refinement rounds (0: no refinement)")
    refine_steps: int = Field(2, ge=1, description="refinement-box points on each side of its centre, per resource")
    refine_radius: float = Field(0.03, gt=0, description="initial half-width of the refinement box, unit scale")
    refine_shrink: float = Field(0.5, gt=0, lt=1, description="box factor when a slice's best stays at the centre")
    seed: int = 0


@dataclass
class _Starts:
    """Per start: current allocation (unit scale), its best strictly feasible allocation and cost."""

    unit: torch.Tensor  # (P, S, K) in [0, 1], the optimization variable
    best_unit: torch.Tensor  # (P, S, K)
    best_cost: torch.Tensor  # (P,), inf while the start has no feasible allocation


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
    starts = _initialize(tensors, tracker, settings)
    iterations = _primal_dual(tensors, tracker, starts, settings)
    _refine_boundary(tensors, tracker, starts, settings)
    return tracker.solution("microopt", iterations)


@torch.no_grad()
def _initialize(tensors: ProblemTensors, tracker: BestTracker, settings: MicroOptSettings) -> _Starts:
    """Line 3: evaluate random allocations and keep, per slice, the cheapest feasible ones as starts."""
    generator = torch.Generator(device=tensors.lower.device).manual_seed(settings.seed)
    n_slices, n_resources = tensors.lower.shape
    unit = torch.rand(settings.random_samples, n_slices, n_resources, generator=generator,
                      device=tensors.lower.device)
    unit[0] = 1.0  # the full allocation: the recommended fallback start (Sec. VI-D)
    allocation = _allocation(tensors, unit)
    degradation = tensors.expected_degradation(allocation)
    tracker.update(allocation, degradation)
    slice_cost = allocation @ tensors.eta  # (N, S)
    violation = (degradation - tensors.beta_thresh).clamp(min=0)
    score = torch.where(violation > 0, 1e6 + violation, slice_cost)
    order = score.argsort(dim=0)[: min(settings.starts, unit.shape[0])]  # (P, S)
    chosen = unit.gather(0, order.unsqueeze(-1).expand(-1, -1, n_resources)).clone()
    starts = _Starts(unit=chosen, best_unit=chosen.clone(), best_cost=torch.full((chosen.shape[0],), torch.inf))
    allocation = _allocation(tensors, chosen)
    _record(tensors, starts, allocation, tensors.expected_degradation(allocation))
    return starts


def _allocation(tensors: ProblemTensors, unit: torch.Tensor) -> torch.Tensor:
    """Allocations in resource units from the unit-scaled variable."""
    return tensors.lower + unit * (tensors.upper - tensors.lower)


def _primal_dual(tensors: ProblemTensors, tracker: BestTracker, starts: _Starts,
                 settings: MicroOptSettings) -> int:
    """Lines 2-13: inner Adam descent on the surrogate Lagrangian, outer strict dual ascent; returns steps."""
    n_starts, n_slices, n_resources = starts.unit.shape
    unit = starts.unit.requires_grad_(True)
    adam = torch.optim.Adam([unit], lr=settings.lr_allocation)
    qos_multiplier = torch.full((n_starts, n_slices), settings.initial_lambda)
    capacity_multiplier = torch.zeros((n_starts, n_resources))
    eps = stratified_normal_samples(settings.qos_samples, unit.device)
    lower_bound = torch.full((n_starts,), -torch.inf)
    iterations = 0
    for outer in range(1, settings.outer_iterations + 1):
        for _ in range(settings.inner_iterations):
            iterations += 1
            surrogate = _surrogate_lagrangian(tensors, starts, qos_multiplier, capacity_multiplier, eps,
                                              settings.rho)
            adam.zero_grad(set_to_none=True)
            surrogate.sum().backward()
            adam.step()
            with torch.no_grad():
                unit.clamp_(0.0, 1.0)
            if unit.grad.abs().max().item() < settings.gradient_tolerance:
                break
        with torch.no_grad():
            allocation = _allocation(tensors, unit)
            degradation = tensors.expected_degradation(allocation)
            _record(tensors, starts, allocation, degradation)
            qos_gap = degradation - tensors.beta_thresh
            excess = tensors.capacity_excess(allocation)
            lagrangian = (tensors.cost(allocation) + (qos_multiplier * qos_gap).sum(-1)
                          + (capacity_multiplier * excess).sum(-1))
            lower_bound = torch.maximum(lower_bound, lagrangian)
            qos_multiplier = (qos_multiplier + settings.lr_qos_multiplier * qos_gap).clamp(min=0.0)
            if tensors.capacity is not None:
                capacity_multiplier = (capacity_multiplier
                                       + settings.lr_capacity_multiplier * excess / tensors.capacity).clamp(min=0.0)
            for group in adam.param_groups:
                group["lr"] *= settings.lr_decay
        if outer >= settings.min_outer_iterations and _gap_closed(starts.best_cost, lower_bound,
                                                                 settings.gap_tolerance):
            break
    unit.requires_grad_(False)
    tracker.update(_allocation(tensors, starts.best_unit), tensors.expected_degradation(
        _allocation(tensors, starts.best_unit)))
    return iterations


def _surrogate_lagrangian(tensors: ProblemTensors, starts: _Starts, qos_multiplier: torch.Tensor,
                          capacity_multiplier: torch.Tensor, eps: torch.Tensor, rho: float) -> torch.Tensor:
    """Surrogate Lagrangian per start (P,); also records feasible iterates with the exact degradation."""
    allocation = _allocation(tensors, starts.unit)
    mean, std = tensors.qos_distribution(allocation)
    with torch.no_grad():
        _record(tensors, starts, allocation, tensors.degradation_from(mean, std))
    samples = mean.unsqueeze(-1) + std.unsqueeze(-1) * eps
    below = torch.sigmoid(rho * (tensors.q_thresh[:, None, None] - samples)).mean(-1)
    surrogate = (below * tensors.weights).sum(-1)
    return (tensors.cost(allocation) + (qos_multiplier * (surrogate - tensors.beta_thresh)).sum(-1)
            + (capacity_multiplier * tensors.capacity_excess(allocation)).sum(-1))


@torch.no_grad()
def _record(tensors: ProblemTensors, starts: _Starts, allocation: torch.Tensor, degradation: torch.Tensor) -> None:
    """Keep each start's cheapest strictly feasible allocation (no host synchronization)."""
    cost = torch.where(tensors.feasible(degradation, allocation), tensors.cost(allocation), torch.inf)
    better = cost < starts.best_cost
    starts.best_cost = torch.where(better, cost, starts.best_cost)
    starts.best_unit = torch.where(better[:, None, None], starts.unit.detach(), starts.best_unit)


def _gap_closed(upper: torch.Tensor, lower: torch.Tensor, tolerance: float) -> bool:
    """True when some start's best feasible cost UB and its Lagrangian LB agree within ``tolerance``."""
    closed = (upper - lower).clamp(min=0) <= tolerance * upper
    return bool((closed & upper.isfinite()).any())


@torch.no_grad()
def _refine_boundary(tensors: ProblemTensors, tracker: BestTracker, starts: _Starts,
                     settings: MicroOptSettings) -> None:
    """Polish each start's best feasible allocation with a shrinking-box pattern search.

    Each round evaluates, per start and slice, a box of (2 ``refine_steps`` + 1)^2 evenly spaced
    allocations around the current one with the exact degradation and moves every slice to its
    cheapest feasible point; a slice whose best stays at the centre halves its box. Without shared
    capacities slices are independent, so each picks on its own; with capacities only moves that use
    no more of either resource are tried, so the capacities stay met.
    """
    found = starts.best_cost.isfinite()
    if not bool(found.any()):
        return
    best = starts.best_unit[found]  # (P, S, K)
    offsets = _lattice(settings.refine_steps, only_decreasing=tensors.capacity is not None)  # (G, K)
    center = int((offsets == 0).all(-1).nonzero()[0])
    radius = torch.full(best.shape[:-1], settings.refine_radius)  # (P, S)
    for _ in range(settings.refine_rounds):
        unit = (best + radius[..., None] * offsets[:, None, None, :]).clamp(0.0, 1.0)  # (G, P, S, K)
        allocation = _allocation(tensors, unit)
        meets = tensors.expected_degradation(allocation) <= tensors.beta_thresh
        slice_cost = torch.where(meets, allocation @ tensors.eta, torch.inf)
        slice_cost[center] = slice_cost[center].nan_to_num(posinf=1e9)  # the centre was feasible
        choice = slice_cost.argmin(0)  # (P, S)
        best = unit.gather(0, choice[None, ..., None].expand(1, -1, -1, unit.shape[-1]))[0]
        radius = torch.where(choice == center, radius * settings.refine_shrink, radius)
    allocation = _allocation(tensors, best)
    tracker.update(allocation, tensors.expected_degradation(allocation))


def _lattice(steps: int, only_decreasing: bool) -> torch.Tensor:
    """Offsets of a (2 steps + 1)^2 lattice on [-1, 1]^2 with a point at 0, (G, 2); optionally only <= 0."""
    axis = torch.linspace(-1.0, 1.0, 2 * steps + 1)
    offsets = torch.cartesian_prod(axis, axis)
    return offsets[(offsets <= 0).all(-1)] if only_decreasing else offsets


__all__ = ["MicroOptSettings", "Solution", "solve_microopt"]
