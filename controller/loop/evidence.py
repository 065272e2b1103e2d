"""Measured degradation (MicroOpt eq. 1) and the statistical evidence that it exceeds a bound.

A validation window gives, for each second t, the users x_t and whether their QoS was degraded,
d_t = 1[q_t <= q_thresh] (q_t >= q_thresh for a lower-is-better QoS such as delay).
Eq. (1) weighs each second by its users: beta = sum x_t d_t / sum x_t.

Whether beta exceeds a bound b is the one-sided test of H0: beta <= b. Under H0, with independent seconds, the
user-weighted mean of the d_t has variance b (1 - b) / n_eff, where n_eff = (sum x)^2 / sum x^2 is Kish's
effective sample size (the number of seconds when the users are constant). Consecutive seconds are correlated
(queues, sessions), so n_eff is shrunk by the AR(1) variance factor (1 - rho) / (1 + rho), rho the lag-1
autocorrelation of the d_t (clipped to [0, 0.9]). The p-value is the binomial upper tail P(K >= beta n_eff)
for K ~ Binomial(n_eff, b), continued to non-integer counts by the regularized incomplete beta function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import betainc

from core.slice_types import degraded

MAX_AUTOCORRELATION = 0.9


@dataclass(frozen=True)
class Evidence:
    """The measured degradation of some seconds against a bound, and the p-value of ``degradation <= bound``."""

    degradation: float
    bound: float
    seconds: int
    effective_seconds: float
    p_value: float

    def exceeds(self, alpha: float) -> bool:
        """Whether the seconds show, at level ``alpha``, that the degradation is above the bound."""
        return self.degradation > self.bound and self.p_value < alpha


def degradation_evidence(users: ArrayLike, degraded: ArrayLike, bound: float) -> Evidence:
    """Eq. (1) over seconds with ``users`` users each, ``degraded`` telling which seconds were, tested against
    ``bound`` (see the module docstring)."""
    weights = np.asarray(users, dtype=float)
    outcomes = np.asarray(degraded, dtype=float)
    total = weights.sum()
    if weights.size == 0 or total <= 0:
        return Evidence(float("nan"), bound, int(weights.size), 0.0, 1.0)
    degradation = float(weights @ outcomes / total)
    effective = float(total**2 / (weights**2).sum()) * _correlation_factor(outcomes)
    return Evidence(degradation, bound, int(weights.size), effective, _upper_tail(degradation, effective, bound))


def window_evidence(samples: pd.DataFrame, q_thresh: float, bound: float, *,
                    higher_is_better: bool = True) -> Evidence:
    """:func:`degradation_evidence` of one slice's per-second samples (``n_users``, ``qos``)."""
    return degradation_evidence(samples["n_users"].to_numpy(), degraded(samples["qos"], q_thresh, higher_is_better),
                                bound)


def achieved_degradation(samples: pd.DataFrame, q_thresh: float, *, higher_is_better: bool = True) -> float:
    """Eq. (1) on measurements: the users-weighted share of seconds whose per-user QoS missed q_thresh."""
    return window_evidence(samples, q_thresh, bound=1.0, higher_is_better=higher_is_better).degradation


def _correlation_factor(outcomes: np.ndarray) -> float:
    """(1 - rho) / (1 + rho) for the lag-1 autocorrelation rho of ``outcomes`` (1 when it is undefined)."""
    if outcomes.size < 3 or outcomes.std() == 0:
        return 1.0
    centred = outcomes - outcomes.mean()
    rho = float((centred[1:] @ centred[:-1]) / (centred @ centred))
    rho = min(max(rho, 0.0), MAX_AUTOCORRELATION)
    return (1 - rho) / (1 + rho)


def _upper_tail(degradation: float, effective: float, bound: float) -> float:
    """P(K >= degradation * effective) for K ~ Binomial(effective, bound), continued to real counts."""
    successes = degradation * effective
    if successes <= 0 or bound >= 1:
        return 1.0
    if bound <= 0:
        return 0.0
    return float(betainc(successes, effective - successes + 1, bound))
