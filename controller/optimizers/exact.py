"""The exact solver (``--method exact``): each slice's optimum traced along the boundary of its feasible set.

With two resources the answer of eq. (2) lies where the QoS constraint binds or on a bound: at each CPU value
c the cheapest bandwidth is the least feasible one, b*(c), and the answer minimizes eta_cpu c + eta_bw b*(c)
along that boundary. The constraint is read as a margin, >= 0 when met (``ProblemTensors.margin``): under
constant traffic the deterministic mu - z sigma - q_thresh, otherwise beta_thresh - E[beta].

1. Boundary (:func:`least_bandwidth`): for a batch of CPU values, a coarse bandwidth grid brackets b*(c)
   (the first feasible grid value); where the margin is not monotone in bandwidth below it, and its peak
   there is within its change to the neighbouring values of 0, a grid ``nonmonotone_factor`` times finer re-brackets it,
   so a feasible pocket between coarse values is not skipped; bisection then closes each bracket.
2. Minimum: the cost along a CPU scan, its ``local_minima`` cheapest local minima refined on finer CPU
   steps, the cheapest kept.
3. Polish and certificate, in float64 on the unfolded model: bisection of the bandwidth (then of the CPU)
   to the boundary, and the KKT conditions at the answer (:func:`kkt_residual`).

Slices (and the cases of a benchmark, posed as slices of one problem) form one tensor program: every step
evaluates all slices' points in one batched call. When shared capacities couple the slices, each slice's
frontier b*(c) on a CPU grid feeds the exact multiple-choice knapsack (``knapsack``).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from controller.optimizer_settings import ExactSettings
from controller.optimizers.base import Solution, finalize
from controller.optimizers.knapsack import backtrack, least_total_bandwidth
from controller.problem import CAPACITY_RTOL, Problem, ProblemTensors

FRONTIER_PAD = 1e-3
"""Mbps added to each frontier point the knapsack packs, so the float64 polish can only lower the bandwidth."""
WINDOW_MARGIN = 50.0
"""Millicores below the least CPU meeting the QoS at the upper bandwidth bound that the knapsack still searches."""
WINDOW_SCAN_STEP = 25.0
"""Millicores between the CPU values scanned, at the upper bandwidth bound, for each slice's least feasible CPU."""
POLISH_SPAN = 1e-2
"""Mbps below the float32 answer that the float64 polish of the bandwidth searches."""
POLISH_ITERATIONS = 30
POLISH_SLACK = 1e-9
"""Margin the float64 polish keeps: on the boundary itself, z = Phi^-1(1 - beta) and the judge's Phi round
differently, and E[beta] can come out a few ulps above beta_thresh."""


@dataclass
class Boundary:
    """Per slice and CPU value, the least feasible bandwidth."""

    cpu: torch.Tensor  # (S, C)
    bandwidth: torch.Tensor  # (S, C), inf where no bandwidth within the bounds meets the QoS
    nonmonotone: torch.Tensor  # (S, C) whether the margin peaked somewhere below the first feasible grid value
    # (a bandwidth bracketed from its neighbours is not checked: False)
    closest: torch.Tensor  # (S, C) the bandwidth of the largest margin on the coarse grid (the best effort)
    closest_margin: torch.Tensor  # (S, C) that margin


def solve_exact(problem: Problem, settings: ExactSettings | None = None,
                device: torch.device | str = "cpu") -> Solution:
    """Each slice's cheapest allocation meeting its QoS (the knapsack over frontiers when capacities are shared)."""
    settings = settings or ExactSettings()
    started = time.perf_counter()
    tensors = ProblemTensors.build(problem, device)
    precise = ProblemTensors.build(problem, device, torch.float64)
    with torch.no_grad():
        if problem.capacity is None:
            cpu, bandwidth, nonmonotone = _independent(tensors, settings)
        else:
            cpu, bandwidth, nonmonotone = _shared(tensors, settings)
        cpu_span = settings.refine_steps[-1] if settings.refine_steps else settings.cpu_step
        cpu, bandwidth = _polish(precise, cpu.double(), bandwidth.double(), cpu_span, settings.batch)
    allocation = torch.stack((cpu, bandwidth), -1)
    residual, multiplier = kkt_residual(precise, allocation)
    certificate = {"kkt_residual": float(residual.max()), "qos_multiplier_max": float(multiplier.max()),
                   "nonmonotone_share": nonmonotone}
    return finalize(problem, allocation.cpu().numpy(), "exact", started,
                    queries=tensors.queries + precise.queries, certificate=certificate)


def _independent(tensors: ProblemTensors, settings: ExactSettings) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per slice: the CPU scan, its cheapest local minima refined; (cpu, bandwidth) of the best (S,), and the
    share of scanned CPU values where the constraint was not monotone in bandwidth."""
    scan = least_bandwidth(tensors, _cpu_axis(tensors, settings.cpu_step), settings)
    cost = _cost(tensors, scan)
    centres = _local_minima(cost, scan.cpu, settings.local_minima)  # (S, M)
    span = settings.cpu_step
    for step in settings.refine_steps:
        offsets = torch.arange(-span, span + step / 2, step, device=centres.device)  # (O,)
        cpu = (centres[..., None] + offsets).clamp(tensors.lower[:, 0, None, None], tensors.upper[:, 0, None, None])
        refined = least_bandwidth(tensors, cpu.flatten(1), settings)
        refined_cost = _cost(tensors, refined).reshape(cpu.shape)  # (S, M, O)
        centres = cpu.gather(-1, refined_cost.argmin(-1, keepdim=True))[..., 0]
        span = step
    final = least_bandwidth(tensors, centres, settings)
    best = _cost(tensors, final).argmin(-1, keepdim=True)
    cpu, bandwidth = final.cpu.gather(1, best)[:, 0], final.bandwidth.gather(1, best)[:, 0]
    fallback = ~bandwidth.isfinite()
    if fallback.any():  # nothing on the scan met the QoS: the scanned allocation of the largest margin instead
        closest = scan.closest_margin.argmax(1, keepdim=True)
        cpu = torch.where(fallback, scan.cpu.gather(1, closest)[:, 0], cpu)
        bandwidth = torch.where(fallback, scan.closest.gather(1, closest)[:, 0], bandwidth)
    return cpu, bandwidth, float(scan.nonmonotone.float().mean())


def _shared(tensors: ProblemTensors, settings: ExactSettings) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The knapsack over the slices' frontiers, on successively finer CPU grids.

    Each slice's CPU window (``knapsack_window``, :func:`_cpu_window`; else the bounds) runs from just below the
    least CPU at which it meets its QoS to just above that plus what the CPU capacity leaves over every slice's
    least. The first grid holds each slice's least CPU (so the packing of the least CPUs is on it); each
    finer grid of ``knapsack_refine_steps`` lies within two steps of the previous one around each slice's
    choice and holds that choice with its bandwidth, so a refinement never loses a packing that fits nor
    raises its cost. Where a grid holds no packing that fits, the next one centres on the packing that spends
    all the CPU with the least bandwidth; if the finest one holds none either, the whole windows on the finest
    grid (slow, but the answer misses the capacities only when that grid does: then it is that packing,
    judged infeasible)."""
    assert tensors.capacity is not None
    # each frontier point is padded by FRONTIER_PAD and the chosen ones polished in float64: no finer bisection
    coarse_settings = settings.model_copy(update={"tolerance": max(settings.tolerance, FRONTIER_PAD)})
    low, high, steps = _cpu_window(tensors, settings)  # (S, 1) each, float64
    if not low.isfinite().all():
        return _independent(tensors, settings)  # some slice cannot meet its QoS at all
    cpu = low + steps[0] * torch.arange(math.floor(float((high - low).max()) / steps[0] + 1e-9) + 1,
                                        device=low.device, dtype=low.dtype)
    frontier = _frontier(tensors, cpu, low, high, coarse_settings)
    if not frontier.bandwidth.isfinite().any(1).all():
        return _independent(tensors, settings)  # some slice cannot meet its QoS at all
    picked, fits = _knapsack(tensors, cpu, frontier.bandwidth, steps[0])
    chosen_cpu, chosen_bandwidth = cpu.gather(1, picked), frontier.bandwidth.gather(1, picked)  # (S, 1) each
    for coarse, fine in itertools.pairwise(steps):
        cpu = chosen_cpu + torch.arange(-2 * coarse, 2 * coarse + fine / 2, fine, device=low.device, dtype=low.dtype)
        bandwidth = _frontier(tensors, cpu, low, high, coarse_settings).bandwidth
        bandwidth[:, round(2 * coarse / fine)] = chosen_bandwidth[:, 0]  # the previous choice, as packed
        picked, fits = _knapsack(tensors, cpu, bandwidth, fine)
        chosen_cpu, chosen_bandwidth = cpu.gather(1, picked), bandwidth.gather(1, picked)
    if not fits and len(steps) > 1:  # the last resort (slow): the whole windows on the finest grid
        cpu = low + steps[-1] * torch.arange(math.floor(float((high - low).max()) / steps[-1] + 1e-9) + 1,
                                             device=low.device, dtype=low.dtype)
        bandwidth = _frontier(tensors, cpu, low, high, coarse_settings).bandwidth
        picked, fits = _knapsack(tensors, cpu, bandwidth, steps[-1])
        chosen_cpu, chosen_bandwidth = cpu.gather(1, picked), bandwidth.gather(1, picked)
    return chosen_cpu[:, 0], _padded(tensors, chosen_bandwidth)[:, 0], float(frontier.nonmonotone.float().mean())


def _cpu_window(tensors: ProblemTensors, settings: ExactSettings) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Each slice's CPU window (S, 1) x 2 in float64 for the knapsack, and the steps of its grids.

    With ``knapsack_window``, the window starts ``WINDOW_MARGIN`` (rounded up to whole first steps, within the
    bounds) below the least CPU at which the slice meets its QoS at its upper bandwidth bound (inf: nowhere;
    the margin covers a model that is not monotone in bandwidth), so that least CPU lies on every grid, and
    ends the same margin above what the CPU capacity leaves over every slice's least (within the bounds);
    without, the bounds."""
    assert tensors.capacity is not None
    lower, upper = tensors.lower[:, 0, None].double(), tensors.upper[:, 0, None].double()
    if not settings.knapsack_window:
        return lower, upper, _knapsack_steps(settings, float((upper - lower).max()))
    least = least_cpu(tensors, settings).double()
    spare = (tensors.capacity[0].double() * (1 + CAPACITY_RTOL) - least.sum()).clamp(min=0.0)
    high = torch.minimum(upper, least + spare + WINDOW_MARGIN)
    steps = _knapsack_steps(settings, float((high - (least - WINDOW_MARGIN).clamp(min=lower)).max()))
    below = torch.minimum(torch.full_like(least, math.ceil(WINDOW_MARGIN / steps[0] - 1e-9)),
                          torch.floor((least - lower) / steps[0] + 1e-9))
    return least - steps[0] * below, high, steps


def least_cpu(tensors: ProblemTensors, settings: ExactSettings) -> torch.Tensor:
    """The least CPU (S, 1) at which each slice meets its QoS with the most bandwidth its bounds allow (inf:
    none within the bounds): the first feasible value of a scan ``WINDOW_SCAN_STEP`` apart, bisected against
    the value before it (a feasible pocket between two scanned values below it is not searched)."""
    cpu = _cpu_axis(tensors, WINDOW_SCAN_STEP)
    most = tensors.upper[:, 1, None].expand_as(cpu)
    feasible_end, found = _first_feasible(cpu, margins(tensors, cpu, most, settings.batch))
    infeasible_end = cpu.gather(1, (found - 1).clamp(min=0)[:, None])[:, 0]
    infeasible_end = torch.where(found > 0, infeasible_end, feasible_end)  # found 0: the lower bound meets it
    least = _bisect(tensors, most[:, :1], infeasible_end[:, None], feasible_end[:, None], settings, along=0)
    return torch.where(found[:, None] >= 0, least, torch.inf)


def _knapsack_steps(settings: ExactSettings, widest: float) -> list[float]:
    """The CPU steps of the successive knapsack grids: the first spans the widest window (mc) in at most
    ``knapsack_points`` values (a multiple of the next step, at most ``knapsack_cpu_step``), then each finer
    refinement step."""
    first = settings.knapsack_cpu_step
    if settings.knapsack_refine_steps:
        unit = settings.knapsack_refine_steps[0]
        first = min(first, unit * max(1, math.ceil(widest / (settings.knapsack_points - 1) / unit)))
    return [first, *(step for step in settings.knapsack_refine_steps if step < first)]


def _frontier(tensors: ProblemTensors, cpu: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
              settings: ExactSettings) -> Boundary:
    """:func:`hinted_frontier` at CPU values ``cpu`` (S, C), float64; inf (not allowed) outside each slice's
    window [low, high]."""
    inside = (cpu >= low - 1e-9) & (cpu <= high + 1e-9)
    frontier = hinted_frontier(tensors, cpu.clamp(low, high).to(tensors.lower.dtype), settings)
    frontier.bandwidth = torch.where(inside, frontier.bandwidth, torch.inf)
    return frontier


def _knapsack(tensors: ProblemTensors, cpu: torch.Tensor, bandwidth: torch.Tensor,
              step: float) -> tuple[torch.Tensor, bool]:
    """The cheapest packing of one frontier point per slice within both capacities, for CPU values ``cpu``
    (S, C) in float64, ``step`` apart from each slice's first, and their least bandwidths (inf: none), each
    packed as :func:`_padded`; the index (S, 1) of each slice's point and whether the packing fits. When none
    fits, the packing spending all the CPU with the least bandwidth."""
    assert tensors.capacity is not None
    units = torch.round((cpu - cpu[:, :1]) / step).long()
    options = _pareto(_padded(tensors, bandwidth))
    capacity = tensors.capacity.double() * (1 + CAPACITY_RTOL)
    first = cpu[:, 0].sum()
    budget = max(0, math.floor((capacity[0].item() - first.item()) / step + 1e-9))
    least, choice = least_total_bandwidth(units, options, budget)
    eta = tensors.eta.double()
    spent = torch.arange(budget + 1, device=cpu.device)
    total_cost = eta[0] * (first + step * spent) + eta[1] * least
    fits = (least <= capacity[1]) & least.isfinite()
    total = int(torch.where(fits, total_cost, torch.inf).argmin()) if fits.any() else int(least.argmin())
    return backtrack(units, choice, total)[:, None], bool(fits.any())


def _padded(tensors: ProblemTensors, bandwidth: torch.Tensor) -> torch.Tensor:
    """Frontier bandwidths (S, C) as the knapsack packs them, in float64: ``FRONTIER_PAD`` above, within the
    upper bound (inf stays inf)."""
    padded = (bandwidth.double() + FRONTIER_PAD).clamp(max=tensors.upper[:, 1, None].double())
    return torch.where(bandwidth.isfinite(), padded, torch.inf)


def _pareto(bandwidth: torch.Tensor) -> torch.Tensor:
    """Drop (set to inf) frontier points that need no less bandwidth than a point with less CPU, (S, C)."""
    earlier = torch.cat((torch.full_like(bandwidth[:, :1], torch.inf), bandwidth[:, :-1]), 1).cummin(1).values
    return torch.where(bandwidth < earlier, bandwidth, torch.inf)


def hinted_frontier(tensors: ProblemTensors, cpu: torch.Tensor, settings: ExactSettings) -> Boundary:
    """:func:`least_bandwidth` along a fine CPU grid ``cpu`` (S, C), bracketing most values from their neighbours.

    Every ``anchor_every``-th CPU value (and the last) is bracketed on the coarse bandwidth grid; a value between
    two anchors whose least bandwidths lie within two coarse steps takes them, widened by one step, as its
    bracket when the bracket's ends check out (infeasible below, feasible above), and the coarse grid otherwise;
    between two anchors where no bandwidth is feasible, none is taken to be.
    """
    count = cpu.shape[1]
    columns = torch.arange(count, device=cpu.device)
    anchors = torch.unique(torch.cat((columns[::settings.anchor_every], columns[-1:])))
    anchored = least_bandwidth(tensors, cpu[:, anchors], settings)
    right = torch.searchsorted(anchors, columns).clamp(max=len(anchors) - 1)
    left = (right - (anchors[right] > columns).long()).clamp(min=0)
    low, high = tensors.lower[:, 1, None], tensors.upper[:, 1, None]
    step = (high - low) / (settings.bandwidth_points - 1)
    ends = anchored.bandwidth[:, left], anchored.bandwidth[:, right]
    close = (ends[0] - ends[1]).abs() <= 2 * step  # neighbours this close bound the value between them
    lower_end = torch.where(close, torch.maximum(torch.minimum(*ends) - step, low), low)
    upper_end = torch.where(close, torch.minimum(torch.maximum(*ends) + step, high), low)
    checks = margins(tensors, torch.stack((cpu, cpu), -1), torch.stack((lower_end, upper_end), -1), settings.batch)
    at_bound = close & (lower_end <= low) & (checks[..., 0] >= 0)  # feasible at the bandwidth bound itself
    hinted = close & (checks[..., 1] >= 0) & ((checks[..., 0] < 0) | at_bound)
    bracket_low, bracket_high = torch.where(hinted & ~at_bound, lower_end, low), torch.where(hinted, upper_end, low)
    bandwidth = torch.where(at_bound, low.expand_as(cpu), _bisect(tensors, cpu, bracket_low, bracket_high, settings))
    bandwidth = torch.where(hinted, bandwidth, torch.inf)
    bandwidth[:, anchors] = anchored.bandwidth
    neither = ~(ends[0].isfinite() | ends[1].isfinite())  # between two CPU values where nothing is feasible
    missing = ~(hinted | neither)
    missing[:, anchors] = False
    if missing.any():  # no bracket from the neighbours: the coarse grid, for these CPU values (padded per slice)
        per_slice = missing.sum(1)
        order = missing.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :int(per_slice.max())]
        again = least_bandwidth(tensors, cpu.gather(1, order), settings).bandwidth
        valid = torch.arange(order.shape[1], device=cpu.device) < per_slice[:, None]
        bandwidth = bandwidth.scatter(1, order, torch.where(valid, again, bandwidth.gather(1, order)))
    nonmonotone = torch.zeros_like(hinted)
    nonmonotone[:, anchors] = anchored.nonmonotone  # checked where the coarse grid ran
    return Boundary(cpu, bandwidth, nonmonotone, bandwidth, torch.zeros_like(bandwidth))


def least_bandwidth(tensors: ProblemTensors, cpu: torch.Tensor, settings: ExactSettings) -> Boundary:
    """The least bandwidth within the bounds at which each slice meets its QoS, for CPU values ``cpu`` (S, C)."""
    n_slices, count = cpu.shape
    low, high = tensors.lower[:, 1, None], tensors.upper[:, 1, None]  # (S, 1)
    fractions = torch.linspace(0.0, 1.0, settings.bandwidth_points, device=cpu.device)
    grid = (low + (high - low) * fractions).unsqueeze(1).expand(n_slices, count, -1)  # (S, C, N)
    margin = margins(tensors, cpu[..., None].expand_as(grid), grid, settings.batch)
    upper_end, found = _first_feasible(grid, margin)
    lower_end = torch.where(found > 0, grid.gather(-1, (found - 1).clamp(min=0)[..., None])[..., 0], low)
    change = margin[..., 1:] - margin[..., :-1]  # (S, C, N - 1): from grid value j to j + 1
    searched = torch.where(found >= 0, found, margin.shape[-1])  # grid values below the first feasible one
    below = torch.arange(change.shape[-1], device=cpu.device) < searched[..., None] - 1
    rises = torch.nn.functional.pad(change[..., :-1], (1, 0), value=1.0) > 0  # into value j
    peaks = below & rises & (change < 0)  # local maxima of the margin below the first feasible value
    # a peak hides a feasible pocket between grid values only if the margin may climb to 0 there: as far
    # as it moves from the peak to its neighbours
    steps = change.abs()
    around = torch.maximum(steps, torch.nn.functional.pad(steps[..., :-1], (1, 0)))
    reaching = peaks & (margin[..., :-1] + around >= 0)
    recheck = reaching.any(-1)
    if recheck.any():
        peak = reaching.to(torch.int8).argmax(-1)  # the first (least bandwidth) such peak
        lower_end, upper_end, found = _rebracket(tensors, cpu, grid, peak, recheck, (lower_end, upper_end, found),
                                                 settings)
    bandwidth = _bisect(tensors, cpu, lower_end, upper_end, settings)
    bandwidth = torch.where(found >= 0, bandwidth, torch.inf)
    closest_margin, closest = margin.max(-1)
    return Boundary(cpu, bandwidth, peaks.any(-1), grid.gather(-1, closest[..., None])[..., 0], closest_margin)


def margins(tensors: ProblemTensors, cpu: torch.Tensor, bandwidth: torch.Tensor, batch: int) -> torch.Tensor:
    """The QoS margin of each slice at its own points: cpu, bandwidth (S, ...) -> (S, ...), in chunks of
    at most ``batch`` model rows."""
    n_slices = cpu.shape[0]
    allocation = torch.stack((cpu.reshape(n_slices, -1), bandwidth.reshape(n_slices, -1)), -1).transpose(0, 1)
    chunk = max(1, batch // (n_slices * tensors.support.shape[1]))
    parts = [tensors.margin(allocation[start:start + chunk]) for start in range(0, allocation.shape[0], chunk)]
    return torch.cat(parts).T.reshape(cpu.shape)


def _first_feasible(grid: torch.Tensor, margin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first grid value along the last axis where the margin is >= 0, and its index (-1: none)."""
    feasible = margin >= 0
    index = feasible.to(torch.int8).argmax(-1)
    found = torch.where(feasible.any(-1), index, -1)
    return grid.gather(-1, index[..., None])[..., 0], found


def _rebracket(tensors: ProblemTensors, cpu: torch.Tensor, grid: torch.Tensor, peak: torch.Tensor,
               recheck: torch.Tensor, bracket: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
               settings: ExactSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the margin peaks near 0 below the first feasible coarse value (at grid index ``peak``), search the
    two coarse steps around the peak on a grid ``nonmonotone_factor`` times finer; a feasible value there
    brackets the least feasible bandwidth anew. ``bracket`` and the result are (lower end, upper end, index
    found or -1) per row; the rows to recheck are padded to the same count per slice."""
    lower_end, upper_end, found = bracket
    per_slice = recheck.sum(1)
    width = int(per_slice.max())
    order = recheck.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :width]  # flagged rows first
    valid = torch.arange(width, device=cpu.device) < per_slice[:, None]
    rows = grid.gather(1, order[..., None].expand(-1, -1, grid.shape[-1]))  # (S, W, N)
    at = peak.gather(1, order)[..., None]
    start = rows.gather(-1, (at - 1).clamp(min=0))
    stop = rows.gather(-1, (at + 1).clamp(max=grid.shape[-1] - 1))
    fractions = torch.linspace(0.0, 1.0, 2 * settings.nonmonotone_factor + 1, device=cpu.device)
    fine = start + (stop - start) * fractions  # (S, W, P)
    margin = margins(tensors, cpu.gather(1, order)[..., None].expand_as(fine), fine, settings.batch)
    fine_upper, fine_found = _first_feasible(fine, margin)
    fine_lower = fine.gather(-1, (fine_found - 1).clamp(min=0)[..., None])[..., 0]
    pocket = valid & (fine_found > 0)  # the start of the fine grid is below a peak: not feasible when found
    lower_end = lower_end.scatter(1, order, torch.where(pocket, fine_lower, lower_end.gather(1, order)))
    upper_end = upper_end.scatter(1, order, torch.where(pocket, fine_upper, upper_end.gather(1, order)))
    found = found.scatter(1, order, torch.where(pocket, fine_found, found.gather(1, order)))
    return lower_end, upper_end, found


def _bisect(tensors: ProblemTensors, fixed: torch.Tensor, infeasible: torch.Tensor, feasible: torch.Tensor,
            settings: ExactSettings, along: int = 1) -> torch.Tensor:
    """Close brackets [infeasible, feasible] of one resource (``along``: 1 bandwidth, 0 CPU) with the other one
    ``fixed`` (S, C); the feasible ends (S, C)."""
    width = float((feasible - infeasible).abs().max().clamp(min=settings.tolerance))
    for _ in range(math.ceil(math.log2(width / settings.tolerance))):
        middle = (infeasible + feasible) / 2
        point = (fixed, middle) if along == 1 else (middle, fixed.expand_as(middle))
        meets = margins(tensors, *point, settings.batch) >= 0
        feasible = torch.where(meets, middle, feasible)
        infeasible = torch.where(meets, infeasible, middle)
    return feasible


def _cpu_axis(tensors: ProblemTensors, step: float) -> torch.Tensor:
    """Each slice's CPU bounds split evenly, at most ``step`` apart, (S, C)."""
    low, high = tensors.lower[:, 0, None], tensors.upper[:, 0, None]
    count = int(torch.ceil((high - low).max() / step).item()) + 1
    return low + (high - low) * torch.linspace(0.0, 1.0, count, device=low.device)


def _cost(tensors: ProblemTensors, boundary: Boundary) -> torch.Tensor:
    """eta . (c, b*(c)) along the boundary, inf where nothing is feasible, (S, C)."""
    return tensors.eta[0] * boundary.cpu + tensors.eta[1] * boundary.bandwidth


def _local_minima(cost: torch.Tensor, cpu: torch.Tensor, count: int) -> torch.Tensor:
    """The CPU values (S, count) of the ``count`` cheapest local minima of ``cost`` (S, C) along the scan
    (repeating the cheapest where a slice has fewer)."""
    padded = torch.nn.functional.pad(cost, (1, 1), value=torch.inf)
    minimum = (cost <= padded[:, :-2]) & (cost <= padded[:, 2:])
    ranked = torch.where(minimum, cost, torch.inf)
    order = ranked.argsort(1)[:, :count]
    best = order[:, :1].expand_as(order)
    chosen = torch.where(ranked.gather(1, order).isfinite(), order, best)
    return cpu.gather(1, chosen)


def _polish(precise: ProblemTensors, cpu: torch.Tensor, bandwidth: torch.Tensor, cpu_span: float,
            batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each (cpu, bandwidth) (S,) onto the boundary in float64: the least bandwidth within
    ``POLISH_SPAN`` below, then the least CPU within ``cpu_span`` below (the last CPU step searched)."""
    bandwidth = polish_axis(precise, cpu, bandwidth, 1, POLISH_SPAN, batch)
    cpu = polish_axis(precise, cpu, bandwidth, 0, cpu_span, batch)
    return cpu, bandwidth


def polish_axis(precise: ProblemTensors, cpu: torch.Tensor, bandwidth: torch.Tensor, resource: int,
                 span: float, batch: int) -> torch.Tensor:
    """The least value of ``resource`` meeting the QoS in float64, by bisection: within ``span`` below the current
    one where the current point meets the QoS, within ``span`` above it where it misses by a hair (the float32
    boundary can lie a few ulps outside the float64 one); elsewhere the current value (left for the judgement)."""
    current = (cpu, bandwidth)[resource]

    def meets(value: torch.Tensor) -> torch.Tensor:
        point = (value, bandwidth) if resource == 0 else (cpu, value)
        return margins(precise, point[0][:, None], point[1][:, None], batch)[:, 0] >= POLISH_SLACK

    low = torch.maximum(current - span, precise.lower[:, resource])
    high = torch.minimum(current + span, precise.upper[:, resource])
    at_current, at_low, at_high = meets(current), meets(low), meets(high)
    done = torch.where(at_current, at_low, ~at_high)  # the span's low end is feasible, or nothing near is
    result = torch.where(at_current & at_low, low, current)
    if done.all():
        return result
    a = torch.where(done, result, torch.where(at_current, low, current))  # infeasible end of the bracket
    b = torch.where(done, result, torch.where(at_current, current, high))  # feasible end
    for _ in range(POLISH_ITERATIONS):
        middle = (a + b) / 2
        ok = meets(middle)
        b, a = torch.where(ok, middle, b), torch.where(ok, a, middle)
    return torch.where(done, result, b)


def kkt_residual(precise: ProblemTensors, allocation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The KKT conditions of min eta . r s.t. margin(r) >= 0, lower <= r <= upper at ``allocation`` (S, 2).

    In cost-normalized coordinates u = eta * r the objective's gradient is (1, 1); stationarity asks
    (1, 1) = lambda grad_u margin + nu with lambda >= 0 and bound multipliers nu of the right sign on active
    bounds. Returns each slice's residual (the norm of what is left over, over sqrt 2: 0 at a KKT point,
    1 for a point no multiplier explains) and lambda. At a kink of a ReLU network the gradient is one of
    its one-sided gradients, so a true optimum there can show a residual.
    """
    point = allocation.detach().double().clone().requires_grad_(True)
    with torch.enable_grad():
        margin = precise.margin(point[None])[0]
        (gradient,) = torch.autograd.grad(margin.sum(), point)
    scaled = gradient / precise.eta.double()  # d margin / d u
    at_lower = point.detach() <= precise.lower.double() * (1 + 1e-12)
    at_upper = point.detach() >= precise.upper.double() * (1 - 1e-12)
    free = ~(at_lower | at_upper)
    binding = margin.detach().abs() <= 1e-6 * (1 + margin.detach().abs())
    square = torch.where(free, scaled, 0.0).square().sum(-1)
    multiplier = torch.where(binding & (square > 0), torch.where(free, scaled, 0.0).sum(-1) / square.clamp(min=1e-300),
                             0.0).clamp(min=0.0)
    left = 1.0 - multiplier[:, None] * scaled  # the bound multipliers must absorb this on active bounds
    wrong = torch.where(free, left, torch.where(at_lower, left.clamp(max=0.0), left.clamp(min=0.0)))
    return wrong.norm(dim=-1) / np.sqrt(2), multiplier


__all__ = ["ExactSettings", "Solution", "solve_exact"]
