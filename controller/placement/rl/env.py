"""The placement MDP of Sec. III-C (eqs. 7-12): one VNF placed per step.

State (eq. 7), all scaled to about [0, 1]: free CPU and memory per tier, the slices of the agent's type still
queued and their aggregated demand, the type's SLA parameters (latency bound, whether the VNF is consolidated).
For the process to be Markov the state also carries what the paper's scheduler knows implicitly: which VNF is
next (one-hot) and its demand, which tiers have room for it, and the tiers already chosen for this slice's VNFs.
The monolithic agent's state adds the slice type (one-hot).

Action (eq. 8): a tier. Rewards: ``-resource_penalty`` for a tier without room (eq. 9; the VNF stays to be
placed), the tier's cost-efficiency reward (eq. 10: ``cost_reward`` on the cheapest tier, 0 on the dearest) and,
once the slice's last VNF is placed, ``+sla_reward`` if it meets its latency bound and consolidation, else
``-sla_reward`` (eq. 11).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.placement.placement import Occupancy
from controller.placement.problem import Problem

MAX_INVALID = 3
"""Choices of a full tier in a row after which training gives up on the slice (counted as an SLA failure)."""


def observation_size(problem: Problem, monolithic: bool) -> int:
    k, v = problem.n_tiers, problem.n_vnfs
    return 3 * k + v + 2 + v * k + 3 + 2 + (len(problem.types) if monolithic else 0)


def cost_weights(problem: Problem) -> np.ndarray:
    """Eq. (10)'s per-tier cost-efficiency vector before scaling: 1 on the cheapest tier (per core plus GiB), 0 on
    the dearest."""
    prices = np.array([tier.cost_per_core_hour + tier.cost_per_gib_hour for tier in problem.spec.tiers])
    spread = prices.max() - prices.min()
    return (prices.max() - prices) / spread if spread > 0 else np.ones_like(prices)


@dataclass
class Queue:
    """The slices of the agent's type(s) still to place, and their demand."""

    count: int
    cpu: float
    mem: float


def observe(problem: Problem, occupancy: Occupancy, type_index: int, vnf: int, partial: list[int], queue: Queue,
            monolithic: bool) -> np.ndarray:
    """The state vector of eq. (7) (plus the Markov additions in this module's docstring)."""
    k = problem.n_tiers
    free_cpu, free_mem = occupancy.free_fraction()
    fits = occupancy.fits(type_index, vnf).astype(float)
    vnf_hot = np.zeros(problem.n_vnfs)
    vnf_hot[vnf] = 1
    demand = [problem.cpu[type_index, vnf] / problem.cpu.max(), problem.mem[type_index, vnf] / problem.mem.max()]
    placed = np.zeros((problem.n_vnfs, k))
    placed[np.arange(len(partial)), partial] = 1
    total_cpu, total_mem = problem.cap_cpu.sum(), problem.cap_mem.sum()
    queued = [queue.count / 20, queue.cpu / total_cpu, queue.mem / total_mem]
    sla = [problem.bounds_ms[type_index] / problem.bounds_ms.max(), float(vnf in problem.consolidate[type_index])]
    parts = [free_cpu, free_mem, fits, vnf_hot, demand, placed.ravel(), queued, sla]
    if monolithic:
        type_hot = np.zeros(len(problem.types))
        type_hot[type_index] = 1
        parts.append(type_hot)
    return np.concatenate([np.asarray(part, dtype=np.float32) for part in parts]).astype(np.float32)


def queue_of(problem: Problem, types: list[int]) -> Queue:
    """The queue summary of slices of ``types``."""
    index = np.asarray(types, dtype=np.int64)
    return Queue(len(types), float(problem.cpu[index].sum()), float(problem.mem[index].sum()))


class PlacementEnv:
    """Training episodes: a random background load on the tiers, then a queue of slices of ``types`` to place.

    The background (each tier 0-95 % used) stands for the slices other agents placed, so one agent sees the
    states it meets when it shares the tiers with the others.
    """

    def __init__(self, problem: Problem, types: list[int], monolithic: bool, resource_penalty: float,
                 cost_reward: float, max_queue: int, type_weights: np.ndarray | None = None) -> None:
        self.problem, self.types, self.monolithic = problem, types, monolithic
        self.resource_penalty, self.max_queue = resource_penalty, max_queue
        self.type_weights = type_weights
        self.weights = cost_reward * cost_weights(problem)
        self.occupancy = Occupancy(problem)
        self.queue: list[int] = []
        self.partial: list[int] = []
        self.invalid = 0

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        problem = self.problem
        self.occupancy = Occupancy(problem)
        used = rng.uniform(0, 0.95, problem.n_tiers)
        self.occupancy.cpu[:] = (used * problem.cap_cpu).astype(np.int64)
        self.occupancy.mem[:] = (np.clip(used + rng.normal(0, 0.05, problem.n_tiers), 0, 0.95)
                                 * problem.cap_mem).astype(np.int64)
        length = int(rng.integers(1, self.max_queue + 1))
        self.queue = [int(t) for t in rng.choice(self.types, size=length, p=self.type_weights)]
        self.partial, self.invalid = [], 0
        return self._skip_unplaceable()[0]

    def _state(self) -> np.ndarray:
        return observe(self.problem, self.occupancy, self.queue[0], len(self.partial), self.partial,
                       queue_of(self.problem, self.queue), self.monolithic)

    def mask(self) -> np.ndarray:
        """Tiers with room for the next VNF."""
        return self.occupancy.fits(self.queue[0], len(self.partial))

    def _skip_unplaceable(self) -> tuple[np.ndarray, float, bool]:
        """Reject (with the SLA penalty) slices whose next VNF fits nowhere; the next state, that penalty, done."""
        penalty = 0.0
        while self.queue and not self.mask().any():
            penalty += self._reject()
        done = not self.queue
        return (np.zeros(observation_size(self.problem, self.monolithic), np.float32) if done else self._state(),
                penalty, done)

    def _reject(self) -> float:
        t = self.queue.pop(0)
        self.occupancy.add_slice(t, tuple(self.partial), sign=-1)
        self.partial, self.invalid = [], 0
        return -self.problem.spec.slice_types[self.problem.types[t]].sla_reward

    def step(self, tier: int) -> tuple[np.ndarray, float, bool]:
        """Place the next VNF on ``tier``: (next state, reward, episode over)."""
        problem, t = self.problem, self.queue[0]
        vnf = len(self.partial)
        if not self.occupancy.fits(t, vnf)[tier]:
            self.invalid += 1
            reward = -self.resource_penalty
            if self.invalid < MAX_INVALID:
                return self._state(), reward, False
            reward += self._reject()
            state, penalty, done = self._skip_unplaceable()
            return state, reward + penalty, done
        self.invalid = 0
        self.occupancy.add(t, vnf, tier)
        self.partial.append(tier)
        reward = float(self.weights[tier])
        if len(self.partial) == problem.n_vnfs:
            sla = problem.spec.slice_types[problem.types[t]].sla_reward
            reward += sla if problem.sla_met(t, tuple(self.partial)) else -sla
            self.queue.pop(0)
            self.partial = []
        state, penalty, done = self._skip_unplaceable()
        return state, reward + penalty, done
