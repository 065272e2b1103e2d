"""A small Bayesian neural network (mean-field Gaussian weights, Bayes by backprop) of a [0, 1] function.

Atlas learns the QoS-degradation function of a slice with such a network and explores with Thompson
sampling: one draw of the weights is one plausible degradation function. Inputs are allocations scaled
to [0, 1] per resource; the output is a probability (sigmoid).

Each observation is a degradation: the share of an interval's slots whose QoS fell below the threshold,
so it stands for ``slots`` Bernoulli outcomes (a binomial likelihood). The loss is the standard Bayes by
backprop objective per outcome, the mean negative log-likelihood plus the KL term scaled by the dataset
size (observations x slots), so the posterior contracts as data accumulates instead of being held at the
prior by a KL term that outweighs a few hundred soft targets.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch.nn import functional


class BayesianMLP(torch.nn.Module):
    """Fully connected ReLU network whose weights are independent Gaussians N(mu, softplus(rho)^2)."""

    def __init__(self, inputs: int, hidden: int, layers: int, prior_std: float, generator: torch.Generator) -> None:
        super().__init__()
        sizes = [inputs] + [hidden] * layers + [1]
        self.means = torch.nn.ParameterList()
        self.scales = torch.nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1 / math.sqrt(fan_in)
            weight = (torch.rand(fan_in + 1, fan_out, generator=generator) * 2 - 1) * bound  # last row: bias
            self.means.append(torch.nn.Parameter(weight))
            self.scales.append(torch.nn.Parameter(torch.full((fan_in + 1, fan_out), -5.0)))
        self.prior_std = prior_std
        self.generator = generator

    def sample_weights(self, draws: int) -> list[torch.Tensor]:
        """``draws`` weight samples per layer, each (draws, fan_in + 1, fan_out); differentiable in mu and rho."""
        samples = []
        for mean, scale in zip(self.means, self.scales, strict=True):
            noise = torch.randn((draws, *mean.shape), generator=self.generator).to(mean.device)
            samples.append(mean + functional.softplus(scale) * noise)
        return samples

    @staticmethod
    def logits(inputs: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        """Output logits (draws, N) of inputs (N, D) under sampled weights."""
        hidden = inputs.expand(weights[0].shape[0], *inputs.shape)
        for index, weight in enumerate(weights):
            hidden = torch.baddbmm(weight[:, -1:, :], hidden, weight[:, :-1, :])
            if index < len(weights) - 1:
                hidden = torch.relu(hidden)
        return hidden[..., 0]

    def kl_divergence(self) -> torch.Tensor:
        """KL(q(w) || N(0, prior_std^2)) summed over every weight."""
        total = torch.zeros(())
        for mean, scale in zip(self.means, self.scales, strict=True):
            std = functional.softplus(scale)
            total = total + (torch.log(self.prior_std / std)
                             + (std**2 + mean**2) / (2 * self.prior_std**2) - 0.5).sum()
        return total

    def fit(self, inputs: torch.Tensor, targets: torch.Tensor, epochs: int, lr: float, slots: int,
            draws: int = 4) -> None:
        """Maximize the ELBO for ``epochs`` full-batch Adam steps: each target is the observed share of
        ``slots`` Bernoulli outcomes, and the KL term is scaled by the dataset size (targets x slots)."""
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        dataset_size = len(targets) * slots
        for _ in range(epochs):
            logits = self.logits(inputs, self.sample_weights(draws))
            likelihood = functional.binary_cross_entropy_with_logits(logits, targets.expand_as(logits))
            loss = likelihood + self.kl_divergence() / dataset_size
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def thompson_draws(self, inputs: torch.Tensor, draws: int) -> torch.Tensor:
        """``draws`` posterior draws of the function at ``inputs`` (N, D): probabilities (draws, N)."""
        return torch.sigmoid(self.logits(inputs, self.sample_weights(draws)))
