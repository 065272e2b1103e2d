"""Traffic profiles as the optimizer sees them (eq. 1 weights) and as testbeds realize them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from controller.traffic import constant, trace, truncated_normal


def test_degradation_weights_are_users_times_probability() -> None:
    distribution = trace(np.array([1.0, 1.0, 3.0, 4.0]))
    np.testing.assert_allclose(distribution.support, [1, 3, 4])
    np.testing.assert_allclose(distribution.probabilities, [0.5, 0.25, 0.25])
    # eq. (1): x * p(x) / sum -> (0.5, 0.75, 1.0) / 2.25
    np.testing.assert_allclose(distribution.degradation_weights(), [0.5 / 2.25, 0.75 / 2.25, 1.0 / 2.25])


def test_constant_traffic_is_one_point() -> None:
    distribution = constant(3)
    assert distribution.mean == 3
    assert (distribution.sample(5, np.random.default_rng(0)) == 3).all()


def test_continuous_truncated_normal_matches_scipy_mean() -> None:
    distribution = truncated_normal(3.0, 1.5, 1.0, 5.0, points=201)
    expected = stats.truncnorm((1 - 3) / 1.5, (5 - 3) / 1.5, loc=3, scale=1.5).mean()
    assert distribution.probabilities.sum() == pytest.approx(1.0)
    assert distribution.mean == pytest.approx(expected, abs=1e-3)
    assert distribution.support.min() > 1.0 and distribution.support.max() < 5.0


def test_whole_user_truncated_normal_puts_rounded_mass_on_integers() -> None:
    distribution = truncated_normal(2.2, 0.5, 1.0, 5.0, whole_users=True)
    assert set(distribution.support) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    cdf = stats.norm(2.2, 0.5).cdf
    total = cdf(5.0) - cdf(1.0)
    two = dict(zip(distribution.support, distribution.probabilities, strict=True))[2.0]
    assert two == pytest.approx((cdf(2.5) - cdf(1.5)) / total)
    draws = distribution.sample(2000, np.random.default_rng(1))
    assert set(np.unique(draws)) <= set(distribution.support)
    assert draws.mean() == pytest.approx(distribution.mean, abs=0.05)
