"""The replay testbed: a digital twin that answers from a slice model or from a measured dataset.

It runs on a virtual clock (``collect(60)`` returns 60 one-second samples at once), so closed loops
and campaigns on it take seconds. QoS comes from one of two sources:

- ``ModelQosSource`` (``controller.testbeds.model_source``): the per-user QoS is drawn from the slice
  model's Gaussian at the allocation.
- ``DatasetQosSource``: the per-user QoS is drawn from the empirical distribution of the measured grid
  points around the allocation. Between grid lines the quantiles of the four surrounding points are
  interpolated with bilinear weights (one uniform level per draw, the same for all four): the
  distribution shifts smoothly from one grid point to the next instead of becoming a mixture of both.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd

from collectors.dataset import GRID_KEY, TARGET
from controller.testbeds.base import SAMPLE_COLUMNS, Allocation, Testbed
from core.errors import InputError

EPOCH = datetime(2026, 1, 1)


class QosSource(Protocol):
    def draw(self, users: int, allocation: Allocation, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` per-user QoS samples (Mbps) for ``users`` users at ``allocation``."""
        ...


class DatasetQosSource:
    """Per-user QoS drawn from measured grid points, quantile-interpolated between grid lines."""

    def __init__(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            raise InputError("replay dataset has no samples")
        self.samples = {key: np.sort(group[TARGET].to_numpy()) for key, group in frame.groupby(GRID_KEY)}
        self.points = np.array(list(self.samples), dtype=float)  # (P, 3): n_users, bw, cpu
        self.users = np.unique(self.points[:, 0])

    def draw(self, users: int, allocation: Allocation, count: int, rng: np.random.Generator) -> np.ndarray:
        if users not in self.users:
            raise InputError(f"replay dataset has no samples with {users} users (it has "
                             f"{', '.join(f'{value:g}' for value in self.users)}); the twin does not extrapolate")
        user_key = float(users)
        corners, weights = self._corners(user_key, allocation)
        levels = rng.random(count)
        quantiles = [np.quantile(self.samples[corner], levels, method="inverted_cdf") for corner in corners]
        return np.asarray(weights) @ np.stack(quantiles)

    def _corners(self, users: float, allocation: Allocation) -> tuple[list[tuple[float, float, float]], np.ndarray]:
        here = self.points[self.points[:, 0] == users]
        bandwidth_lines = np.unique(here[:, 1])
        cpu_lines = np.unique(here[:, 2])
        (bw_low, bw_high), bw_weight = _bracket(bandwidth_lines, allocation.bandwidth_mbps)
        (cpu_low, cpu_high), cpu_weight = _bracket(cpu_lines, allocation.cpu_millicores)
        corners, weights = [], []
        for bandwidth, weight_bw in ((bw_low, 1 - bw_weight), (bw_high, bw_weight)):
            for cpu, weight_cpu in ((cpu_low, 1 - cpu_weight), (cpu_high, cpu_weight)):
                corners.append(self._nearest(here, users, bandwidth, cpu))
                weights.append(weight_bw * weight_cpu)
        weights_array = np.asarray(weights)
        return corners, weights_array / weights_array.sum()

    def _nearest(self, here: np.ndarray, users: float, bandwidth: float, cpu: float) -> tuple[float, float, float]:
        """The measured point at (bandwidth, cpu), or the nearest one (scaled distance) if it is missing."""
        key = (users, bandwidth, cpu)
        if key in self.samples:
            return key
        span = np.ptp(here[:, 1:], axis=0).clip(min=1e-9)
        distance = (((here[:, 1:] - (bandwidth, cpu)) / span) ** 2).sum(1)
        best = here[distance.argmin()]
        return (float(best[0]), float(best[1]), float(best[2]))


def _bracket(lines: np.ndarray, value: float) -> tuple[tuple[float, float], float]:
    """The grid lines around ``value`` (clamped at the ends) and the weight of the upper one."""
    if value <= lines[0]:
        return (lines[0], lines[0]), 0.0
    if value >= lines[-1]:
        return (lines[-1], lines[-1]), 0.0
    upper = int(np.searchsorted(lines, value))
    low, high = lines[upper - 1], lines[upper]
    return (float(low), float(high)), float((value - low) / (high - low))


class ReplayTestbed(Testbed):
    """A virtual-clock testbed whose slices answer from a :class:`QosSource`."""

    name = "replay"

    def __init__(self, source: QosSource, slices: list[str], seed: int = 0, start: datetime = EPOCH) -> None:
        self.source = source
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.clock = start
        self.allocations: dict[str, Allocation] = {}
        self.users: dict[str, int] = dict.fromkeys(slices, 0)

    def start_session(self, session: int, last_sample: datetime | None) -> None:
        """Go on one second after ``last_sample`` with fresh draws for ``session`` (not a rerun of session 1)."""
        if last_sample is not None:
            self.clock = last_sample + timedelta(seconds=1)
        self.rng = np.random.default_rng([self.seed, session])

    def _known(self, slice_name: str) -> None:
        if slice_name not in self.users:
            raise InputError(f"replay testbed: unknown slice {slice_name!r}; known: {', '.join(self.users)}")

    def apply(self, slice_name: str, allocation: Allocation) -> Allocation:
        self._known(slice_name)
        if allocation.cpu_millicores <= 0 or allocation.bandwidth_mbps <= 0:
            raise InputError(f"slice {slice_name}: allocations must be > 0, got {allocation}")
        self.allocations[slice_name] = allocation
        return allocation

    def set_traffic(self, slice_name: str, users: int) -> None:
        self._known(slice_name)
        if users < 0:
            raise InputError(f"slice {slice_name}: users must be >= 0, got {users}")
        self.users[slice_name] = int(users)

    def collect(self, seconds: int) -> pd.DataFrame:
        times = [self.clock + timedelta(seconds=offset) for offset in range(seconds)]
        self.clock += timedelta(seconds=seconds)
        frames = []
        for slice_name, users in self.users.items():
            if users == 0:
                continue
            allocation = self.allocations.get(slice_name)
            if allocation is None:
                raise InputError(f"slice {slice_name}: traffic is running but no allocation was applied")
            qos = self.source.draw(users, allocation, seconds, self.rng)
            frames.append(pd.DataFrame({
                "time": times,
                "slice": slice_name,
                "total_bandwidth_usage": qos * users,
                "cpu": allocation.cpu_millicores,
                "bw": allocation.bandwidth_mbps,
                "n_users": float(users),
                "qos": qos,
            }))
        if not frames:
            return pd.DataFrame({column: [] for column in SAMPLE_COLUMNS})
        return pd.concat(frames, ignore_index=True)[list(SAMPLE_COLUMNS)]
