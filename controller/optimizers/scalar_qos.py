"""The ablation's view of the slice model: a scalar QoS mu - k * sigma instead of a distribution.

MicroOpt-0sigma (k = 0, the mean) and MicroOpt-2sigma (k = 2) of the paper's Sec. VI-C optimize as if
the QoS were this single value: its degradation indicator becomes a step (a near-zero std), so the
optimizer ignores the spread of the QoS. Their answers are then judged on the real distribution.
"""

from __future__ import annotations

import torch

from controller.problem import ProblemTensors

POINT_STD_MBPS = 1e-4
"""Std standing for 'no spread': the normal CDF of eq. (1) becomes a step at the scalar QoS."""


class ScalarQoSTensors(ProblemTensors):
    """ProblemTensors whose QoS is the point mu - ``sigmas`` * sigma (set ``sigmas`` after ``build``)."""

    sigmas: float = 0.0

    def qos_distribution(self, allocation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The scalar QoS as a (near-)degenerate distribution: mean mu - k sigma (mu + k sigma for a
        lower-is-better QoS), std ``POINT_STD_MBPS``."""
        mean, std = super().qos_distribution(allocation)
        return mean - self.sigmas * self.direction[:, None] * std, torch.full_like(std, POINT_STD_MBPS)


def scalar_tensors(tensors: ProblemTensors, sigmas: float) -> ScalarQoSTensors:
    """A scalar-QoS view sharing ``tensors``' constants."""
    view = ScalarQoSTensors.__new__(ScalarQoSTensors)
    view.__dict__.update(tensors.__dict__)
    view.sigmas = sigmas
    return view
