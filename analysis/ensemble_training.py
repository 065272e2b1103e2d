"""Training the ensemble slice model: every fold's ensemble, the row split's and the final one in one program.

Each role's rows are pooled by grid point: the Gaussian NLL of a point's rows under one prediction depends
on them only through their count, mean and variance,

    sum_i nll(y_i) = n (log sigma + log(2 pi) / 2) + (n (mean - mu)^2 + n var) / (2 sigma^2),

so full-batch training on cells is exact and, on the MicroOpt data (about 60 rows per grid point), some
sixty times cheaper than on rows. Each role (a grouped fold's model, the row split's model, the final
model) is a block of ``members`` networks in one stacked :class:`EnsembleModel` whose loss sees only its
rows' statistics; members are independent (Adam's state is per weight), so one backward pass trains them all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from analysis.ensemble_model import EnsembleConfig, EnsembleModel
from analysis.model_base import ModelSupport, TargetScale
from collectors.dataset import FEATURES, TARGET
from core.errors import InputError

HISTORY_EVERY = 50
"""Steps between two entries of the loss history."""


@dataclass(frozen=True)
class Role:
    """A block of members trained on the rows in ``rows`` (a boolean mask over the frame's rows)."""

    name: str
    rows: np.ndarray
    scale: TargetScale


@dataclass(frozen=True)
class PointStatistics:
    """Each role's rows pooled by grid point: counts, means and variances of shape (roles, points)."""

    inputs: torch.Tensor  # (P, 3), the distinct grid points
    count: torch.Tensor
    mean: torch.Tensor
    variance: torch.Tensor  # population variance

    @classmethod
    def of(cls, frame: pd.DataFrame, roles: list[Role], device: torch.device | str) -> PointStatistics:
        """Pool ``frame``'s rows by grid point, once per role (rows outside a role count zero)."""
        point = frame.groupby(list(FEATURES), sort=True).ngroup().to_numpy()
        n_points = int(point.max()) + 1
        inputs = np.zeros((n_points, len(FEATURES)))
        inputs[point] = frame.loc[:, list(FEATURES)].to_numpy(np.float64)
        qos = frame[TARGET].to_numpy(np.float64)
        count, total, squares = (np.stack([np.bincount(point[role.rows], None if values is None else values[role.rows],
                                                       minlength=n_points) for role in roles])
                                 for values in (None, qos, qos**2))
        seen = np.maximum(count, 1.0)
        mean = total / seen
        variance = np.maximum(squares / seen - mean**2, 0.0)

        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.tensor(np.asarray(values, np.float32), device=device)

        return cls(tensor(inputs), tensor(count), tensor(mean), tensor(variance))


def fit_ensembles(frame: pd.DataFrame, roles: list[Role], config: EnsembleConfig,
                  support: ModelSupport, higher_is_better: bool, epochs: int, learning_rate: float, seed: int,
                  device: torch.device | str, warm_start: EnsembleModel | None,
                  after_step: Callable[[float], None]) -> tuple[dict[str, EnsembleModel], list[dict[str, float]]]:
    """Train one ensemble per role in one batched program; returns them by role name and the loss history.

    With ``warm_start``, the role named ``final`` starts from its weights and keeps its input and QoS
    normalization; the other roles start fresh, so validation never sees rows through a previous model.
    """
    generator = torch.Generator().manual_seed(seed)
    members = config.members
    bank_config = dataclasses.replace(config, members=members * len(roles))
    bank = EnsembleModel(bank_config, roles[-1].scale, support, higher_is_better, generator=generator).to(device)
    with torch.no_grad():
        for index, role in enumerate(roles):
            block = slice(index * members, (index + 1) * members)
            bank.member_low[block] = role.scale.low
            bank.member_span[block] = role.scale.span
            if warm_start is not None and role.name == "final":
                _copy_members(warm_start, bank, block)
    points = PointStatistics.of(frame, roles, device)
    weights = (points.count / points.count.sum(1, keepdim=True)).repeat_interleave(members, 0)  # (N, P)
    target_mean = points.mean.repeat_interleave(members, 0)
    target_variance = points.variance.repeat_interleave(members, 0)
    optimizer = torch.optim.Adam(bank.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    final_block = slice((len(roles) - 1) * members, len(roles) * members)
    history: list[dict[str, float]] = []
    bank.train()
    for step in range(1, epochs + 1):
        mean, std = bank.member_outputs(points.inputs)  # (N, P), Mbps
        per_row = (torch.log(std / bank.member_span) + 0.5 * math.log(2 * math.pi)
                   + ((target_mean - mean).square() + target_variance) / (2 * std.square()))  # a point's mean NLL
        losses = (per_row * weights).sum(1)  # (N,)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        schedule.step()
        final_loss = float(losses[final_block].detach().mean())
        if step % HISTORY_EVERY == 0 or step == epochs:
            history.append({"epoch": float(step), "train_nll_normalized": final_loss})
        after_step(final_loss)
    bank.eval()
    models = {}
    for index, role in enumerate(roles):
        indices = torch.arange(index * members, (index + 1) * members, device=bank.input_low.device)
        models[role.name] = bank.select(indices, role.scale)
    return models, history


def _copy_members(source: EnsembleModel, bank: EnsembleModel, block: slice) -> None:
    """Copy ``source``'s member weights and normalizations into ``bank``'s members ``block``."""
    if source.config != dataclasses.replace(bank.config, members=block.stop - block.start):
        raise InputError(f"cannot warm-start from a model of another shape ({source.config}; training "
                         f"{bank.config.width} x {bank.config.depth}, {block.stop - block.start} members)")
    bank.input_low.copy_(source.input_low)
    bank.input_span.copy_(source.input_span)
    for target, value in zip(bank.parameters(), source.parameters(), strict=True):
        target[block] = value.detach().to(target.device)
