"""Goodness-of-fit of a slice model on a QoS dataset."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from analysis.slice_model import SliceModel
from collectors.dataset import TARGET, feature_matrix


@dataclass(frozen=True)
class FitMetrics:
    """Gaussian NLL (QoS in Mbps and min-max normalized by the training range), MAE and MSE (Mbps)."""

    n: int
    nll: float
    nll_normalized: float
    mae: float
    mse: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def tensors(frame: pd.DataFrame, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs and QoS targets of a dataset as float32 tensors."""
    inputs = torch.tensor(feature_matrix(frame), device=device)
    target = torch.tensor(frame[TARGET].to_numpy(dtype=np.float32), device=device)
    return inputs, target


@torch.no_grad()
def evaluate(model: SliceModel, frame: pd.DataFrame) -> FitMetrics:
    """Fit metrics of ``model`` on every row of ``frame`` (the model is left in eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    inputs, target = tensors(frame, device)
    return metrics_from_tensors(model, inputs, target)


@torch.no_grad()
def metrics_from_tensors(model: SliceModel, inputs: torch.Tensor, target: torch.Tensor) -> FitMetrics:
    """Fit metrics on prepared tensors (used inside the training loop)."""
    nll_normalized = model.gaussian_nll(inputs, target).mean().item()
    mean, _ = model(inputs)
    error = (mean - target).double()
    return FitMetrics(
        n=int(target.numel()),
        nll=nll_normalized + math.log(model.scale.span),
        nll_normalized=nll_normalized,
        mae=error.abs().mean().item(),
        mse=(error**2).mean().item(),
    )
