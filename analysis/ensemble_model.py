"""A deep ensemble slice model (``--arch ensemble``): members as stacked weights, evaluated as batched matmuls.

Each of the ``members`` networks has a mean network and a standard-deviation network; their weights are
stacked on a leading member axis, so the whole ensemble (and, in training, every cross-validation fold's
ensemble at once) runs as a handful of batched matrix products. The prediction is the members' Gaussian
mixture summarized by its mean and variance: mean = avg(mu_m), var = avg(sigma_m^2 + mu_m^2) - mean^2, so the
spread between members (what the data does not pin down) adds to the noise each member learns.

Structure the physics guarantees:

- **monotone** (default): the QoS never gets worse with more CPU or more bandwidth. The mean network's
  weights on the CPU and bandwidth inputs and every later weight are non-negative (absolute values), and
  half of each layer's units use a convex activation (ReLU), half a concave one (-ReLU(-x)), which keeps
  the network monotone in those inputs yet able to bend both ways (Runje & Shankaranarayana, ICML 2023).
  "Better" follows ``higher_is_better``: for a lower-is-better QoS (delay) the network learns the mirrored
  target, so the predicted delay never grows with resources.
- **link bound** (default, throughput QoS only): the users share the slice's link, so the mean per-user
  throughput is at most bandwidth / users. The mean is a soft minimum of the network's value and
  e * bw / n_users, with a learnt efficiency e in (0, 1).

The standard-deviation networks see the inputs clamped to the training support: a ReLU network extrapolates
linearly, and a spread that shrinks off the data is exactly the overconfidence the ensemble is there to avoid.
Outside the support the members' disagreement still adds to it (and optimizers read ``support`` to refuse or
flag such points).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional

from analysis.model_base import SIGMA_FLOOR, ModelSupport, SliceModel, TargetScale, require_positive_integers
from collectors.dataset import FEATURES
from core.errors import InputError

MONOTONE_INPUTS = ("bw", "cpu")
"""Inputs the QoS improves with."""
SOFT_MIN_TEMPERATURE = 0.02
"""Temperature of the soft minimum with the link bound, in normalized QoS units."""
MONOTONE_INIT_GAIN = 0.1
"""Variance gain of the non-negative weights' initialization (sums of positive weights grow fast)."""


@dataclass(frozen=True)
class EnsembleConfig:
    """Shape of the ensemble slice model."""

    members: int = 5
    width: int = 32
    depth: int = 2
    """Hidden units and layers of each member's mean network."""
    monotone: bool = True
    link_bound: bool = True
    sigma_width: int = 32
    sigma_depth: int = 2
    """Hidden units and layers of each member's standard-deviation network."""

    def __post_init__(self) -> None:
        require_positive_integers(self, "members", "width", "depth", "sigma_width", "sigma_depth")
        if self.monotone and self.width < 2:
            raise InputError("a monotone model needs width >= 2 (half convex, half concave units)")


class StackedMLP(nn.Module):
    """``members`` multilayer perceptrons 3 -> width^depth -> 1 with weights stacked on a leading axis.

    With ``monotone`` set, the output is non-decreasing in the inputs flagged in ``monotone_inputs``.
    """

    monotone_inputs: torch.Tensor
    activation_low: torch.Tensor
    activation_high: torch.Tensor

    def __init__(self, members: int, width: int, depth: int, monotone: bool, monotone_inputs: torch.Tensor,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.monotone = monotone
        widths = [len(FEATURES)] + [width] * depth + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            gain = MONOTONE_INIT_GAIN if monotone and index > 0 else 2.0
            weight = torch.randn(members, fan_in, fan_out, generator=generator) * math.sqrt(gain / fan_in)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(members, 1, fan_out)))
        self.register_buffer("monotone_inputs", monotone_inputs.reshape(-1, 1).bool())
        # ReLU is a clamp to [0, inf); its point reflection -ReLU(-x) a clamp to (-inf, 0]
        convex = torch.arange(width) < (width // 2 if monotone else width)
        self.register_buffer("activation_low", torch.where(convex, 0.0, -math.inf))
        self.register_buffer("activation_high", torch.where(convex, math.inf, 0.0))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs (members, rows) for normalized inputs (rows, 3) shared by every member. In a monotone
        network the first half of each layer's units are ReLU (convex), the second half -ReLU(-x) (concave)."""
        hidden = inputs.expand(self.weights[0].shape[0], *inputs.shape)
        last = len(self.weights) - 1
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if self.monotone:
                weight = (torch.where(self.monotone_inputs, weight.abs(), weight) if index == 0
                          else weight.abs())
            hidden = torch.baddbmm(bias, hidden, weight)
            if index < last:
                hidden = torch.clamp(hidden, self.activation_low, self.activation_high)
        return hidden.squeeze(-1)


class EnsembleModel(SliceModel):
    """Deep ensemble of Gaussian networks; ``member_outputs`` gives each member, ``forward`` the mixture.

    Each member may carry its own QoS normalization (``member_low``, ``member_span``): training stacks the
    ensembles of every cross-validation fold, each normalized by its own training rows. A model loaded for
    use has one normalization, its ``scale``.
    """

    arch: ClassVar[str] = "ensemble"
    SHARED_STATE: ClassVar[tuple[str, ...]] = tuple(
        ["input_low", "input_span"] + [f"{net}.{name}" for net in ("mean_net", "std_net")
                                       for name in ("monotone_inputs", "activation_low", "activation_high")])
    """State entries common to all members; every other entry has the member axis first."""
    input_low: torch.Tensor
    input_span: torch.Tensor
    member_low: torch.Tensor
    member_span: torch.Tensor

    def __init__(self, config: EnsembleConfig, scale: TargetScale, support: ModelSupport,
                 higher_is_better: bool = True, sigma_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        if config.link_bound and not higher_is_better:
            raise InputError("the link bound (per-user throughput <= bandwidth / users) applies to a "
                             "higher-is-better QoS only; turn it off for a lower-is-better QoS")
        super().__init__(scale, support, higher_is_better, sigma_scale)
        self._config = config
        ranges = support.ranges()
        low = torch.tensor([ranges[name][0] for name in FEATURES])
        high = torch.tensor([ranges[name][1] for name in FEATURES])
        self.register_buffer("input_low", low)
        self.register_buffer("input_span", (high - low).clamp(min=1.0))
        self.register_buffer("member_low", torch.full((config.members, 1), scale.low))
        self.register_buffer("member_span", torch.full((config.members, 1), scale.span))
        monotone_inputs = torch.tensor([name in MONOTONE_INPUTS for name in FEATURES])
        self.mean_net = StackedMLP(config.members, config.width, config.depth, config.monotone, monotone_inputs,
                                   generator)
        self.std_net = StackedMLP(config.members, config.sigma_width, config.sigma_depth, False, monotone_inputs,
                                  generator)
        with torch.no_grad():
            self.std_net.biases[-1].fill_(-2.0)  # start with a spread of about 0.13 of the QoS range
        self.link_efficiency = nn.Parameter(torch.full((config.members, 1), 2.0))  # sigmoid(2) = 0.88

    @property
    def config(self) -> EnsembleConfig:
        return self._config

    def select(self, members: torch.Tensor, scale: TargetScale) -> EnsembleModel:
        """A new ensemble of the given members (indices), all normalized by ``scale``."""
        config = dataclasses.replace(self.config, members=int(members.numel()))
        chosen = EnsembleModel(config, scale, self.support, self.higher_is_better, self.sigma_scale)
        chosen.load_state_dict({key: value if key in self.SHARED_STATE else value[members]
                                for key, value in self.state_dict().items()})
        chosen.member_low.fill_(scale.low)
        chosen.member_span.fill_(scale.span)
        return chosen.to(self.input_low.device)

    def member_outputs(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's mean and standard deviation (Mbps), shape (members, rows), for inputs (rows, 3)."""
        normalized = (inputs - self.input_low) / self.input_span
        goodness = self.mean_net(normalized)
        if self.config.link_bound:
            users, bandwidth = inputs[:, FEATURES.index("n_users")], inputs[:, FEATURES.index("bw")]
            bound = torch.sigmoid(self.link_efficiency) * bandwidth / users.clamp(min=1e-6)
            bound = (bound - self.member_low) / self.member_span
            goodness = -SOFT_MIN_TEMPERATURE * torch.logaddexp(-goodness / SOFT_MIN_TEMPERATURE,
                                                               -bound / SOFT_MIN_TEMPERATURE)
        fraction = goodness if self.higher_is_better else 1.0 - goodness
        std = functional.softplus(self.std_net(normalized.clamp(0.0, 1.0))) + SIGMA_FLOOR
        return self.member_low + self.member_span * fraction, self.member_span * std

    def forward_normalized(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixture's mean and standard deviation (normalized QoS) for inputs of shape (..., 3)."""
        flat = inputs.reshape(-1, inputs.shape[-1])
        means, stds = self.member_outputs(flat)
        means = (means - self.scale.low) / self.scale.span
        stds = stds / self.scale.span
        mean = means.mean(0)
        variance = stds.square().mean(0) + (means - mean).square().mean(0)
        std = variance.sqrt() * self.sigma_scale
        shape = inputs.shape[:-1]
        return mean.reshape(shape), std.reshape(shape)
