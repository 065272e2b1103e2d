"""MicroOpt (Algorithm 1): primal-dual optimization of slice resources on the slice model.

The inner loop runs Adam on the surrogate Lagrangian, where the degradation indicator of eq. (1) is
replaced by a sigmoid of sharpness ``rho`` over reparameterized QoS samples q = mu + sigma * eps. The
outer loop updates the multipliers with the strict degradation (lambda) and the capacity excess (mu),
decays the allocation step, and stops when the gap between the best feasible cost (UB) and the
Lagrangian (LB) closes. Random starts and slices form one tensor program: allocations have shape
(starts, slices, resources), and each start carries its own multipliers.

Two variants run this: ``microopt-alg1`` is Algorithm 1 as published (``refine_rounds`` 0), and
``microopt`` adds a refinement the paper does not have: the primal-dual iterates oscillate around the
boundary of the feasible set, so each slice's cheapest allocation meeting its QoS is polished by a
shrinking-box pattern search with the exact degradation, and when shared capacities bind each over-used
resource is priced on its own until the slices fit (see :func:`_refine`). Every answer is the cheapest
allocation evaluated that is strictly feasible in float64.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import torch

from controller.optimizer_settings import MicroOptSettings
from controller.optimizers.base import BestTracker, Solution
from controller.optimizers.polish import allocation_of, pattern_search
from controller.optimizers.scalar_qos import scalar_tensors
from controller.problem import CAPACITY_RTOL, Problem, ProblemTensors


@dataclass
class _Starts:
    """Per start: current allocation (unit scale), its best strictly feasible allocation and cost."""

    unit: torch.Tensor  # (P, S, K) in [0, 1], the optimization variable
    best_unit: torch.Tensor  # (P, S, K)
    best_cost: torch.Tensor  # (P,), inf while the start has no feasible allocation
    slice_unit: torch.Tensor  # (P, S, K) per slice, its cheapest allocation meeting its own QoS
    slice_cost: torch.Tensor  # (P, S), inf while the slice has none
    samples: torch.Tensor  # (N, S, K) the random allocations of line 3
    sample_meets: torch.Tensor  # (N, S) whether each sample meets its slice's QoS


def stratified_normal_samples(count: int, device: torch.device | str) -> torch.Tensor:
    """``count`` standard-normal quantiles at evenly spaced probabilities: low-variance eps for eq. (5)."""
    levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    quantiles: torch.Tensor = torch.special.ndtri(levels)
    return quantiles.to(device=device, dtype=torch.float32)


def solve_microopt(problem: Problem, settings: MicroOptSettings | None = None,
                   device: torch.device | str = "cpu") -> Solution:
    """Solve ``problem`` with Algorithm 1; returns the best strictly feasible allocation found."""
    settings = settings or MicroOptSettings()
    started = time.perf_counter()
    tensors = ProblemTensors.build(problem, device)
    view = None
    if settings.sigma_multiplier is not None:  # the ablation: a scalar QoS; its answer is judged on the real one
        sigmas = settings.sigma_multiplier
        view = partial(scalar_tensors, sigmas=sigmas)
        tensors = view(tensors)
    tracker = BestTracker(tensors, problem, view)
    tracker.started = started
    starts = _initialize(tensors, tracker, settings)
    iterations = _primal_dual(tensors, tracker, starts, settings)
    _refine(tensors, tracker, starts, settings)
    return tracker.solution("microopt", iterations, tensors.queries)


@torch.no_grad()
def _initialize(tensors: ProblemTensors, tracker: BestTracker, settings: MicroOptSettings) -> _Starts:
    """Line 3: evaluate random allocations and keep, per slice, the cheapest feasible ones as starts."""
    generator = torch.Generator(device=tensors.lower.device).manual_seed(settings.seed)
    n_slices, n_resources = tensors.lower.shape
    unit = torch.rand(settings.random_samples, n_slices, n_resources, generator=generator,
                      device=tensors.lower.device)
    unit[0] = 1.0  # the full allocation: the recommended fallback start (Sec. VI-D)
    allocation = allocation_of(tensors, unit)
    degradation = tensors.expected_degradation(allocation)
    tracker.update(allocation, degradation)
    violation = (degradation - tensors.beta_thresh).clamp(min=0)
    score = torch.where(violation > 0, 1e6 + violation, allocation @ tensors.eta)  # (N, S)
    chosen = _per_slice_top(unit, score, settings.starts)
    n_starts = chosen.shape[0]
    never = torch.full((n_starts, n_slices), torch.inf, device=unit.device)
    starts = _Starts(unit=chosen, best_unit=chosen.clone(), best_cost=never[:, 0].clone(),
                     slice_unit=chosen.clone(), slice_cost=never,
                     samples=unit, sample_meets=violation == 0)
    allocation = allocation_of(tensors, chosen)
    _record(tensors, starts, allocation, tensors.expected_degradation(allocation))
    return starts


def _per_slice_top(unit: torch.Tensor, score: torch.Tensor, count: int) -> torch.Tensor:
    """Per slice, the ``count`` rows of ``unit`` (N, S, K) with the lowest ``score`` (N, S): (count, S, K)."""
    order = score.argsort(dim=0)[: min(count, unit.shape[0])]
    return unit.gather(0, order.unsqueeze(-1).expand(-1, -1, unit.shape[-1])).clone()


def _primal_dual(tensors: ProblemTensors, tracker: BestTracker, starts: _Starts,
                 settings: MicroOptSettings) -> int:
    """Lines 2-13: inner Adam descent on the surrogate Lagrangian, outer strict dual ascent; returns steps."""
    n_starts, n_slices, n_resources = starts.unit.shape
    unit = starts.unit.requires_grad_(True)
    adam = torch.optim.Adam([unit], lr=settings.lr_allocation)
    device = unit.device
    qos_multiplier = torch.full((n_starts, n_slices), settings.initial_lambda, device=device)
    capacity_multiplier = torch.zeros((n_starts, n_resources), device=device)
    eps = stratified_normal_samples(settings.qos_samples, device)
    lower_bound = torch.full((n_starts,), -torch.inf, device=device)
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
            assert unit.grad is not None
            if unit.grad.abs().max().item() < settings.gradient_tolerance:
                break
        with torch.no_grad():
            allocation = allocation_of(tensors, unit)
            degradation = tensors.expected_degradation(allocation)
            _record(tensors, starts, allocation, degradation)
            qos_gap = degradation - tensors.beta_thresh
            excess = _relative_excess(tensors, allocation)
            lagrangian = (tensors.cost(allocation) + (qos_multiplier * qos_gap).sum(-1)
                          + (capacity_multiplier * excess).sum(-1))
            lower_bound = torch.maximum(lower_bound, lagrangian)
            qos_multiplier = (qos_multiplier + settings.lr_qos_multiplier * qos_gap).clamp(min=0.0)
            capacity_multiplier = (capacity_multiplier + settings.lr_capacity_multiplier * excess).clamp(min=0.0)
            for group in adam.param_groups:
                group["lr"] *= settings.lr_decay
        if outer >= settings.min_outer_iterations and _gap_closed(starts.best_cost, lower_bound,
                                                                 settings.gap_tolerance):
            break
    unit.requires_grad_(False)
    tracker.update(allocation_of(tensors, starts.best_unit), tensors.expected_degradation(
        allocation_of(tensors, starts.best_unit)))
    return iterations


def _surrogate_lagrangian(tensors: ProblemTensors, starts: _Starts, qos_multiplier: torch.Tensor,
                          capacity_multiplier: torch.Tensor, eps: torch.Tensor, rho: float) -> torch.Tensor:
    """Surrogate Lagrangian per start (P,); also records feasible iterates with the exact degradation."""
    allocation = allocation_of(tensors, starts.unit)
    mean, std = tensors.qos_distribution(allocation)
    with torch.no_grad():
        _record(tensors, starts, allocation, tensors.degradation_from(mean, std))
    samples = mean.unsqueeze(-1) + std.unsqueeze(-1) * eps
    below = torch.sigmoid(rho * (tensors.q_thresh[:, None, None] - samples)).mean(-1)
    surrogate = (below * tensors.weights).sum(-1)
    return (tensors.cost(allocation) + (qos_multiplier * (surrogate - tensors.beta_thresh)).sum(-1)
            + (capacity_multiplier * _relative_excess(tensors, allocation)).sum(-1))


def _relative_excess(tensors: ProblemTensors, allocation: torch.Tensor) -> torch.Tensor:
    """Capacity excess relative to R, (..., K): the capacity terms of the Lagrangian in cost-like units."""
    excess = tensors.capacity_excess(allocation)
    return excess / tensors.capacity if tensors.capacity is not None else excess


@torch.no_grad()
def _record(tensors: ProblemTensors, starts: _Starts, allocation: torch.Tensor, degradation: torch.Tensor) -> None:
    """Keep each start's cheapest strictly feasible allocation, and per slice its cheapest allocation
    meeting its own QoS (no host synchronization)."""
    unit = starts.unit.detach()
    cost = torch.where(tensors.feasible(degradation, allocation), tensors.cost(allocation), torch.inf)
    better = cost < starts.best_cost
    starts.best_cost = torch.where(better, cost, starts.best_cost)
    starts.best_unit = torch.where(better[:, None, None], unit, starts.best_unit)
    slice_cost = torch.where(degradation <= tensors.beta_thresh, allocation @ tensors.eta, torch.inf)
    better_slice = slice_cost < starts.slice_cost
    starts.slice_cost = torch.where(better_slice, slice_cost, starts.slice_cost)
    starts.slice_unit = torch.where(better_slice[..., None], unit, starts.slice_unit)


def _gap_closed(upper: torch.Tensor, lower: torch.Tensor, tolerance: float) -> bool:
    """True when some start's best feasible cost UB and its Lagrangian LB agree within ``tolerance``."""
    closed = (upper - lower).clamp(min=0) <= tolerance * upper
    return bool((closed & upper.isfinite()).any())


@torch.no_grad()
def _refine(tensors: ProblemTensors, tracker: BestTracker, starts: _Starts, settings: MicroOptSettings) -> None:
    """Polish the answer on the boundary of the feasible set, then fit shared capacities.

    Slices interact only through the capacities, so each slice is polished on its own from its
    cheapest feasible allocation (:func:`pattern_search`). Without capacities that is the answer.
    With capacities each over-used resource gets its own price, as mu_k does in Algorithm 1 (eq. 6):
    the slices' best responses to the weights eta_k (1 + p_k) are computed, and each price in turn is the
    least that makes its resource fit (doubled, then bisected, the other prices held), for
    ``price_rounds`` rounds since raising one price shifts demand onto the other resource.
    Every candidate goes through the tracker, which keeps the cheapest strictly feasible one.
    """
    complete = starts.slice_cost.isfinite().all(-1)  # starts where every slice met its QoS somewhere
    if settings.refine_rounds == 0 or not bool(complete.any()):
        return
    unit = pattern_search(tensors, starts.slice_unit[complete], tensors.eta, settings)
    if _offer(tensors, tracker, unit) or tensors.capacity is None:
        return
    unit = unit[:1]
    prices = torch.zeros_like(tensors.eta)
    for _ in range(settings.price_rounds):
        over = _over_capacity(tensors, unit)
        if not over.any():
            break
        for resource in over.nonzero()[:, 0].tolist():
            prices, unit = _price_resource(tensors, tracker, starts, unit, prices, resource, settings)


def _over_capacity(tensors: ProblemTensors, unit: torch.Tensor) -> torch.Tensor:
    """Which resources the slices' allocations (1, S, K) over-use, (K,)."""
    assert tensors.capacity is not None
    return (tensors.capacity_excess(allocation_of(tensors, unit))[0] > CAPACITY_RTOL * tensors.capacity)


def _price_resource(tensors: ProblemTensors, tracker: BestTracker, starts: _Starts, unit: torch.Tensor,
                    prices: torch.Tensor, resource: int,
                    settings: MicroOptSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The least price of ``resource`` (others held) whose best responses fit its capacity, and those."""
    low, high = float(prices[resource]), float("inf")
    price = max(1.0, 2 * low)
    fitting = unit
    for _ in range(settings.price_steps):
        trial = prices.clone()
        trial[resource] = price
        candidate = _best_response(tensors, starts, unit, tensors.eta * (1 + trial), settings)
        _offer(tensors, tracker, candidate)
        if _over_capacity(tensors, candidate)[resource]:
            low = price
        else:
            high, fitting = price, candidate
        price = price * 2 if high == float("inf") else (low + high) / 2
    if high == float("inf"):
        return prices, unit
    prices = prices.clone()
    prices[resource] = high
    return prices, fitting


def _best_response(tensors: ProblemTensors, starts: _Starts, unit: torch.Tensor, weights: torch.Tensor,
                   settings: MicroOptSettings) -> torch.Tensor:
    """Each slice's cheapest allocation under ``weights`` that meets its QoS, (1, S, K).

    Like line 3 of Algorithm 1 in every outer iteration, the search restarts from the random samples
    that are cheapest at these prices as well as from ``unit``: the learned QoS surface is not convex,
    so a local search from one point can stall far from the slice's best response.
    """
    score = torch.where(starts.sample_meets, allocation_of(tensors, starts.samples) @ weights, torch.inf)
    candidates = torch.cat((unit, _per_slice_top(starts.samples, score, settings.starts)))
    refined = pattern_search(tensors, candidates, weights, settings)
    allocation = allocation_of(tensors, refined)
    meets = tensors.expected_degradation(allocation) <= tensors.beta_thresh
    cost = torch.where(meets, allocation @ weights, torch.inf)  # (C, S)
    pick = cost.argmin(0)  # (S,)
    return refined[pick, torch.arange(refined.shape[1], device=pick.device)].unsqueeze(0)


def _offer(tensors: ProblemTensors, tracker: BestTracker, unit: torch.Tensor) -> bool:
    """Give candidates (P, S, K) to the tracker; True if any start is strictly feasible."""
    allocation = allocation_of(tensors, unit)
    degradation = tensors.expected_degradation(allocation)
    tracker.update(allocation, degradation)
    return bool(tensors.feasible(degradation, allocation).any())


__all__ = ["MicroOptSettings", "Solution", "solve_microopt"]
