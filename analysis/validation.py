"""How a slice model is validated: the row split (train / validation rows) and grouped k-fold cross-validation.

A random row split puts rows of every grid point on both sides, so its validation figures measure how well
a model fits points it has seen. The grouped folds hold out whole groups (by default the (cpu, bw)
allocations, with every user count measured there), so their figures measure what an optimizer needs: the
QoS at allocations the model has not seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from collectors.dataset import GRID_KEY, TARGET
from core.errors import InputError

DEFAULT_GROUP_BY: tuple[str, ...] = ("cpu", "bw")
"""Held-out groups are allocations: every user count measured at one (cpu, bw) leaves together."""
GROUP_COLUMNS: tuple[str, ...] = ("n_users", "bw", "cpu")


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


@dataclass(frozen=True)
class GroupedFolds:
    """Grouped k-fold assignment: ``fold[row]`` is the fold whose model does not see the row's group."""

    group_by: tuple[str, ...]
    folds: int
    seed: int
    fold: np.ndarray
    group: np.ndarray
    """Group index of each row."""
    n_groups: int

    def describe(self) -> dict[str, Any]:
        return {"strategy": "grouped k-fold: whole groups held out", "group_by": list(self.group_by),
                "folds": self.folds, "seed": self.seed, "groups": self.n_groups}


def grouped_folds(frame: pd.DataFrame, folds: int, seed: int = 0,
                  group_by: Sequence[str] = DEFAULT_GROUP_BY) -> GroupedFolds:
    """Assign the groups (distinct values of ``group_by``) of ``frame`` to ``folds`` folds of near-equal size.

    The groups are shuffled with ``seed`` and dealt round-robin, so the assignment depends only on the set of
    groups and the seed (not on the model's seed: every architecture is compared on the same folds).

    Raises:
        InputError: an unknown group column, fewer than 2 folds, or fewer groups than folds.
    """
    if folds < 2:
        raise InputError(f"grouped cross-validation needs at least 2 folds, got {folds}")
    codes, n_groups = _group_codes(frame, group_by)
    if n_groups < folds:
        raise InputError(f"grouped cross-validation with {folds} folds needs at least {folds} distinct "
                         f"({', '.join(group_by)}) groups; the data has {n_groups} (lower --folds, 0 for none)")
    order = np.random.default_rng(seed).permutation(n_groups)
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    fold_of_group[order] = np.arange(n_groups) % folds
    return GroupedFolds(tuple(group_by), folds, seed, fold_of_group[codes], codes, n_groups)


def count_groups(frame: pd.DataFrame, group_by: Sequence[str] = DEFAULT_GROUP_BY) -> int:
    """The number of distinct ``group_by`` values in ``frame``."""
    return _group_codes(frame, group_by)[1]


def _group_codes(frame: pd.DataFrame, group_by: Sequence[str]) -> tuple[np.ndarray, int]:
    """Each row's group index and the number of groups; raises InputError for an unknown column."""
    unknown = [column for column in group_by if column not in GROUP_COLUMNS]
    if unknown or not group_by:
        raise InputError(f"cannot group by {list(group_by)}: choose columns among {', '.join(GROUP_COLUMNS)}")
    codes = frame.groupby(list(group_by), sort=True).ngroup().to_numpy(dtype=np.int64)
    return codes, int(codes.max()) + 1


def noise_floor_mae(frame: pd.DataFrame) -> float:
    """The MAE of predicting each row by its own grid point's mean QoS: no model of the mean does better."""
    means = frame.groupby(GRID_KEY)[TARGET].transform("mean")
    return float((frame[TARGET] - means).abs().mean())
