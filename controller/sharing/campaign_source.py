"""A slicebed campaign run as a slice trace: the users each second of one slice, one segment per point.

A testbed has no radio, so every second gets the same MCS (the spec's ``mcs``); the demand is then what the
slice's users need at its constant bitrate. Points are measured one after another with settling time in
between, so each point is a segment of its own (no slot spans two points).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from controller.campaign.export import journaled_table
from controller.sharing.spec import CampaignSource
from controller.sharing.traces import SecondTrace
from core.errors import InputError
from core.runstore import RunStore


def campaign_trace(source: CampaignSource) -> SecondTrace:
    """The journaled samples of ``source.slice`` in ``source.run``.

    Raises:
        InputError: not a run, or the run has no samples of that slice.
    """
    run = RunStore().open(source.run)
    samples = journaled_table(run)
    if samples.empty or "slice" not in samples.columns:
        raise InputError(f"{run.path}: the run has no journaled samples")
    rows = samples[samples["slice"] == source.slice]
    if rows.empty:
        names = ", ".join(sorted(samples["slice"].unique()))
        raise InputError(f"{run.path}: no samples of slice {source.slice!r} (the run has {names})")
    points = rows["point"].astype(str) if "point" in rows.columns else rows["point_index"].astype(str)
    labels = tuple(dict.fromkeys(points))
    segment = points.map({label: index for index, label in enumerate(labels)}).to_numpy()
    return SecondTrace(source=f"{run.path} slice {source.slice}", time=_unix_seconds(rows["time"]),
                       users=np.round(rows["n_users"].to_numpy(float)).astype(np.int64),
                       mcs=np.full(len(rows), source.mcs), segment=segment, segment_labels=labels)


def _unix_seconds(times: pd.Series) -> np.ndarray:
    """Whole unix seconds of a time column (timestamps, or numbers of seconds)."""
    if pd.api.types.is_datetime64_any_dtype(times):
        times = (pd.to_datetime(times, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return np.round(times.to_numpy(float)).astype(np.int64)
