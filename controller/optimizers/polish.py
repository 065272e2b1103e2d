"""Local polish of allocations on the boundary of the feasible set: a shrinking-box pattern search.

The primal-dual iterates of MicroOpt (and the queries of Bayesian optimization) end near, not on, the
boundary of each slice's feasible set. The search moves every slice to the cheapest allocation meeting its
QoS in a box around it, using the exact degradation; MicroOpt's refinement and Atlas's polish share it.
Allocations are handled unit-scaled: 0 and 1 are each slice's bounds.
"""

from __future__ import annotations

import torch

from controller.optimizer_settings import MicroOptSettings
from controller.problem import ProblemTensors


def allocation_of(tensors: ProblemTensors, unit: torch.Tensor) -> torch.Tensor:
    """Allocations in resource units from unit-scaled ones (..., S, K)."""
    return tensors.lower + unit * (tensors.upper - tensors.lower)


def pattern_search(tensors: ProblemTensors, unit: torch.Tensor, weights: torch.Tensor,
                    settings: MicroOptSettings) -> torch.Tensor:
    """Per slice, the cheapest allocation under ``weights`` that meets its QoS, by a shrinking-box search.

    ``unit`` (P, S, K) must meet every slice's QoS. Each round evaluates a box of
    (2 ``refine_steps`` + 1)^2 evenly spaced allocations around every slice's current one with the
    exact degradation and moves the slice to the cheapest feasible point. A move to the edge of the
    box widens it along that resource (the boundary of the feasible set can be steep: trading a little
    CPU for much bandwidth); a slice whose best stays at the centre shrinks its box.
    """
    axis = torch.linspace(-1.0, 1.0, 2 * settings.refine_steps + 1, device=unit.device)
    offsets = torch.cartesian_prod(axis, axis)  # (G, K)
    center = int((offsets == 0).all(-1).nonzero()[0])
    radius = torch.full(unit.shape, settings.refine_radius, device=unit.device)  # (P, S, K): per resource
    for _ in range(settings.refine_rounds):
        box = (unit + radius * offsets[:, None, None, :]).clamp(0.0, 1.0)  # (G, P, S, K)
        allocation = allocation_of(tensors, box)
        meets = tensors.expected_degradation(allocation) <= tensors.beta_thresh
        cost = torch.where(meets, allocation @ weights, torch.inf)
        cost[center] = cost[center].clamp(max=1e9)  # the centre meets the QoS by construction
        choice = cost.argmin(0)  # (P, S)
        unit = box.gather(0, choice[None, ..., None].expand(1, -1, -1, box.shape[-1]))[0]
        step = offsets[choice]  # (P, S, K)
        radius = torch.where(step.abs() == 1.0, (radius * settings.refine_grow).clamp(max=1.0), radius)
        radius = torch.where((choice == center)[..., None], radius * settings.refine_shrink, radius)
    return unit
