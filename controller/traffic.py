"""Slice traffic over a reconfiguration interval: constant, truncated normal, or a recorded trace.

The optimizer sees traffic as a discrete distribution of users/s (support points and their
probabilities); eq. (1) of MicroOpt then weights each point's degradation by x * p(x). Testbeds see it
as a per-second series of user counts drawn from the same profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from core.errors import InputError


@dataclass(frozen=True)
class TrafficDistribution:
    """Users/s values ``support`` with probabilities ``probabilities`` (summing to 1)."""

    support: np.ndarray
    probabilities: np.ndarray

    def __post_init__(self) -> None:
        if self.support.shape != self.probabilities.shape or self.support.ndim != 1 or not self.support.size:
            raise InputError("traffic distribution: support and probabilities must be equal-length, non-empty")
        if (self.support <= 0).any() or not np.isfinite(self.support).all():
            raise InputError("traffic distribution: users/s values must be finite and > 0")
        if (self.probabilities < 0).any() or not np.isclose(self.probabilities.sum(), 1.0):
            raise InputError("traffic distribution: probabilities must be >= 0 and sum to 1")

    @property
    def mean(self) -> float:
        return float(self.support @ self.probabilities)

    def degradation_weights(self) -> np.ndarray:
        """Weights of eq. (1): each users/s value counts in proportion to x * p(x)."""
        weights = self.support * self.probabilities
        return weights / weights.sum()

    def sample(self, seconds: int, rng: np.random.Generator) -> np.ndarray:
        """A per-second users/s series of length ``seconds`` drawn from this distribution."""
        return rng.choice(self.support, size=seconds, p=self.probabilities)


def constant(users: float) -> TrafficDistribution:
    """Constant traffic of ``users`` users/s."""
    return TrafficDistribution(np.array([float(users)]), np.array([1.0]))


def truncated_normal(mean: float, std: float, low: float, high: float, points: int = 21,
                     whole_users: bool = False) -> TrafficDistribution:
    """A normal(mean, std) truncated to [low, high], discretized.

    By default into ``points`` equal-width bins, each represented by its midpoint and carrying the
    bin's probability mass. With ``whole_users`` the support is the whole numbers in [low, high], each
    carrying the mass that rounds to it: the distribution of the user counts a testbed realizes.
    """
    if not 0 < low < high:
        raise InputError(f"truncated normal: need 0 < low < high, got low={low}, high={high}")
    if std <= 0:
        raise InputError(f"truncated normal: std must be > 0, got {std}")
    if whole_users:
        support = np.arange(max(1, np.ceil(low - 0.5)), np.floor(high + 0.5) + 1)
        if support.size == 0:
            raise InputError(f"truncated normal: no whole number of users in [{low}, {high}]; "
                             "widen the interval or set whole_users: false")
        edges = np.clip(np.append(support - 0.5, support[-1] + 0.5), low, high)
    else:
        edges = np.linspace(low, high, points + 1)
        support = (edges[:-1] + edges[1:]) / 2
    mass = np.diff(stats.norm.cdf(edges, loc=mean, scale=std))
    if mass.sum() <= 1e-12:
        raise InputError(f"truncated normal: no probability mass in [{low}, {high}] for mean={mean}, std={std}")
    keep = mass > 0
    return TrafficDistribution(support[keep].astype(float), mass[keep] / mass.sum())


def trace(values: np.ndarray) -> TrafficDistribution:
    """The empirical distribution of a per-second users/s trace (each second weighs the same)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise InputError("traffic trace is empty")
    if (values <= 0).any() or not np.isfinite(values).all():
        raise InputError("traffic trace: every users/s value must be finite and > 0")
    support, counts = np.unique(values, return_counts=True)
    return TrafficDistribution(support, counts / counts.sum())


def dynamic_traffic(sigma_mean: float, sigma_max: float, centres: tuple[float, ...] = (1, 2, 3, 4, 5),
                    low: float = 1.0, high: float = 5.0,
                    points: int = 21) -> list[tuple[float, float, TrafficDistribution]]:
    """MicroOpt's dataset slice traffic distributions (Sec. VI-A3): (centre, std, distribution) triples.

    A truncated normal on [``low``, ``high``] users/s centred at each of ``centres`` with std
    ``sigma_mean`` and with std ``sigma_max`` (ten distributions by default): the mean and the maximum
    spread of real cell traffic (see ``collectors.milan.traffic_variation``).
    """
    if not 0 < sigma_mean <= sigma_max:
        raise InputError(f"dynamic traffic: need 0 < sigma_mean <= sigma_max, got {sigma_mean}, {sigma_max}")
    return [(float(centre), float(std), truncated_normal(centre, std, low, high, points))
            for std in (sigma_mean, sigma_max) for centre in centres]
