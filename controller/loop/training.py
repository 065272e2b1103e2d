"""Retraining each round: the data a slice's model learns from, and its checkpoint.

A round's model learns every sample of its slice so far: the sweep points up to the round (each point's first
``training.settle_s`` seconds dropped) and the validation windows of the rounds before (each window's first
``training.settle_s - validation.settle_s`` seconds dropped), plus the spec's extra datasets. It warm-starts from
the round before, and its sigma is calibrated by grouped cross-validation once the data hold enough allocations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.progress import Progress

from analysis.calibration import MIN_CALIBRATION_GROUPS
from analysis.slice_model import EnsembleConfig, ModelConfig, PaperConfig, SliceModel, load_model
from analysis.training import TrainingConfig, save_training, train
from analysis.validation import count_groups
from collectors.dataset import drop_settling
from controller.campaign.export import journaled_table
from controller.loop.journal import VALIDATION_TABLE, LoopJournal
from controller.spec import ExperimentSpec, TrainingSpec
from core.errors import InputError
from core.runstore import Run, write_json_atomic

HISTORY_FILE = "history.json"
CALIBRATION_FOLDS = 5
"""Grouped cross-validation folds that calibrate sigma each round (once the data hold enough allocations)."""


@dataclass
class SliceRound:
    """A slice's model after a round's training, with its ``metrics.json`` and loss history."""

    model: SliceModel
    metrics: dict[str, Any]
    history: list[dict[str, float]]


class LoopTrainer:
    """Trains (or reloads from the journal) each round's slice models."""

    def __init__(self, spec: ExperimentSpec, run: Run, journal: LoopJournal, progress: Progress,
                 device: torch.device | str, extra_data: pd.DataFrame | None) -> None:
        self.spec = spec
        self.run = run
        self.journal = journal
        self.progress = progress
        self.device = device
        self.extra_data = extra_data

    def frame(self, slice_name: str, through_round: int, windows_before: int | None = None,
                       with_extra: bool = True) -> pd.DataFrame:
        """Every sample of the slice up to ``through_round``: its sweep points, the validation windows of the
        rounds before (or before ``windows_before``), each block's first ``training.settle_s`` seconds dropped,
        and, if asked, the extra datasets."""
        settle = self.spec.training.settle_s
        frames = []
        if with_extra and self.extra_data is not None:
            frames.append(self.extra_data)
        swept = journaled_table(self.run)
        if not swept.empty:
            swept = swept[(swept["slice"] == slice_name) & (swept["round"] <= through_round)].copy()
            swept["block"] = swept.groupby(["round", "point"]).ngroup()
            frames.append(drop_settling(swept, settle) if settle else swept)
        windows = self.journal.table(VALIDATION_TABLE, before_round=windows_before or through_round)
        if not windows.empty:
            windows = windows[windows["slice"] == slice_name].copy()
            windows["block"] = windows.groupby(["round", "level"]).ngroup()
            unsettled = max(0.0, settle - self.spec.validation.settle_s)  # the window starts settle_s after applying
            frames.append(drop_settling(windows, unsettled) if unsettled else windows)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["n_users", "bw", "cpu"])

    def retrain(self, round_index: int, slice_name: str, warm: SliceModel | None) -> SliceRound:
        """The slice's model of the round: the journaled checkpoint, else trained on everything measured so far
        (continuing from ``warm`` if the spec warm-starts)."""
        directory = self.journal.models.get((round_index, slice_name))
        if directory is not None:
            model = load_model(directory, self.device)
            return SliceRound(model, _read_json(directory / "metrics.json"), _read_json(directory / HISTORY_FILE))
        training = self.spec.training
        slice_spec = next(s for s in self.spec.slices if s.name == slice_name)
        frame = self.frame(slice_name, round_index)
        if len(frame) < 10:
            raise InputError(f"slice {slice_name}: only {len(frame)} samples to train on; lengthen the sweep")
        groups = count_groups(frame)
        calibrate = training.calibrate and groups >= MIN_CALIBRATION_GROUPS
        if training.calibrate and not calibrate:
            self.run.log_event("calibration_skipped", round=round_index, slice=slice_name, allocations=groups,
                               needed=MIN_CALIBRATION_GROUPS)
        config = TrainingConfig(
            epochs=training.epochs,
            batch_size=training.batch_size,
            validation_fraction=training.validation_fraction,
            seed=self.spec.seed + round_index,
            model=model_config(training, link_bound=slice_spec.qos == "throughput_mbps"),
            higher_is_better=slice_spec.higher_is_better,
            folds=CALIBRATION_FOLDS if calibrate else 0,
            calibrate=calibrate,
        )
        warm = warm if training.warm_start else None
        task = self.progress.add_task(f"round {round_index}: train {slice_name}", total=config.steps)

        def show(step: int, total: int, _loss: float) -> None:
            self.progress.update(task, completed=step, total=total)

        result = train(frame, config, device=self.device, warm_start=warm, progress=show,
                       holdout=frame["holdout"].to_numpy(dtype=bool), source=f"slice {slice_name}'s samples")
        directory = self.run.models_dir / f"round-{round_index}" / slice_name
        save_training(result, directory, extra={"round": round_index, "slice": slice_name})
        write_json_atomic(directory / HISTORY_FILE, result.history)
        self.journal.record_model(round_index, slice_name, directory, samples=len(frame), allocations=groups,
                                  warm_start=warm is not None, calibrated=calibrate, seconds=round(result.seconds, 2),
                                  validation=result.validation_metrics.as_dict() if result.validation_metrics else None)
        return SliceRound(result.model, result.metrics_document(), result.history)


def model_config(training: TrainingSpec, link_bound: bool = True) -> ModelConfig:
    """The spec's architecture with its sizes (the architecture's own defaults where the spec gives none).

    ``link_bound`` (per-user QoS <= bandwidth / users) holds for a throughput QoS only, not for a delay or a ratio.
    """
    if training.arch == "paper":
        paper = PaperConfig()
        return PaperConfig(training.width or paper.width, training.depth or paper.depth, training.head_width)
    ensemble = EnsembleConfig()
    return EnsembleConfig(training.members, training.width or ensemble.width, training.depth or ensemble.depth,
                          link_bound=link_bound)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
