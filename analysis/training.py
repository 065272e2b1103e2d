"""Training a slice model with honest validation and calibrated uncertainty.

:func:`train` fits the model of ``config.model`` (the paper's network or the ensemble) and measures it
two ways: on a row split (validation rows drawn at random, or flagged when collected) and by grouped
k-fold cross-validation, which holds out whole groups (by default (cpu, bw) allocations). The held-out
groups' predictions then fit a factor on sigma (post-hoc calibration), cross-fitted for the reported
figures (each fold's factor comes from the other folds) and fitted on all of them for the model itself.
"""

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

from analysis.calibration import fit_sigma_scale, require_calibration_groups, z_scores
from analysis.ensemble_model import EnsembleConfig, EnsembleModel
from analysis.ensemble_training import Role, fit_ensembles
from analysis.evaluation import FitMetrics, evaluate, fit_metrics, predict, tensors
from analysis.model_base import ModelSupport, SliceModel, TargetScale
from analysis.paper_model import PaperConfig, PaperModel
from analysis.paper_training import fit_paper
from analysis.slice_model import ModelConfig, save_model
from analysis.validation import (
    DEFAULT_GROUP_BY,
    GroupedFolds,
    Split,
    count_groups,
    grouped_folds,
    noise_floor_mae,
    split_by_flag,
    split_rows,
)
from collectors.dataset import TARGET
from core.errors import InputError
from core.runstore import write_json_atomic

ProgressCallback = Callable[[int, int, float], None]
"""Called as ``progress(step, total_steps, train_loss)`` after each epoch of any model being trained."""

ARCH_DEFAULTS: dict[type, tuple[int, float]] = {PaperConfig: (3000, 1e-3), EnsembleConfig: (1000, 3e-3)}
"""Epochs and learning rate per architecture: the paper's 3,000 at 1e-3 (then 1e-4), and the ensemble's
full-batch steps (cosine-annealed learning rate)."""


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters; ``epochs`` and ``learning_rate`` default to the architecture's (``ARCH_DEFAULTS``)."""

    epochs: int | None = None
    learning_rate: float | None = None
    lr_drop_epoch: int | None = None
    """Paper architecture: epoch after which the learning rate is divided by ten; ``None`` is half of ``epochs``."""
    batch_size: int = 4096
    """Paper architecture: rows per mini-batch (the ensemble trains full-batch on pooled grid points)."""
    validation_fraction: float = 0.2
    seed: int = 0
    model: ModelConfig = field(default_factory=EnsembleConfig)
    higher_is_better: bool = True
    """Whether a higher QoS is better (throughput) or worse (delay)."""
    folds: int = 5
    """Grouped cross-validation folds (0: none, and no calibration)."""
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    fold_seed: int = 0
    """Seed of the fold assignment, kept apart from ``seed`` so every model is compared on the same folds."""
    calibrate: bool = True
    """Fit a factor on sigma on the held-out groups' predictions."""

    def __post_init__(self) -> None:
        epochs, learning_rate = ARCH_DEFAULTS[type(self.model)]
        object.__setattr__(self, "epochs", epochs if self.epochs is None else self.epochs)
        object.__setattr__(self, "learning_rate", learning_rate if self.learning_rate is None else self.learning_rate)
        object.__setattr__(self, "group_by", tuple(self.group_by))
        if self.steps < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise InputError(f"validation fraction must be in [0, 1), got {self.validation_fraction}")
        if self.batch_size < 2:
            raise InputError(f"batch size must be >= 2 (BatchNorm needs two samples), got {self.batch_size}")
        if self.rate <= 0:
            raise InputError(f"learning rate must be > 0, got {self.learning_rate}")
        if self.folds == 1 or self.folds < 0:
            raise InputError(f"folds must be 0 (no grouped cross-validation) or >= 2, got {self.folds}")
        if self.calibrate and self.folds == 0:
            raise InputError("calibrating sigma needs grouped cross-validation (folds >= 2); "
                             "set folds or turn calibration off")
        if isinstance(self.model, EnsembleConfig) and self.model.link_bound and not self.higher_is_better:
            raise InputError("the link bound (per-user throughput <= bandwidth / users) applies to a "
                             "higher-is-better QoS only; turn it off for a lower-is-better QoS")

    @property
    def steps(self) -> int:
        """``epochs``, resolved."""
        return int(self.epochs or 0)

    @property
    def rate(self) -> float:
        """``learning_rate``, resolved."""
        return float(self.learning_rate or 0.0)

    @property
    def drop_epoch(self) -> int:
        return self.lr_drop_epoch if self.lr_drop_epoch is not None else self.steps // 2


@dataclass
class GroupedValidation:
    """Grouped cross-validation: every row's prediction by the fold model that did not see its group."""

    folds: GroupedFolds
    qos: np.ndarray
    mean: np.ndarray
    raw_std: np.ndarray
    """Each fold model's own sigma."""
    span: np.ndarray
    """The QoS normalization span of each row's fold model."""
    fold_sigma_scales: list[float] | None
    """Each fold's cross-fitted sigma factor, fitted on the other folds' rows (``None``: not calibrating)."""
    noise_floor_mae: float

    @property
    def std(self) -> np.ndarray:
        """Held-out sigma as calibrated (the fold's cross-fitted factor applied)."""
        if self.fold_sigma_scales is None:
            return self.raw_std
        scaled: np.ndarray = self.raw_std * np.asarray(self.fold_sigma_scales)[self.folds.fold]
        return scaled

    def per_fold(self, calibrated: bool = True) -> list[FitMetrics]:
        """Each fold's metrics on its held-out rows, with sigma calibrated or as its model gave it."""
        std = self.std if calibrated else self.raw_std
        return [fit_metrics(self.qos[held_out], self.mean[held_out], std[held_out], self.span[held_out])
                for held_out in (self.folds.fold == k for k in range(self.folds.folds))]

    def summary(self, calibrated: bool = True) -> tuple[dict[str, float], dict[str, float]]:
        """The mean and the standard deviation over folds of each metric."""
        frame = pd.DataFrame([metrics.as_dict() for metrics in self.per_fold(calibrated)]).drop(columns="n")
        return frame.mean().to_dict(), frame.std(ddof=0).to_dict()

    def as_dict(self) -> dict[str, Any]:
        mean, spread = self.summary()
        return {
            **self.folds.describe(),
            "calibrated": self.fold_sigma_scales is not None,
            "mean": mean,
            "std": spread,
            "noise_floor_mae": self.noise_floor_mae,
            "mae_over_noise_floor": mean["mae"] / self.noise_floor_mae if self.noise_floor_mae else None,
            "per_fold": [metrics.as_dict() for metrics in self.per_fold()],
            "uncalibrated_mean": self.summary(calibrated=False)[0],
            "fold_sigma_scales": self.fold_sigma_scales,
        }


@dataclass
class TrainingResult:
    """A trained model with its validation (row split and grouped folds), loss history and wall time."""

    model: SliceModel
    split: Split
    train_metrics: FitMetrics
    validation_metrics: FitMetrics | None
    grouped: GroupedValidation | None
    history: list[dict[str, float]]
    seconds: float
    config: TrainingConfig

    def metrics_document(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return {
            "arch": self.model.arch,
            "train": self.train_metrics.as_dict(),
            "validation": self.validation_metrics.as_dict() if self.validation_metrics else None,
            "grouped": self.grouped.as_dict() if self.grouped else None,
            "sigma_scale": self.model.sigma_scale,
            "split": self.split.describe(),
            "training": {**asdict(self.config), "seconds": round(self.seconds, 3)},
            "target_scale": {"low": self.model.scale.low, "high": self.model.scale.high},
            "support": _support_summary(self.model.support),
        }


def _support_summary(support: ModelSupport) -> dict[str, Any]:
    """The support's ranges and the number of its grid points (the points themselves are in model.pt)."""
    summary = support.as_dict()
    summary["grid_points"] = len(support.grid) if support.grid is not None else None
    del summary["grid"]
    return summary


@dataclass
class _Fitted:
    """What an architecture's trainer hands back."""

    final: SliceModel
    final_rows: np.ndarray
    row_split: SliceModel | None
    fold_models: list[SliceModel]
    history: list[dict[str, float]]


def train(
    frame: pd.DataFrame,
    config: TrainingConfig,
    device: torch.device | str = "cpu",
    warm_start: SliceModel | None = None,
    progress: ProgressCallback | None = None,
    holdout: np.ndarray | None = None,
    source: str = "training data",
) -> TrainingResult:
    """Train a slice model on ``frame`` (MicroOpt columns), optionally continuing from ``warm_start``.

    A warm start keeps the architecture and QoS normalization of the model it continues from. The
    row split's validation rows are those flagged in ``holdout`` if given, else a seeded random share.
    ``source`` names the data in error messages.

    Raises:
        InputError: too few rows or groups, too few groups to calibrate on, or a warm start of another kind.
    """
    split = (split_by_flag(holdout, config.validation_fraction) if holdout is not None
             else split_rows(len(frame), config.validation_fraction, config.seed))
    if config.calibrate:
        require_calibration_groups(count_groups(frame, config.group_by), source)
    folds = grouped_folds(frame, config.folds, config.fold_seed, config.group_by) if config.folds else None
    if warm_start is not None and not isinstance(config.model, type(warm_start.config)):
        raise InputError(f"cannot warm-start a {type(config.model).__name__} model from a {warm_start.arch} model")
    torch.manual_seed(config.seed)
    support = ModelSupport.of(frame)
    roles = _roles(frame, split, folds)
    trainings = (folds.folds if folds is not None else 0) + 1 if isinstance(config.model, PaperConfig) else 1
    counter = _Counter(progress, config.steps * trainings)
    started = time.perf_counter()
    if isinstance(config.model, PaperConfig):
        fitted = _fit_paper_roles(frame, roles, config, support, device, warm_start, counter)
    else:
        fitted = _fit_ensemble_roles(frame, roles, config, support, device, warm_start, counter)
    grouped = _cross_validate(frame, folds, fitted.fold_models, config.calibrate) if folds is not None else None
    model = fitted.final
    model.sigma_scale = (fit_sigma_scale(z_scores(grouped.qos, grouped.mean, grouped.raw_std))
                         if grouped is not None and config.calibrate else 1.0)
    seconds = time.perf_counter() - started
    if fitted.row_split is not None:
        fitted.row_split.sigma_scale = model.sigma_scale
    validation_frame = frame.iloc[split.validation_rows]
    return TrainingResult(
        model=model,
        split=split,
        train_metrics=evaluate(model, frame.iloc[fitted.final_rows]),
        validation_metrics=(evaluate(fitted.row_split, validation_frame)
                            if fitted.row_split is not None and len(validation_frame) else None),
        grouped=grouped,
        history=fitted.history,
        seconds=seconds,
        config=config,
    )


class _Counter:
    """Turns per-epoch callbacks of several trainings into one progress count."""

    def __init__(self, progress: ProgressCallback | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0

    def __call__(self, loss: float) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, loss)


def _roles(frame: pd.DataFrame, split: Split, folds: GroupedFolds | None) -> list[Role]:
    """Grouped folds (each without its held-out groups), the row split's train side, and the final model."""
    roles = []
    if folds is not None:
        roles += [_role(f"fold-{k}", frame, folds.fold != k) for k in range(folds.folds)]
    train_side = np.zeros(len(frame), dtype=bool)
    train_side[split.train_rows] = True
    if split.validation_rows.size:
        roles.append(_role("row-split", frame, train_side))
    roles.append(_role("final", frame, np.ones(len(frame), dtype=bool)))
    return roles


def _role(name: str, frame: pd.DataFrame, rows: np.ndarray) -> Role:
    return Role(name, rows, TargetScale.of(frame[TARGET].to_numpy()[rows]))


def _fit_paper_roles(frame: pd.DataFrame, roles: list[Role], config: TrainingConfig, support: ModelSupport,
                     device: torch.device | str, warm_start: SliceModel | None, counter: _Counter) -> _Fitted:
    """One paper model per fold, in turn, then the final one: the paper trains on its training split, so
    the final model is the row split's when there is one; it continues from ``warm_start`` if given."""
    paper = config.model
    assert isinstance(paper, PaperConfig)
    final_role = _paper_final_role(roles)

    def fit(role: Role, start: SliceModel | None) -> tuple[PaperModel, list[dict[str, float]]]:
        model = copy.deepcopy(start) if start is not None else PaperModel(paper, role.scale, support,
                                                                           config.higher_is_better)
        assert isinstance(model, PaperModel)
        model.support = support
        model = model.to(device)
        inputs, target = tensors(frame.iloc[np.flatnonzero(role.rows)], device)
        validation = tensors(frame.iloc[np.flatnonzero(~role.rows)], device) if (~role.rows).any() else None
        return model, fit_paper(model, inputs, target, config.steps, config.rate, config.drop_epoch,
                                config.batch_size, config.seed, counter, validation)

    fold_models: list[SliceModel] = [fit(role, None)[0] for role in roles if role.name.startswith("fold-")]
    final, history = fit(final_role, warm_start)
    return _Fitted(final, np.flatnonzero(final_role.rows), final if final_role.name == "row-split" else None,
                   fold_models, history)


def _paper_final_role(roles: list[Role]) -> Role:
    return next((role for role in roles if role.name == "row-split"), roles[-1])


def _fit_ensemble_roles(frame: pd.DataFrame, roles: list[Role], config: TrainingConfig, support: ModelSupport,
                        device: torch.device | str, warm_start: SliceModel | None, counter: _Counter) -> _Fitted:
    """Every role's ensemble in one batched program (:func:`fit_ensembles`)."""
    assert isinstance(config.model, EnsembleConfig)
    if warm_start is not None:
        assert isinstance(warm_start, EnsembleModel)
        roles = [*roles[:-1], Role("final", roles[-1].rows, warm_start.scale)]
    models, history = fit_ensembles(frame, roles, config.model, support, config.higher_is_better,
                                    config.steps, config.rate, config.seed, device, warm_start, counter)
    return _Fitted(models["final"], np.arange(len(frame)), models.get("row-split"),
                   [models[role.name] for role in roles if role.name.startswith("fold-")], history)


def _cross_validate(frame: pd.DataFrame, folds: GroupedFolds, fold_models: list[SliceModel],
                    calibrate: bool) -> GroupedValidation:
    """Each row predicted by the fold model that did not see its group; with ``calibrate``, each fold's
    sigma factor fitted on the other folds' rows (cross-fitting: no fold is calibrated on itself)."""
    qos = frame[TARGET].to_numpy(np.float64)
    mean = np.empty(len(frame))
    std = np.empty(len(frame))
    span = np.empty(len(frame))
    for k, model in enumerate(fold_models):
        held_out = folds.fold == k
        mean[held_out], std[held_out] = predict(model, frame.iloc[np.flatnonzero(held_out)])
        span[held_out] = model.scale.span
    z = z_scores(qos, mean, std)
    scales = [fit_sigma_scale(z[folds.fold != k]) for k in range(folds.folds)] if calibrate else None
    return GroupedValidation(folds, qos, mean, std, span, scales, noise_floor_mae(frame))


def save_training(result: TrainingResult, directory: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``model.pt``, ``metrics.json`` and ``split.json`` to ``directory``.

    ``split.json`` lists the validation rows (positions in the training frame, i.e. the data files in order
    after the settling filter, both of which ``extra`` should name: the CLI records them) and each held-out
    group's fold.
    """
    directory = Path(directory)
    save_model(result.model, directory, extra)
    write_json_atomic(directory / "metrics.json", result.metrics_document())
    grouped = result.grouped
    write_json_atomic(directory / "split.json", {
        **result.split.describe(),
        "data": extra or {},
        "validation_rows": result.split.validation_rows.tolist(),
        "grouped": None if grouped is None else {
            **grouped.folds.describe(),
            "fold_of_row": grouped.folds.fold.tolist(),
        },
    })
