"""MicroOpt's slice model as the paper specifies it (``--arch paper``, Sec. VI-A1).

BatchNorm on the inputs, ``depth`` shared hidden layers of ``width`` units with ReLU, then a mean branch and
a standard-deviation branch of one hidden layer of ``head_width`` units each; the mean output is linear, the
standard deviation goes through Softplus. The forward pass is written with functional operations on the
modules' parameters (no module dispatch), which keeps single evaluations inside optimizers cheap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional

from analysis.model_base import SIGMA_FLOOR, ModelSupport, SliceModel, TargetScale, require_positive_integers
from collectors.dataset import FEATURES


@dataclass(frozen=True)
class PaperConfig:
    """Shape of the paper's slice model. The defaults are the paper's."""

    width: int = 16
    depth: int = 3
    head_width: int = 16

    def __post_init__(self) -> None:
        require_positive_integers(self, "width", "depth", "head_width")


class PaperModel(SliceModel):
    """Gaussian slice model of MicroOpt, inputs ordered as ``FEATURES``."""

    arch: ClassVar[str] = "paper"

    def __init__(self, config: PaperConfig, scale: TargetScale, support: ModelSupport,
                 higher_is_better: bool = True, sigma_scale: float = 1.0) -> None:
        super().__init__(scale, support, higher_is_better, sigma_scale)
        self._config = config
        self.norm = nn.BatchNorm1d(len(FEATURES))
        widths = [len(FEATURES)] + [config.width] * config.depth
        self.shared = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.mean_hidden = nn.Linear(config.width, config.head_width)
        self.mean_out = nn.Linear(config.head_width, 1)
        self.std_hidden = nn.Linear(config.width, config.head_width)
        self.std_out = nn.Linear(config.head_width, 1)

    @property
    def config(self) -> PaperConfig:
        return self._config

    def forward_normalized(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the normalized QoS for inputs of shape (..., 3)."""
        flat = inputs.reshape(-1, inputs.shape[-1])
        norm = self.norm
        hidden = functional.batch_norm(flat, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                       self.training, norm.momentum or 0.0, norm.eps)
        for layer in self.shared:
            assert isinstance(layer, nn.Linear)
            hidden = torch.relu(torch.addmm(layer.bias, hidden, layer.weight.T))
        mean_hidden = torch.relu(torch.addmm(self.mean_hidden.bias, hidden, self.mean_hidden.weight.T))
        mean = torch.addmm(self.mean_out.bias, mean_hidden, self.mean_out.weight.T).squeeze(-1)
        std_hidden = torch.relu(torch.addmm(self.std_hidden.bias, hidden, self.std_hidden.weight.T))
        std = functional.softplus(torch.addmm(self.std_out.bias, std_hidden, self.std_out.weight.T).squeeze(-1))
        std = (std + SIGMA_FLOOR) * self.sigma_scale
        shape = inputs.shape[:-1]
        return mean.reshape(shape), std.reshape(shape)
