"""Calibration of a Gaussian slice model: interval coverage, the probability integral transform, and a
post-hoc factor on sigma fitted on held-out groups."""

from __future__ import annotations

import numpy as np
from scipy import special

from core.errors import InputError

COVERAGE_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
"""Central prediction intervals whose empirical coverage is reported."""
FIT_LEVELS: tuple[float, ...] = (0.8, 0.9)
"""Interval levels whose coverage the sigma factor keeps near nominal."""
FIT_TOLERANCE = 0.02
"""How far from nominal the fitted factor lets the ``FIT_LEVELS`` coverage on the fitting rows be."""
MIN_CALIBRATION_GROUPS = 10
"""Held-out groups needed to fit the sigma factor. Rows of one group share the model's error at that
allocation, so the groups, not the rows, are the independent samples: with k groups the factor's relative
standard error is about 1 / sqrt(2 k), 22 % at 10 groups."""


def z_scores(qos: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Standardized residuals (qos - mean) / std."""
    return (np.asarray(qos, np.float64) - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)


def coverage(z: np.ndarray, levels: tuple[float, ...] = COVERAGE_LEVELS) -> dict[str, float]:
    """Share of rows inside each central interval mean +- Phi^-1((1 + level) / 2) * std, keyed ``"80"`` etc."""
    magnitude = np.abs(z)
    return {f"{round(level * 100)}": float(np.mean(magnitude <= _half_width(level))) for level in levels}


def pit(z: np.ndarray) -> np.ndarray:
    """Probability integral transform Phi(z): uniform on [0, 1] for a calibrated Gaussian model."""
    values: np.ndarray = special.ndtr(np.asarray(z, np.float64))
    return values


def require_calibration_groups(n_groups: int, source: str) -> None:
    """Refuse to calibrate on fewer than ``MIN_CALIBRATION_GROUPS`` held-out groups (``source`` names the data)."""
    if n_groups < MIN_CALIBRATION_GROUPS:
        raise InputError(f"{source}: calibrating sigma needs held-out data from at least {MIN_CALIBRATION_GROUPS} "
                         f"groups (allocations); these data have {n_groups}: measure more allocations or turn "
                         "calibration off (--no-calibrate)")


def fit_sigma_scale(z: np.ndarray) -> float:
    """The factor on sigma fitted on held-out standardized residuals ``z``: the likeliest (Gaussian NLL) among
    the factors that keep the ``FIT_LEVELS`` intervals' coverage within ``FIT_TOLERANCE`` of nominal.

    Residuals of real QoS are heavier-tailed than a Gaussian, so the likeliest factor alone over-covers
    the central intervals and the factor that makes them exact under-rates the tails; when no factor meets
    both levels, the one that makes them exact on average (the geometric mean of each level's conformal
    factor, quantile of |z| over the interval's half-width) is used.
    """
    magnitude = np.sort(np.abs(np.asarray(z, np.float64)))
    candidates = np.exp(np.linspace(np.log(0.2), np.log(5.0), 1601))
    feasible = np.ones(candidates.size, dtype=bool)
    for level in FIT_LEVELS:
        covered = np.searchsorted(magnitude, candidates * _half_width(level), side="right") / magnitude.size
        feasible &= np.abs(covered - level) <= FIT_TOLERANCE
    if not feasible.any():
        factors = [np.quantile(magnitude, level) / _half_width(level) for level in FIT_LEVELS]
        return float(np.exp(np.mean(np.log(factors))))
    likeliest = float(np.sqrt(np.mean(magnitude**2)))  # the Gaussian NLL's minimum; NLL is unimodal in the factor
    chosen = candidates[feasible]
    return float(chosen[np.argmin(np.abs(np.log(chosen / likeliest)))])


def _half_width(level: float) -> float:
    return float(special.ndtri(0.5 + level / 2))
