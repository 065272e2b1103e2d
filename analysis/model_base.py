"""What every slice model shares: the QoS normalization, the training data's support and the Gaussian output.

A slice model maps inputs (n_users, bw, cpu) (``FEATURES`` order) to a Gaussian QoS distribution: ``forward``
returns its mean and standard deviation in the dataset's unit (Mbps for throughput). Internally the QoS is
min-max normalized by the training range (:class:`TargetScale`). Every model records the range of the data it
was trained on (:class:`ModelSupport`) so an optimizer can refuse or flag allocations outside it, whether
higher QoS is better (throughput) or worse (delay), and a post-hoc factor on its standard deviation fitted on
held-out groups (``sigma_scale``, 1 when uncalibrated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from collectors.dataset import FEATURES
from core.errors import InputError

SIGMA_FLOOR = 1e-4
"""Smallest standard deviation, in normalized QoS units, so the likelihood stays finite."""
MAX_GRID_POINTS = 4096
"""Training data with at most this many distinct (n_users, bw, cpu) points records them as its grid."""


@dataclass(frozen=True)
class TargetScale:
    """Min-max normalization of the QoS target, fixed at training time."""

    low: float
    high: float

    @property
    def span(self) -> float:
        return max(self.high - self.low, 1e-9)

    @classmethod
    def of(cls, qos: pd.Series | np.ndarray) -> TargetScale:
        """The range of measured QoS values."""
        values = np.asarray(qos, dtype=np.float64)
        return cls(float(values.min()), float(values.max()))


Range = tuple[float, float]


def require_positive_integers(config: object, *names: str) -> None:
    """Raise InputError naming the first of ``config``'s fields ``names`` that is not a positive integer."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"model {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ModelSupport:
    """The inputs a model was trained on: each feature's range and, for grid-like data, its distinct points.

    ``grid`` holds the measured (n_users, bw, cpu) points (``FEATURES`` order, sorted) when the data has at
    most ``MAX_GRID_POINTS`` of them, else ``None``.
    """

    users: Range
    bandwidth: Range
    cpu: Range
    grid: tuple[tuple[float, float, float], ...] | None = None

    @classmethod
    def of(cls, frame: pd.DataFrame) -> ModelSupport:
        """The support of a MicroOpt-format frame."""
        points = frame.loc[:, list(FEATURES)].drop_duplicates().sort_values(list(FEATURES))
        grid = (tuple((float(u), float(b), float(c)) for u, b, c in points.itertuples(index=False))
                if len(points) <= MAX_GRID_POINTS else None)
        return cls(_range(frame["n_users"]), _range(frame["bw"]), _range(frame["cpu"]), grid)

    def ranges(self) -> dict[str, Range]:
        """Each input's (low, high), keyed by its ``FEATURES`` name."""
        return {"n_users": self.users, "bw": self.bandwidth, "cpu": self.cpu}

    def contains(self, inputs: torch.Tensor) -> torch.Tensor:
        """For inputs (..., 3) in ``FEATURES`` order, whether each lies inside every feature's range (...)."""
        low = torch.tensor([r[0] for r in self.ranges().values()], dtype=inputs.dtype, device=inputs.device)
        high = torch.tensor([r[1] for r in self.ranges().values()], dtype=inputs.dtype, device=inputs.device)
        return ((inputs >= low) & (inputs <= high)).all(-1)

    def as_dict(self) -> dict[str, Any]:
        return {"users": list(self.users), "bandwidth": list(self.bandwidth), "cpu": list(self.cpu),
                "grid": [list(point) for point in self.grid] if self.grid is not None else None}

    @classmethod
    def from_dict(cls, document: Any) -> ModelSupport:
        """Read :meth:`as_dict`'s output; raises ValueError when it is not a valid support."""
        if not isinstance(document, dict):
            raise ValueError("not a mapping")
        users, bandwidth, cpu = (_checked_range(document.get(name), name) for name in ("users", "bandwidth", "cpu"))
        points = document.get("grid")
        if points is None:
            return cls(users, bandwidth, cpu)
        if not isinstance(points, list) or not all(_finite_numbers(point, 3) for point in points):
            raise ValueError("grid is not a list of (n_users, bw, cpu) points")
        return cls(users, bandwidth, cpu, tuple((float(u), float(b), float(c)) for u, b, c in points))


def _range(values: pd.Series) -> Range:
    return float(values.min()), float(values.max())


def _finite_numbers(values: Any, count: int) -> bool:
    return (isinstance(values, Sequence) and len(values) == count
            and all(isinstance(v, int | float) and math.isfinite(v) for v in values))


def _checked_range(values: Any, name: str) -> Range:
    if not _finite_numbers(values, 2) or values[0] > values[1]:
        raise ValueError(f"{name} range {values!r} is not a finite [low, high]")
    return float(values[0]), float(values[1])


class SliceModel(nn.Module):
    """Gaussian slice model f_QoS(x, r) -> (mu, sigma); subclasses implement :meth:`forward_normalized`."""

    arch: ClassVar[str]
    """The architecture's name, as ``--arch`` and the checkpoint spell it."""

    def __init__(self, scale: TargetScale, support: ModelSupport, higher_is_better: bool = True,
                 sigma_scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.support = support
        self.higher_is_better = higher_is_better
        self.sigma_scale = sigma_scale

    @property
    def config(self) -> Any:
        """The architecture's shape (a frozen dataclass)."""
        raise NotImplementedError

    def forward_normalized(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the normalized QoS for inputs of shape (..., 3)."""
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the QoS in Mbps for inputs (n_users, bw, cpu) of shape (..., 3)."""
        mean, std = self.forward_normalized(inputs)
        return mean * self.scale.span + self.scale.low, std * self.scale.span

    def gaussian_nll(self, inputs: torch.Tensor, qos: torch.Tensor) -> torch.Tensor:
        """Per-sample Gaussian negative log-likelihood of ``qos`` (Mbps), on the normalized target."""
        mean, std = self.forward_normalized(inputs)
        target = (qos - self.scale.low) / self.scale.span
        return 0.5 * math.log(2 * math.pi) + torch.log(std) + 0.5 * ((target - mean) / std) ** 2
