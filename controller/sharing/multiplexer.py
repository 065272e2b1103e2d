"""The network-slice multiplexer (paper Algorithm 2 and Sec. VI-A): each slot, which demands to accept.

If the slots' demands fit the provisioned capacity, every slice is accepted. Otherwise:

- NoSh accepts each slice whose demand is within its own reserved share (its trial percentile), then shares
  what is left among the others;
- Sh shares the capacity among all slices by the max-weight knapsack, weights = deficits;
- ShT<n> first tests every slice; the slices that pass share the capacity by the knapsack, and the ones that
  fail get only what is left (by the same knapsack when every passing slice was served).

A slice's deficit (paper eq. 16) is a virtual queue of its availability target: it grows by ``delta`` each
slot and shrinks by one when the slice is accepted, never below 0, so slices behind their target weigh more.
Bandwidth left over after the knapsack goes to the slices that were not accepted, shared max-min fairly
(eq. 18); it does not count as an acceptance. A testbed applies each decision through a
:class:`BandwidthApplier` (one call per slot with every slice's PRBs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from controller.sharing.knapsack import MaxWeightKnapsack
from core.errors import InputError

SchemeKind = Literal["nosh", "sh", "sht"]


@dataclass(frozen=True)
class Scheme:
    """A sharing scheme: NoSh, Sh, or ShT with a test window of ``window`` slots."""

    kind: SchemeKind
    window: int | None = None

    @property
    def name(self) -> str:
        return {"nosh": "NoSh", "sh": "Sh"}.get(self.kind, f"ShT{self.window}")


class BandwidthApplier(Protocol):
    """What a testbed backend implements to enforce the multiplexer's decisions (e.g. through slice meters)."""

    def apply(self, prbs: Mapping[str, int]) -> None:
        """Give each slice (by name) this many PRBs for the coming slot."""


@dataclass(frozen=True)
class SlotDecision:
    """One slot's outcome: acceptance and PRBs per slice, and which slices failed a test (None: no test ran)."""

    accepted: list[bool]
    allocated: list[int]
    failed_test: list[bool] | None


class Multiplexer:
    """Decides each slot for a fixed set of slices under one scheme and keeps their deficits."""

    def __init__(self, names: Sequence[str], capacity: int, availability: Sequence[float], scheme: Scheme,
                 reserved: Sequence[int] | None = None) -> None:
        if capacity <= 0:
            raise InputError(f"provisioned capacity {capacity} PRBs: the multiplexer's knapsack has zero capacity")
        if scheme.kind == "nosh" and reserved is None:
            raise ValueError("NoSh needs each slice's reserved PRBs")
        self.names = list(names)
        self.capacity = capacity
        self.availability = list(availability)
        self.scheme = scheme
        self.reserved = list(reserved) if reserved is not None else None
        self.deficits = [0.0] * len(self.names)
        self._knapsack = MaxWeightKnapsack()

    def decide(self, demands: Sequence[int], failing: Callable[[], list[bool]] | None = None) -> SlotDecision:
        """Accept or reject each slice's demand; ``failing()`` runs the tests (ShT only, and only under contention)."""
        count = len(demands)
        accepted = [True] * count
        failed = None
        if sum(demands) > self.capacity:
            accepted = [False] * count
            if self.scheme.kind == "nosh":
                assert self.reserved is not None
                first = [index for index in range(count) if demands[index] <= self.reserved[index]]
                second = [index for index in range(count) if demands[index] > self.reserved[index]]
                for index in first:
                    accepted[index] = True
                left = self.capacity - sum(demands[index] for index in first)
                left = self._pack(second, demands, left, accepted)
                unmet = [index for index in second if not accepted[index]]
            else:
                failed = failing() if self.scheme.kind == "sht" and failing is not None else [False] * count
                normal = [index for index in range(count) if not failed[index]]
                left = self._pack(normal, demands, self.capacity, accepted)
                unmet = [index for index in normal if not accepted[index]]
                if not unmet:
                    abnormal = [index for index in range(count) if failed[index]]
                    left = self._pack(abnormal, demands, left, accepted)
                    unmet = [index for index in abnormal if not accepted[index]]
            allocated = [demands[index] if accepted[index] else 0 for index in range(count)]
            for index, share in water_fill(unmet, demands, left).items():
                allocated[index] = share
        else:
            allocated = list(demands)
        for index in range(count):
            self.deficits[index] = max(self.deficits[index] + self.availability[index] - accepted[index], 0.0)
        return SlotDecision(accepted=accepted, allocated=allocated, failed_test=failed)

    def run_slot(self, demands: Sequence[int], applier: BandwidthApplier,
                 failing: Callable[[], list[bool]] | None = None) -> SlotDecision:
        """Decide one slot and apply the PRBs through ``applier``."""
        decision = self.decide(demands, failing)
        applier.apply(dict(zip(self.names, decision.allocated, strict=True)))
        return decision

    def _pack(self, group: list[int], demands: Sequence[int], capacity: int, accepted: list[bool]) -> int:
        """Accept the knapsack's choice within ``group``; returns the capacity left."""
        if not group or capacity <= 0:
            return capacity
        chosen = self._knapsack.solve([self.deficits[index] for index in group],
                                      [demands[index] for index in group], capacity)
        for index, take in zip(group, chosen, strict=True):
            if take:
                accepted[index] = True
                capacity -= demands[index]
        return capacity


def water_fill(indices: Sequence[int], demands: Sequence[int], capacity: int) -> dict[int, int]:
    """Max-min fair whole-PRB shares of ``capacity`` among ``indices``, none above its demand."""
    shares = {index: 0 for index in indices}
    waiting = sorted(indices, key=lambda index: demands[index])
    while waiting and capacity > 0:
        equal = capacity // len(waiting)
        if equal == 0:
            for index in waiting[:capacity]:
                shares[index] += 1
            break
        index = waiting[0]
        give = min(equal, demands[index] - shares[index])
        if give == demands[index] - shares[index]:
            waiting.pop(0)
            shares[index] += give
            capacity -= give
            continue
        for index in waiting:
            shares[index] += equal
        capacity -= equal * len(waiting)
    return shares
