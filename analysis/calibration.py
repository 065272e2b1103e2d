"""Calibration of a Gaussian slice model: interval coverage, the probability integral transform, and a
post-hoc factor on sigma fitted on held-out groups."""

from __future__ import annotations

import numpy as np
from scipy import special

from core.errors import InputError

COVERAGE_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
"""Central prediction intervals whose empirical coverage is reported."""
FIT_LEVELS: tuple[float, ...] = (0.8, 0.9)
"""Interval levels the sigma factor is fitted to."""
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
    """The factor on sigma that makes the ``FIT_LEVELS`` intervals cover as they should on held-out rows.

    For each level the factor that gives exact coverage is the level's quantile of |z| over the interval's
    half-width; the result is their geometric mean (a conformal scale fitted at 80 and 90 %).
    """
    magnitude = np.abs(np.asarray(z, np.float64))
    factors = [np.quantile(magnitude, level) / _half_width(level) for level in FIT_LEVELS]
    return float(np.exp(np.mean(np.log(factors))))


def _half_width(level: float) -> float:
    return float(special.ndtri(0.5 + level / 2))
