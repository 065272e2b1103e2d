"""Goodness-of-fit of a slice model on a QoS dataset: likelihood, errors and interval coverage."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from analysis.calibration import coverage, z_scores
from analysis.model_base import SliceModel
from collectors.dataset import TARGET, feature_matrix


@dataclass(frozen=True)
class FitMetrics:
    """Gaussian NLL (QoS in Mbps and min-max normalized by the training range), MAE and MSE (Mbps), and the
    share of rows inside the predicted 50/80/90/95 % central intervals."""

    n: int
    nll: float
    nll_normalized: float
    mae: float
    mse: float
    coverage_50: float
    coverage_80: float
    coverage_90: float
    coverage_95: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def fit_metrics(qos: np.ndarray, mean: np.ndarray, std: np.ndarray, span: float | np.ndarray) -> FitMetrics:
    """Fit metrics of Gaussian predictions (mean, std in Mbps) of ``qos``; ``span`` is the QoS normalization
    (one, or one per row when the rows come from models normalized differently)."""
    qos, mean, std = (np.asarray(values, np.float64) for values in (qos, mean, std))
    z = z_scores(qos, mean, std)
    nll = float(np.mean(0.5 * math.log(2 * math.pi) + np.log(std) + 0.5 * z**2))
    error = mean - qos
    covered = coverage(z)
    return FitMetrics(
        n=int(qos.size), nll=nll, nll_normalized=nll - float(np.mean(np.log(span))), mae=float(np.mean(np.abs(error))),
        mse=float(np.mean(error**2)), coverage_50=covered["50"], coverage_80=covered["80"],
        coverage_90=covered["90"], coverage_95=covered["95"],
    )


def tensors(frame: pd.DataFrame, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs and QoS targets of a dataset as float32 tensors."""
    inputs = torch.tensor(feature_matrix(frame), device=device)
    target = torch.tensor(frame[TARGET].to_numpy(dtype=np.float32), device=device)
    return inputs, target


@torch.no_grad()
def predict(model: SliceModel, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The model's mean and standard deviation (Mbps) for every row of ``frame`` (model left in eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    mean, std = model(tensors(frame, device)[0])
    return mean.double().cpu().numpy(), std.double().cpu().numpy()


def evaluate(model: SliceModel, frame: pd.DataFrame) -> FitMetrics:
    """Fit metrics of ``model`` on every row of ``frame`` (the model is left in eval mode)."""
    mean, std = predict(model, frame)
    return fit_metrics(frame[TARGET].to_numpy(np.float64), mean, std, model.scale.span)


@torch.no_grad()
def metrics_from_tensors(model: SliceModel, inputs: torch.Tensor, target: torch.Tensor) -> FitMetrics:
    """Fit metrics on prepared tensors (used inside the training loop)."""
    mean, std = model(inputs)
    return fit_metrics(target.double().cpu().numpy(), mean.double().cpu().numpy(), std.double().cpu().numpy(),
                       model.scale.span)
