"""The placement problem in numbers: demands, capacities, costs, latencies and the SLA of each slice type.

CPU is counted in millicores and memory in MiB (integers, as CP-SAT needs). The user-plane latency of a slice is
eq. (4): the radio's tier to the first user-plane VNF, each hop of the user-plane path, then the anchor UPF's
latency to the data network. Tiers not joined directly are joined by the shortest path over the given links.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.placement.spec import PlacementSpec, SliceRequest
from core.errors import InputError

MAX_PATH_COMBINATIONS = 100_000


@dataclass(frozen=True)
class Problem:
    """A validated placement problem; indices follow the spec's order of tiers, VNFs and slice types."""

    spec: PlacementSpec
    tiers: tuple[str, ...]
    vnfs: tuple[str, ...]
    types: tuple[str, ...]
    cpu: np.ndarray
    """[type, vnf] millicores"""
    mem: np.ndarray
    """[type, vnf] MiB"""
    cap_cpu: np.ndarray
    """[tier] millicores"""
    cap_mem: np.ndarray
    """[tier] MiB"""
    cost: np.ndarray
    """[type, vnf, tier] $/h"""
    latency_ms: np.ndarray
    """[tier, tier] one-way latency (shortest path)"""
    upf_latency_ms: np.ndarray
    radio: int
    path: tuple[int, ...]
    """VNF indices of the user-plane path, from the radio to the anchor UPF"""
    bounds_ms: np.ndarray
    consolidate: tuple[tuple[int, ...], ...]
    """per type: VNF indices that share one tier"""
    allowed_paths: tuple[frozenset[tuple[int, ...]], ...]
    """per type: the tier tuples of the user-plane path that meet the latency bound"""
    flavors: tuple[tuple[str, ...], ...]
    """[type][vnf] the smallest flavor holding the VNF"""

    @property
    def n_tiers(self) -> int:
        return len(self.tiers)

    @property
    def n_vnfs(self) -> int:
        return len(self.vnfs)

    def type_index(self, name: str) -> int:
        """Index of slice type ``name``; InputError naming the known ones."""
        if name not in self.types:
            raise InputError(f"unknown slice type {name!r}; known types are {', '.join(self.types)}")
        return self.types.index(name)

    def path_latency_ms(self, tiers_of_path: tuple[int, ...]) -> float:
        """Eq. (4): user-plane latency when the path's VNFs sit on ``tiers_of_path``."""
        return path_latency_ms(self.latency_ms, self.upf_latency_ms, self.radio, tiers_of_path)

    def slice_latency_ms(self, assignment: tuple[int, ...]) -> float:
        """User-plane latency of a slice whose VNFs sit on ``assignment`` (a tier per VNF)."""
        return self.path_latency_ms(tuple(assignment[vnf] for vnf in self.path))

    def sla_met(self, type_index: int, assignment: tuple[int, ...]) -> bool:
        """Whether a fully placed slice meets its latency bound (eq. 4) and consolidation (eq. 5)."""
        if tuple(assignment[vnf] for vnf in self.path) not in self.allowed_paths[type_index]:
            return False
        return len({assignment[vnf] for vnf in self.consolidate[type_index]}) <= 1

    def slice_cost(self, type_index: int, assignment: tuple[int, ...]) -> float:
        """$/h of a slice placed on ``assignment``."""
        return float(sum(self.cost[type_index, vnf, tier] for vnf, tier in enumerate(assignment)))


def path_latency_ms(latency_ms: np.ndarray, upf_latency_ms: np.ndarray, radio: int,
                    tiers_of_path: tuple[int, ...]) -> float:
    """Eq. (4): radio -> each user-plane VNF's tier in turn, plus the anchor UPF's latency to the data network."""
    total, previous = 0.0, radio
    for tier in tiers_of_path:
        total += latency_ms[previous, tier]
        previous = tier
    return float(total + upf_latency_ms[previous])


def _millis(value: float) -> int:
    return round(value * 1000)


def _mib(gib: float) -> int:
    return round(gib * 1024)


def shortest_latencies(spec: PlacementSpec, source: str) -> np.ndarray:
    """[tier, tier] shortest one-way latency over the spec's links (Floyd-Warshall); InputError if disconnected."""
    names = [tier.name for tier in spec.tiers]
    matrix = np.full((len(names), len(names)), math.inf)
    np.fill_diagonal(matrix, 0.0)
    for link in spec.latency_links():
        a, b = names.index(link.a), names.index(link.b)
        matrix[a, b] = matrix[b, a] = min(matrix[a, b], link.delay_ms)
    for via in range(len(names)):
        matrix = np.minimum(matrix, matrix[:, [via]] + matrix[[via], :])
    unreachable = np.argwhere(np.isinf(matrix))
    if len(unreachable):
        a, b = unreachable[0]
        raise InputError(f"{source}: latency: no link path joins tiers {names[a]} and {names[b]}; add a latency "
                         "entry between them")
    return matrix


def build_problem(spec: PlacementSpec, source: str | Path = "placement spec") -> Problem:
    """The numeric problem of ``spec``; InputError (one line, naming ``source``) for a VNF larger than every tier
    or every flavor, a latency bound no placement meets, or tiers no latency path joins."""
    tiers = tuple(tier.name for tier in spec.tiers)
    vnfs = tuple(vnf.name for vnf in spec.vnfs)
    types = tuple(spec.slice_types)
    cap_cpu = np.array([_millis(tier.cpu_cores) for tier in spec.tiers], dtype=np.int64)
    cap_mem = np.array([_mib(tier.memory_gib) for tier in spec.tiers], dtype=np.int64)
    cpu = np.zeros((len(types), len(vnfs)), dtype=np.int64)
    mem = np.zeros((len(types), len(vnfs)), dtype=np.int64)
    cost = np.zeros((len(types), len(vnfs), len(tiers)))
    flavors: list[tuple[str, ...]] = []
    for t, (type_name, slice_type) in enumerate(spec.slice_types.items()):
        type_flavors = []
        for v, vnf in enumerate(spec.vnfs):
            demand = slice_type.demands.get(vnf.name, vnf)
            cpu[t, v], mem[t, v] = _millis(demand.cpu_cores), _mib(demand.memory_gib)
            cost[t, v] = [demand.cpu_cores * tier.cost_per_core_hour + demand.memory_gib * tier.cost_per_gib_hour
                          for tier in spec.tiers]
            if not np.any((cap_cpu >= cpu[t, v]) & (cap_mem >= mem[t, v])):
                raise InputError(f"{source}: slice type {type_name}: VNF {vnf.name} needs {demand.cpu_cores:g} cores "
                                 f"and {demand.memory_gib:g} GiB, more than any tier offers; shrink it or enlarge a "
                                 "tier")
            fitting = [f for f in spec.flavors if f.cpu_cores >= demand.cpu_cores and f.memory_gib >= demand.memory_gib]
            if not fitting:
                raise InputError(f"{source}: slice type {type_name}: VNF {vnf.name} ({demand.cpu_cores:g} cores, "
                                 f"{demand.memory_gib:g} GiB) fits no flavor; add a larger flavor")
            type_flavors.append(min(fitting, key=lambda f: (f.cpu_cores, f.memory_gib)).name)
        flavors.append(tuple(type_flavors))
    radio = tiers.index(spec.radio_tier) if spec.radio_tier else 0
    path = tuple(vnfs.index(name) for name in spec.user_plane_path)
    for type_name, slice_type in spec.slice_types.items():
        group = set(slice_type.consolidate)
        coupled = max(len(path), len(group)) if group.isdisjoint(spec.user_plane_path) else \
            len(group | set(spec.user_plane_path))
        if len(tiers) ** coupled > MAX_PATH_COMBINATIONS:
            raise InputError(f"{source}: slice_types.{type_name}: {len(tiers)} tiers and {coupled} VNFs coupled by "
                             "the user-plane path and consolidation give too many tier combinations; shorten "
                             "user_plane_path or consolidate")
    latency = shortest_latencies(spec, str(source))
    upf_latency = np.array([tier.upf_latency_ms for tier in spec.tiers])
    combinations = list(itertools.product(range(len(tiers)), repeat=len(path)))
    latencies = {combo: path_latency_ms(latency, upf_latency, radio, combo) for combo in combinations}
    allowed = []
    for type_name, slice_type in spec.slice_types.items():
        bound = slice_type.latency_bound_ms
        meeting = frozenset(combo for combo in combinations if latencies[combo] <= bound + 1e-9)
        if not meeting:
            fastest = min(combinations, key=latencies.__getitem__)
            raise InputError(
                f"{source}: slice_types.{type_name}.latency_bound_ms: {bound:g} ms is below the fastest user plane "
                f"({latencies[fastest]:g} ms with {', '.join(spec.user_plane_path)} on "
                f"{', '.join(tiers[tier] for tier in fastest)}); no placement meets it, raise it")
        allowed.append(meeting)
    return Problem(
        spec=spec, tiers=tiers, vnfs=vnfs, types=types, cpu=cpu, mem=mem, cap_cpu=cap_cpu, cap_mem=cap_mem,
        cost=cost, latency_ms=latency, upf_latency_ms=upf_latency, radio=radio, path=path,
        bounds_ms=np.array([slice_type.latency_bound_ms for slice_type in spec.slice_types.values()]),
        consolidate=tuple(tuple(vnfs.index(name) for name in slice_type.consolidate)
                          for slice_type in spec.slice_types.values()),
        allowed_paths=tuple(allowed), flavors=tuple(flavors))


@dataclass(frozen=True)
class Requests:
    """Slices to place, in arrival order: names and type indices."""

    names: tuple[str, ...]
    types: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_spec(cls, problem: Problem, requests: list[SliceRequest]) -> Requests:
        return cls(tuple(r.name for r in requests), tuple(problem.type_index(r.type) for r in requests))


DEFAULT_TYPE_PROBABILITIES = {"urllc": 0.2, "embb": 0.3, "mmtc": 0.5}
"""Sec. V-C: slice types drawn from a multinomial distribution."""


def draw_requests(problem: Problem, count: int, rng: np.random.Generator,
                  probabilities: dict[str, float] | None = None) -> Requests:
    """``count`` slices whose types are drawn multinomially (default: the paper's 0.2 / 0.3 / 0.5)."""
    probabilities = probabilities or {name: DEFAULT_TYPE_PROBABILITIES.get(name, 0.0) for name in problem.types}
    weights = np.array([probabilities.get(name, 0.0) for name in problem.types])
    if weights.sum() == 0:  # a spec whose types are all new: draw them uniformly
        weights = np.ones(len(problem.types))
    elif not math.isclose(float(weights.sum()), 1.0, abs_tol=1e-6) or (weights < 0).any():
        raise InputError(f"slice type probabilities must be >= 0 and add up to 1, got {weights.sum():g}")
    types = rng.choice(len(problem.types), size=count, p=weights / weights.sum())
    return Requests(tuple(f"s{i + 1}" for i in range(count)), tuple(int(t) for t in types))
