"""Whether an allocation or a traffic lies outside the range of a slice model's training data.

A slice model answers with confidence only inside the data it was trained on (``SliceModel.support``): an
allocation or a number of users beyond the measured range is an extrapolation.
"""

from __future__ import annotations

import numpy as np

from analysis.slice_model import ModelSupport


def narrowed(lower: tuple[float, float], upper: tuple[float, float],
             support: ModelSupport) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Bounds (lower and upper corners, ``RESOURCES`` order) cut to the training data; None when none of them
    is inside it."""
    low = (max(lower[0], support.cpu[0]), max(lower[1], support.bandwidth[0]))
    high = (min(upper[0], support.cpu[1]), min(upper[1], support.bandwidth[1]))
    if low[0] > high[0] or low[1] > high[1]:
        return None
    return low, high


def outside_data(support: ModelSupport, allocation: np.ndarray, users: np.ndarray) -> bool:
    """Whether an allocation (2,) in ``RESOURCES`` order, or any of the users/s values, lies outside the data."""
    cpu, bandwidth = (float(value) for value in np.asarray(allocation, dtype=np.float64))
    inside = (support.cpu[0] <= cpu <= support.cpu[1] and support.bandwidth[0] <= bandwidth <= support.bandwidth[1]
              and support.users[0] <= float(np.min(users)) and float(np.max(users)) <= support.users[1])
    return not inside


def data_bounds(support: ModelSupport) -> tuple[tuple[float, float], tuple[float, float]]:
    """The training data's allocation box: (lower, upper) corners in ``RESOURCES`` order."""
    return (support.cpu[0], support.bandwidth[0]), (support.cpu[1], support.bandwidth[1])
