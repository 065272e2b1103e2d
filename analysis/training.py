"""Training the slice model: seeded split, Gaussian NLL, the paper's learning-rate schedule."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from analysis.evaluation import FitMetrics, metrics_from_tensors, tensors
from analysis.slice_model import ModelConfig, SliceModel, TargetScale, save_model
from collectors.dataset import TARGET
from core.errors import InputError
from core.runstore import write_json_atomic

ProgressCallback = Callable[[int, int, float], None]
"""Called as ``progress(epoch, epochs, train_loss)`` after each epoch."""


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters. The defaults are the paper's: 3,000 epochs, lr 1e-3 then 1e-4 from the middle."""

    epochs: int = 3000
    learning_rate: float = 1e-3
    lr_drop_epoch: int | None = None
    """Epoch after which the learning rate is divided by ten; ``None`` is half of ``epochs``."""
    batch_size: int = 4096
    validation_fraction: float = 0.2
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise InputError(f"validation fraction must be in [0, 1), got {self.validation_fraction}")
        if self.batch_size < 2:
            raise InputError(f"batch size must be >= 2 (BatchNorm needs two samples), got {self.batch_size}")
        if self.learning_rate <= 0:
            raise InputError(f"learning rate must be > 0, got {self.learning_rate}")

    @property
    def drop_epoch(self) -> int:
        return self.lr_drop_epoch if self.lr_drop_epoch is not None else self.epochs // 2


@dataclass(frozen=True)
class Split:
    """A train/validation split of the training rows, recorded so it can be reproduced."""

    strategy: str
    seed: int | None
    validation_fraction: float
    train_rows: np.ndarray
    validation_rows: np.ndarray

    def describe(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "validation_fraction": self.validation_fraction,
            "n_train": int(self.train_rows.size),
            "n_validation": int(self.validation_rows.size),
        }


@dataclass
class TrainingResult:
    """A trained model with its split, per-split metrics, loss history and wall time."""

    model: SliceModel
    split: Split
    train_metrics: FitMetrics
    validation_metrics: FitMetrics | None
    history: list[dict[str, float]]
    seconds: float
    config: TrainingConfig

    def metrics_document(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return {
            "train": self.train_metrics.as_dict(),
            "validation": self.validation_metrics.as_dict() if self.validation_metrics else None,
            "split": self.split.describe(),
            "training": {**asdict(self.config), "model": asdict(self.model.config), "seconds": round(self.seconds, 3)},
            "target_scale": {"low": self.model.scale.low, "high": self.model.scale.high},
        }


def split_rows(n_rows: int, validation_fraction: float, seed: int) -> Split:
    """Seeded random split of ``n_rows`` rows into train and validation."""
    order = np.random.default_rng(seed).permutation(n_rows)
    n_validation = round(n_rows * validation_fraction)
    return _checked(Split("seeded random permutation of rows", seed, validation_fraction,
                          np.sort(order[n_validation:]), np.sort(order[:n_validation])))


def split_by_flag(holdout: np.ndarray, validation_fraction: float) -> Split:
    """Split by a per-row holdout flag fixed when each sample was collected: a sample stays on its side
    as data accumulates, so later rounds never validate on rows earlier rounds trained on."""
    holdout = np.asarray(holdout, dtype=bool)
    return _checked(Split("holdout flag drawn per sample when it was collected", None, validation_fraction,
                          np.flatnonzero(~holdout), np.flatnonzero(holdout)))


def _checked(split: Split) -> Split:
    if split.train_rows.size < 2:
        total = split.train_rows.size + split.validation_rows.size
        raise InputError(f"too few rows to train on: {total} rows with validation fraction "
                         f"{split.validation_fraction}")
    return split


def train(
    frame: pd.DataFrame,
    config: TrainingConfig,
    device: torch.device | str = "cpu",
    warm_start: SliceModel | None = None,
    progress: ProgressCallback | None = None,
    holdout: np.ndarray | None = None,
) -> TrainingResult:
    """Train a slice model on ``frame`` (MicroOpt columns), optionally continuing from ``warm_start``.

    A warm start keeps the architecture and QoS normalization of the model it continues from. The
    validation rows are those flagged in ``holdout`` if given, else a seeded random share of rows.
    """
    torch.manual_seed(config.seed)
    split = (split_by_flag(holdout, config.validation_fraction) if holdout is not None
             else split_rows(len(frame), config.validation_fraction, config.seed))
    train_frame = frame.iloc[split.train_rows]
    if warm_start is not None:
        model = copy.deepcopy(warm_start)
    else:
        qos = train_frame[TARGET]
        model = SliceModel(config.model, TargetScale(float(qos.min()), float(qos.max())))
    model = model.to(device)
    inputs, target = tensors(train_frame, device)
    validation = tensors(frame.iloc[split.validation_rows], device) if split.validation_rows.size else None

    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[config.drop_epoch], gamma=0.1)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    n_rows = inputs.shape[0]
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(n_rows, generator=generator).to(device)
        total = 0.0
        for start in range(0, n_rows, config.batch_size):
            batch = order[start : start + config.batch_size]
            if batch.numel() < 2:
                continue
            loss = model.gaussian_nll(inputs[batch], target[batch]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * batch.numel()
        schedule.step()
        train_loss = total / n_rows
        if epoch % 50 == 0 or epoch == config.epochs:
            model.eval()
            record = {"epoch": epoch, "train_nll_normalized": train_loss}
            if validation is not None:
                record["validation_nll_normalized"] = metrics_from_tensors(model, *validation).nll_normalized
            history.append(record)
        if progress is not None:
            progress(epoch, config.epochs, train_loss)
    seconds = time.perf_counter() - started
    model.eval()
    return TrainingResult(
        model=model,
        split=split,
        train_metrics=metrics_from_tensors(model, inputs, target),
        validation_metrics=metrics_from_tensors(model, *validation) if validation is not None else None,
        history=history,
        seconds=seconds,
        config=config,
    )


def save_training(result: TrainingResult, directory: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``model.pt``, ``metrics.json`` and ``split.json`` to ``directory``.

    ``split.json`` lists the validation rows: positions in the training frame, i.e. the data files in
    order after the settling filter, both of which ``extra`` should name (the CLI records them).
    """
    directory = Path(directory)
    save_model(result.model, directory, extra)
    write_json_atomic(directory / "metrics.json", result.metrics_document())
    write_json_atomic(directory / "split.json", {
        **result.split.describe(),
        "data": extra or {},
        "validation_rows": result.split.validation_rows.tolist(),
    })
