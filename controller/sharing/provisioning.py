"""Provisioned bandwidth from the trial phase (paper Algorithm 1, Sec. VI-A).

NoSh reserves each slice's ``delta``-percentile of its demand (the empirical distribution of the trial slots,
which is the maximum-likelihood estimate of the stationary distribution) and provisions their sum. Sh and ShT
provision the smallest capacity, found by binary search, that satisfies one of two rules:

- ``replay``: replaying the trial demands through the Sh multiplexer accepts every slice in at least a
  ``delta`` share of the slots (the tightest capacity; the regular phase then hovers around ``delta``);
- ``total``: the total demand fits in at least a ``max(delta)`` share of the trial slots (the paper's code, eq. 9
  with untransformed demands): every slice is accepted whenever the total fits, and the knapsack adds the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from controller.sharing.multiplexer import Multiplexer, Scheme
from core.errors import InputError


def percentile_demand(demand: np.ndarray, availability: float) -> int:
    """The smallest demand ``d`` with ``P(D <= d) >= availability`` over the trial slots."""
    ordered = np.sort(np.asarray(demand))
    position = int(np.ceil(availability * len(ordered) - 1e-9)) - 1
    return int(ordered[max(position, 0)])


def acceptance(demands: np.ndarray, capacity: int, availability: Sequence[float]) -> np.ndarray:
    """Each slice's share of accepted slots when ``demands`` (slices x slots) go through the Sh multiplexer."""
    multiplexer = Multiplexer([str(index) for index in range(len(demands))], capacity, availability, Scheme("sh"))
    accepted = np.zeros(len(demands))
    for column in demands.T.tolist():
        accepted += multiplexer.decide(column).accepted
    return accepted / demands.shape[1]


def meets_availability(demands: np.ndarray, availability: Sequence[float]) -> Callable[[int], bool]:
    """The predicate "capacity B meets every slice's availability on these trial demands" (Sh multiplexer)."""

    def meets(capacity: int) -> bool:
        return capacity > 0 and bool((acceptance(demands, capacity, availability) >= np.asarray(availability)).all())

    return meets


def total_fits(demands: np.ndarray, availability: Sequence[float]) -> Callable[[int], bool]:
    """The predicate "the total demand fits capacity B in at least a max(availability) share of the slots"."""
    total = demands.sum(axis=0)
    target = max(availability)

    def fits(capacity: int) -> bool:
        return capacity > 0 and float(np.mean(total <= capacity)) >= target - 1e-12

    return fits


ProvisioningRule = Literal["replay", "total"]


def smallest_capacity(meets: Callable[[int], bool], high: int) -> int:
    """Binary search for the smallest capacity in [1, high] that ``meets`` (``meets(high)`` must hold)."""
    low = 1
    while low < high:
        middle = (low + high) // 2
        if meets(middle):
            high = middle
        else:
            low = middle + 1
    return high


def linear_scan_capacity(meets: Callable[[int], bool], high: int) -> int:
    """The smallest capacity in [1, high] that ``meets``, trying each in turn (the reference for tests)."""
    return next(capacity for capacity in range(1, high + 1) if meets(capacity))


@dataclass(frozen=True)
class Provisioning:
    """The trial phase's provisioned PRBs: NoSh's per-slice reservations and total, and the shared capacity."""

    reserved: list[int]
    nosh: int
    shared: int
    trial_acceptance: list[float]


def provision(trial_demands: Sequence[np.ndarray], availability: Sequence[float],
              rule: ProvisioningRule = "replay") -> Provisioning:
    """NoSh and Sh/ShT capacities from the slices' trial demands (aligned to the same number of slots).

    Raises:
        InputError: every trial demand is 0, so there is nothing to provision.
    """
    demands = np.vstack(trial_demands)
    high = int(demands.max(axis=1).sum())
    if high <= 0:
        raise InputError("every slice's trial demand is 0 PRBs: nothing to provision (the multiplexer's knapsack "
                         "would have zero capacity)")
    reserved = [percentile_demand(row, delta) for row, delta in zip(demands, availability, strict=True)]
    predicate = meets_availability(demands, availability) if rule == "replay" else total_fits(demands, availability)
    shared = smallest_capacity(predicate, high)
    return Provisioning(reserved=reserved, nosh=sum(reserved), shared=shared,
                        trial_acceptance=acceptance(demands, shared, availability).tolist())
