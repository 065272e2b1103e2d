"""The exact placement, eq. (6), with OR-Tools CP-SAT.

Constraints: one tier per VNF (1), CPU (2) and memory (3) capacity per tier, the user-plane latency bound (4) and
consolidation (5); the objective is the hourly cost in micro-dollars.

- **Symmetry breaking by aggregation.** Slices of one type are interchangeable, so instead of x[s, v, k] the model
  counts how many slices of each type take each tier pattern of each group of coupled VNFs (the user-plane path,
  a consolidated group, every other VNF alone); patterns breaking (4) or (5) are left out. No two solutions are
  permutations of each other, and the counts are handed back to the slices in arrival order.
- **Batch** (:func:`solve_batch`): every slice at once, the true optimum with CP-SAT's proof status, bound and
  gap; the search starts from the best heuristic placement (warm start).
- **Online** (:func:`solve_online`): slices arrive one by one and are placed optimally on what is left,
  earlier placements staying, as SlicePilot's slice-wise decomposition does; a slice that no longer fits is
  rejected.
- **Infeasible**: the model is built again with every pattern and one assumption literal per constraint (a tier's
  CPU or memory, a type's latency bound or consolidation); CP-SAT's sufficient assumptions, shrunk by a deletion
  filter, name the binding ones.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model
from pydantic import Field

from controller.placement.heuristics import HEURISTICS, place_heuristic
from controller.placement.placement import Assignment, Occupancy, Placement
from controller.placement.problem import Problem, Requests
from core.validation import StrictModel

MICRO = 1_000_000
"""The objective counts micro-dollars per hour (CP-SAT needs integers)."""


class IlpSettings(StrictModel):
    """CP-SAT budget and options."""

    time_limit_s: float = Field(10.0, gt=0, le=3600, description="stop the search after this long")
    relative_gap: float = Field(0.0, ge=0, le=1, description="stop once within this fraction of the bound")
    workers: int = Field(2, ge=1, le=64, description="CP-SAT search workers (the machine has 2 cores)")
    seed: int = 0
    warm_start: bool = True


@dataclass(frozen=True)
class Component:
    """VNFs of one slice type that constraints couple (the user-plane path, a consolidated group) and the tier
    tuples they may take."""

    vnfs: tuple[int, ...]
    patterns: tuple[tuple[int, ...], ...]
    meets_latency: tuple[bool, ...]
    meets_consolidation: tuple[bool, ...]


def components(problem: Problem, type_index: int) -> list[Component]:
    """The VNFs of slice type ``type_index`` split into independent components, each with its tier patterns."""
    parent = list(range(problem.n_vnfs))

    def root(v: int) -> int:
        while parent[v] != v:
            v = parent[v]
        return v

    for group in (problem.path, problem.consolidate[type_index]):
        for v in group[1:]:
            parent[root(v)] = root(group[0])
    members: dict[int, list[int]] = {}
    for v in range(problem.n_vnfs):
        members.setdefault(root(v), []).append(v)
    result = []
    for vnfs in members.values():
        patterns = tuple(itertools.product(range(problem.n_tiers), repeat=len(vnfs)))
        position = {v: i for i, v in enumerate(vnfs)}
        latency = tuple(not set(problem.path) <= set(vnfs) or
                        tuple(p[position[v]] for v in problem.path) in problem.allowed_paths[type_index]
                        for p in patterns)
        consolidated = [v for v in problem.consolidate[type_index] if v in position]
        consolidation = tuple(len({p[position[v]] for v in consolidated}) <= 1 for p in patterns)
        result.append(Component(tuple(vnfs), patterns, latency, consolidation))
    return result


@dataclass
class _Built:
    model: cp_model.CpModel
    counts: dict[tuple[int, int, int], cp_model.IntVar]
    """(type, component, pattern) -> how many slices of the type place the component so"""
    parts: dict[int, list[Component]]
    labels: dict[int, str]
    """assumption literal index -> the constraint it enables (only when diagnosing)"""


def _build(problem: Problem, requests: Requests, base: Occupancy, diagnose: bool) -> _Built:
    """Eq. (6) over counts: slices of one type are interchangeable, so the model counts how many of them take each
    tier pattern instead of naming slices (symmetry breaking by aggregation: no two solutions are permutations)."""
    model = cp_model.CpModel()
    per_type = {t: requests.types.count(t) for t in sorted(set(requests.types))}
    parts = {t: components(problem, t) for t in per_type}
    counts: dict[tuple[int, int, int], cp_model.IntVar] = {}
    labels: dict[int, str] = {}

    literals: dict[str, cp_model.IntVar] = {}

    def enforced(constraint: cp_model.Constraint, label: str) -> None:
        """Make ``constraint`` hold only under the assumption named ``label`` (one literal per label)."""
        if label not in literals:
            literals[label] = model.NewBoolVar(label)
            labels[literals[label].Index()] = label
        constraint.OnlyEnforceIf(literals[label])

    cpu_use: list[list[Any]] = [[] for _ in problem.tiers]
    mem_use: list[list[Any]] = [[] for _ in problem.tiers]
    objective = []
    for t, n_slices in per_type.items():
        kind = problem.types[t]
        for c, part in enumerate(parts[t]):
            variables = []
            for p, pattern in enumerate(part.patterns):
                allowed = part.meets_latency[p] and part.meets_consolidation[p]
                if not allowed and not diagnose:
                    continue
                count = counts[t, c, p] = model.NewIntVar(0, n_slices, f"n_{kind}_{c}_{p}")
                variables.append(count)
                if not part.meets_latency[p]:
                    enforced(model.Add(count == 0), f"latency bound of the {kind} slices ({problem.bounds_ms[t]:g} ms)")
                if not part.meets_consolidation[p]:
                    group = ", ".join(problem.vnfs[v] for v in problem.consolidate[t])
                    enforced(model.Add(count == 0), f"consolidation of {group} in the {kind} slices")
                for v, k in zip(part.vnfs, pattern, strict=True):
                    cpu_use[k].append(int(problem.cpu[t, v]) * count)
                    mem_use[k].append(int(problem.mem[t, v]) * count)
                objective.append(sum(round(problem.cost[t, v, k] * MICRO) for v, k in zip(part.vnfs, pattern,
                                                                                          strict=True)) * count)
            model.Add(sum(variables) == n_slices)
    for k, tier in enumerate(problem.tiers):
        for resource, use, capacity, used, unit, scale in (
                ("CPU", cpu_use[k], problem.cap_cpu, base.cpu, "cores", 1000),
                ("memory", mem_use[k], problem.cap_mem, base.mem, "GiB", 1024)):
            constraint = model.Add(sum(use) <= int(capacity[k] - used[k]))
            if diagnose:
                enforced(constraint, f"{tier} {resource} capacity ({capacity[k] / scale:g} {unit}, "
                                     f"{used[k] / scale:g} in use)")
    if diagnose:
        model.AddAssumptions([model.GetBoolVarFromProtoIndex(index) for index in labels])
    model.Minimize(sum(objective))
    return _Built(model, counts, parts, labels)


def _hint(built: _Built, problem: Problem, requests: Requests, start: dict[str, Assignment | None]) -> None:
    """Warm start: the counts of ``start``'s placement (slices it rejected are left out)."""
    tally: dict[tuple[int, int, int], int] = dict.fromkeys(built.counts, 0)
    for name, t in zip(requests.names, requests.types, strict=True):
        tiers = start.get(name)
        if tiers is None:
            continue
        for c, part in enumerate(built.parts[t]):
            key = (t, c, part.patterns.index(tuple(tiers[v] for v in part.vnfs)))
            if key in tally:
                tally[key] += 1
    for key, value in tally.items():
        built.model.AddHint(built.counts[key], value)


def _disaggregate(built: _Built, solver: cp_model.CpSolver, problem: Problem,
                  requests: Requests) -> dict[str, Assignment | None]:
    """Hand each component's patterns, as counted, to the slices of the type in arrival order."""
    assignment: dict[str, Assignment | None] = {}
    for t, parts in built.parts.items():
        names = [name for name, kind in zip(requests.names, requests.types, strict=True) if kind == t]
        tiers = {name: [0] * problem.n_vnfs for name in names}
        for c, part in enumerate(parts):
            patterns = [pattern for p, pattern in enumerate(part.patterns) if (t, c, p) in built.counts
                        for _ in range(solver.Value(built.counts[t, c, p]))]
            for name, pattern in zip(names, patterns, strict=True):
                for v, k in zip(part.vnfs, pattern, strict=True):
                    tiers[name][v] = k
        assignment.update({name: tuple(value) for name, value in tiers.items()})
    return {name: assignment[name] for name in requests.names}


def best_heuristic(problem: Problem, requests: Requests, seed: int = 0) -> Placement:
    """The heuristic placement to warm-start from: SLA-feasible with no rejection if any, then the cheapest."""

    def rank(placement: Placement) -> tuple[int, float]:
        broken = sum(tiers is None or not problem.sla_met(t, tiers)
                     for tiers, t in zip((placement.assignment[n] for n in requests.names), requests.types,
                                         strict=True))
        cost = sum(problem.slice_cost(t, placement.assignment[n] or ()) for n, t in
                   zip(requests.names, requests.types, strict=True) if placement.assignment[n] is not None)
        return broken, cost

    return min((place_heuristic(problem, requests, name, seed) for name in HEURISTICS), key=rank)


def _solver(settings: IlpSettings, workers: int | None = None) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = settings.time_limit_s
    solver.parameters.num_workers = workers or settings.workers
    solver.parameters.random_seed = settings.seed
    solver.parameters.relative_gap_limit = settings.relative_gap
    return solver


def solve_batch(problem: Problem, requests: Requests, settings: IlpSettings | None = None,
                base: Occupancy | None = None, method: str = "ilp") -> Placement:
    """The optimum of eq. (6) for all ``requests`` at once, on top of ``base`` (what is already in use).

    ``details`` holds ``status`` (OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN), ``objective``/``bound`` in $/h, the
    relative ``gap``, the warm start used, and for INFEASIBLE the ``binding`` constraints.
    """
    settings = settings or IlpSettings()
    base = base or Occupancy(problem)
    started = time.perf_counter()
    built = _build(problem, requests, base, diagnose=False)
    details: dict[str, Any] = {"slices": len(requests)}
    if settings.warm_start and len(requests):
        start = best_heuristic(problem, requests, settings.seed)
        details["warm_start"] = start.method
        _hint(built, problem, requests, start.assignment)
    solver = _solver(settings)
    status = solver.Solve(built.model)
    details["status"] = solver.StatusName(status)
    assignment: dict[str, Assignment | None] = dict.fromkeys(requests.names)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        assignment = _disaggregate(built, solver, problem, requests)
        objective, bound = solver.ObjectiveValue(), solver.BestObjectiveBound()
        details.update(objective=objective / MICRO, bound=bound / MICRO,
                       gap=(objective - bound) / objective if objective > 0 else 0.0)
    elapsed = time.perf_counter() - started
    details["solve_s"] = solver.WallTime()
    if status == cp_model.INFEASIBLE:
        details["binding"] = binding_constraints(problem, requests, base, settings)
    return Placement(method, assignment, elapsed, details)


def binding_constraints(problem: Problem, requests: Requests, base: Occupancy, settings: IlpSettings) -> list[str]:
    """Names of constraints that together make the instance infeasible: CP-SAT's sufficient assumptions, then
    shrunk by dropping each one that is not needed (deletion filter)."""
    built = _build(problem, requests, base, diagnose=True)
    solver = _solver(settings, workers=1)
    if solver.Solve(built.model) != cp_model.INFEASIBLE:
        return []
    core = list(solver.SufficientAssumptionsForInfeasibility())
    for index in list(core):
        trial = [literal for literal in core if literal != index]
        built.model.ClearAssumptions()
        built.model.AddAssumptions([built.model.GetBoolVarFromProtoIndex(literal) for literal in trial])
        if solver.Solve(built.model) == cp_model.INFEASIBLE:
            core = trial
    return sorted(built.labels[index] for index in core)


def solve_online(problem: Problem, requests: Requests, settings: IlpSettings | None = None) -> Placement:
    """Slices one by one in arrival order, each placed optimally on the capacity left (rejected if none fits)."""
    settings = (settings or IlpSettings()).model_copy(update={"warm_start": False})
    occupancy = Occupancy(problem)
    assignment: dict[str, Assignment | None] = {}
    elapsed, statuses = 0.0, []
    for name, t in zip(requests.names, requests.types, strict=True):
        one = Requests((name,), (t,))
        placed = solve_batch(problem, one, settings, occupancy, method="ilp-online")
        elapsed += placed.decision_s
        statuses.append(placed.details["status"])
        assignment[name] = chosen = placed.assignment[name]
        if chosen is not None:
            occupancy.add_slice(t, chosen)
    return Placement("ilp-online", assignment, elapsed,
                     {"status": "OPTIMAL" if all(s in ("OPTIMAL", "INFEASIBLE") for s in statuses) else "FEASIBLE",
                      "rejected_as_infeasible": statuses.count("INFEASIBLE")})
