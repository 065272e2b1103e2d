"""The IMDEA Madrid LTE dataset's files as a slice trace (paper Sec. VI-C/D; format in the shared PROVENANCE.md).

- ``users_<zone><freq>_s.csv``: one header row, then rows whose second column is the estimated RRC-connected
  users and third column the unix timestamp (several rows in one second are averaged, as the paper's code does).
- ``<zone>-<freq>-raw-df-ms.parquet``: one row per decoded DCI with ``timestamp`` (unix seconds, or
  milliseconds), ``direction`` (1 = downlink) and ``mcs_idx``; a second's MCS is the mean over its downlink
  DCIs, and a second without any repeats the previous one.

Each day contributes the hour window ``hours`` (local time in ``timezone``); the days are one segment each.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from controller.sharing.spec import MadridSource
from controller.sharing.traces import SecondTrace
from core.errors import InputError

RAW_COLUMNS = ("timestamp", "direction", "mcs_idx")
DOWNLINK = 1


def madrid_trace(source: MadridSource, days: int) -> SecondTrace:
    """``days`` days of the cell's users and downlink MCS, from ``first_day`` on.

    Raises:
        InputError: a missing or malformed file, a day without data, or a gap longer than ``fill_gaps_s``.
    """
    try:
        zone = ZoneInfo(source.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"timezone {source.timezone!r} is not a known IANA time zone") from None
    users = _per_second(*_read_users(source.users_csv))
    mcs = _per_second(*_read_downlink_mcs(source.raw_parquet))
    times, user_values, mcs_values, segments, labels = [], [], [], [], []
    for day in range(days):
        local = datetime.combine(source.first_day + timedelta(days=day), datetime.min.time(), zone)
        start = int((local + timedelta(hours=source.hours[0])).timestamp())
        end = int((local + timedelta(hours=source.hours[1])).timestamp())
        seconds = pd.RangeIndex(start, end)
        label = local.strftime("%Y-%m-%d")
        day_users = users.reindex(seconds)
        if source.fill_gaps_s:
            day_users = day_users.ffill(limit=source.fill_gaps_s).bfill(limit=source.fill_gaps_s)
        day_mcs = mcs.reindex(seconds).ffill().bfill()
        if day_users.isna().all() or day_mcs.isna().all():
            what = source.users_csv if day_users.isna().all() else source.raw_parquet
            raise InputError(f"{what}: no data on {label} between {source.hours[0]}:00 and {source.hours[1]}:00")
        present = day_users.notna().to_numpy()
        times.append(seconds.to_numpy()[present])
        user_values.append(day_users.to_numpy()[present])
        mcs_values.append(day_mcs.to_numpy()[present])
        segments.append(np.full(int(present.sum()), day))
        labels.append(label)
    return SecondTrace(source=str(source.users_csv), time=np.concatenate(times),
                       users=np.concatenate(user_values).astype(np.int64), mcs=np.concatenate(mcs_values),
                       segment=np.concatenate(segments), segment_labels=tuple(labels))


def _per_second(stamps: np.ndarray, values: np.ndarray) -> pd.Series:
    """Mean of ``values`` per whole unix second."""
    return pd.Series(values).groupby(np.floor(stamps).astype(np.int64)).mean()


def _read_users(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path}: no such users file (users_<zone><freq>_s.csv of the Madrid LTE dataset)")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({type(exc).__name__})") from None
    if frame.shape[1] < 3 or frame.empty:
        raise InputError(f"{path}: expected a header and rows with users in column 2 and the unix time in column 3")
    users = pd.to_numeric(frame.iloc[:, 1], errors="coerce").to_numpy(float)
    stamps = pd.to_numeric(frame.iloc[:, 2], errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(users) | ~np.isfinite(stamps))
    if bad.size:
        raise InputError(f"{path}: row {bad[0] + 2}: users and timestamp must be numbers")
    return stamps, np.floor(users)


def _read_downlink_mcs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path}: no such raw DCI file (<zone>-<freq>-raw-df-ms.parquet of the Madrid LTE dataset)")
    try:
        frame = pd.read_parquet(path)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
    missing = [column for column in RAW_COLUMNS if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    downlink = frame[frame["direction"] == DOWNLINK]
    stamps = downlink["timestamp"].to_numpy(float)
    if len(stamps) and np.median(stamps) > 1e11:  # milliseconds
        stamps = stamps / 1000.0
    return stamps, downlink["mcs_idx"].to_numpy(float)
