"""The MicroOpt QoS CSV format: ``time,total_bandwidth_usage,cpu,bw,n_users,qos``.

One row is a one-second sample of a slice: the gNB CPU allocation ``cpu`` (millicores), the transport
bandwidth ``bw`` (Mbps), the number of users ``n_users``, their aggregate downlink throughput
``total_bandwidth_usage`` (Mbps) and the per-user throughput ``qos`` (Mbps). It is the format of the
public MicroOpt dataset and the format slicebed's own campaigns write.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InputError

COLUMNS: tuple[str, ...] = ("time", "total_bandwidth_usage", "cpu", "bw", "n_users", "qos")
NUMERIC_COLUMNS: tuple[str, ...] = ("total_bandwidth_usage", "cpu", "bw", "n_users", "qos")
FEATURES: tuple[str, ...] = ("n_users", "bw", "cpu")
"""Model inputs, in the order the slice model takes them."""
TARGET = "qos"
GRID_KEY: list[str] = ["n_users", "bw", "cpu"]
DEFAULT_SETTLE_S = 10.0
"""Seconds dropped after each grid change by default when reading a dataset for training or replay:
in the MicroOpt data the per-user QoS deviates from its grid point's mean with a standard deviation of
about 2.3 Mbps during the first ~12 s after a reconfiguration, against 0.85 Mbps afterwards."""


def load_qos_csv(path: str | Path, settle_s: float = 0.0) -> pd.DataFrame:
    """Load and validate one MicroOpt-format CSV.

    Args:
        path: the CSV file.
        settle_s: drop samples taken less than this many seconds after the grid point
            (n_users, bw, cpu) last changed; the first seconds after a reconfiguration are a transient.

    Returns:
        A frame with the six columns, ``time`` parsed (ISO 8601 date-times), numeric columns as float64,
        plus a ``source`` column (the file name) and ``block`` (index of the contiguous run of one grid point).

    Raises:
        InputError: the file is missing, empty, not CSV, lacks a column, holds a time that is not an
            ISO 8601 date-time or a non-numeric, NaN, infinite or negative value (the message names the
            file, column and row), or ``settle_s`` leaves no sample.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such dataset file")
    try:
        with warnings.catch_warnings():
            # index_col=False: a row with more fields than the header must not shift the columns; pandas
            # then warns that it drops the extra fields, which is an error here
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, encoding="utf-8", index_col=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty; expected a header {','.join(COLUMNS)}") from None
    except pd.errors.ParserWarning:
        raise InputError(f"{path}: not a readable CSV file (a row has more fields than the header)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable CSV file ({reason})") from None
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
    if frame.empty:
        raise InputError(f"{path}: the file has a header but no data rows")
    frame = frame[list(COLUMNS)].copy()
    for column in NUMERIC_COLUMNS:
        frame[column] = _numeric_column(frame[column], path, column)
    frame["time"] = _time_column(frame["time"], path)
    if (frame["n_users"] <= 0).any():
        raise InputError(f"{path}: row {_row_number(frame['n_users'] <= 0)}: n_users must be > 0")
    frame["block"] = _blocks(frame)
    if settle_s > 0:
        frame = drop_settling(frame, settle_s)
        if frame.empty:
            raise InputError(f"{path}: no sample is {settle_s:g} s or more after its grid point started "
                             "(lower --settle-s / settle_s)")
    frame["source"] = path.name
    return frame.reset_index(drop=True)


def load_qos_csvs(paths: Sequence[str | Path], settle_s: float = 0.0) -> pd.DataFrame:
    """Load several MicroOpt-format CSVs into one frame (blocks are numbered across files)."""
    if not paths:
        raise InputError("no dataset given: pass at least one --data CSV")
    frames = []
    offset = 0
    for path in paths:
        frame = load_qos_csv(path, settle_s=settle_s)
        frame["block"] += offset
        offset = int(frame["block"].max()) + 1
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def drop_settling(frame: pd.DataFrame, settle_s: float) -> pd.DataFrame:
    """Drop the samples of each block taken less than ``settle_s`` seconds after the block started."""
    started = frame.groupby("block")["time"].transform("min")
    elapsed = (frame["time"] - started).dt.total_seconds()
    return frame[elapsed >= settle_s]


def write_qos_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write samples in the MicroOpt CSV format (only the six standard columns, in order).

    The file is written under a temporary name and renamed, so a reader never sees half of it.
    """
    path = Path(path)
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise InputError(f"cannot write {path}: samples lack column(s) {', '.join(missing)}")
    temporary = path.with_name(f".{path.name}.tmp")
    frame.loc[:, list(COLUMNS)].to_csv(temporary, index=False)
    temporary.replace(path)


def grid_points(frame: pd.DataFrame) -> pd.DataFrame:
    """The distinct (n_users, bw, cpu) grid points of a dataset with their sample counts."""
    return frame.groupby(GRID_KEY).size().rename("samples").reset_index()


def feature_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The model inputs (n_users, bw, cpu) of each row as a float32 array of shape (rows, 3)."""
    return frame.loc[:, list(FEATURES)].to_numpy(dtype=np.float32)


def _numeric_column(values: pd.Series, path: Path, column: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    not_numbers = numbers.isna() & values.notna()
    if not_numbers.any():
        raise InputError(f"{path}: row {_row_number(not_numbers)}: column {column} is not a number")
    for mask, problem in (
        (numbers.isna(), "is empty or NaN"),
        (~np.isfinite(numbers.fillna(0.0)), "is infinite"),
        (numbers < 0, "is negative"),
    ):
        if mask.any():
            raise InputError(f"{path}: row {_row_number(mask)}: column {column} {problem}")
    return numbers.astype("float64")


def _time_column(values: pd.Series, path: Path) -> pd.Series:
    """Parse the ``time`` column as ISO 8601 date-times (any precision, space or ``T`` separator)."""
    if values.isna().all():
        raise InputError(f"{path}: column time is empty; expected ISO 8601 date-times")
    if not pd.api.types.is_object_dtype(values) and not pd.api.types.is_string_dtype(values):
        raise InputError(f"{path}: column time holds numbers; expected ISO 8601 date-times "
                         "such as 2024-05-18 11:00:23.874")
    try:
        times = pd.to_datetime(values, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):  # pandas raises for time zones mixed with each other or with naive times
        raise InputError(f"{path}: column time mixes time zones; give every timestamp the same UTC offset "
                         "or none") from None
    bad = times.isna()
    if bad.any():
        row = _row_number(bad)
        raise InputError(f"{path}: row {row}: column time is not an ISO 8601 timestamp: {values.iloc[row - 1]!r}")
    return times


def _row_number(mask: Iterable[bool]) -> int:
    """The 1-based data-row number (header excluded) of the first True in ``mask``."""
    return int(np.flatnonzero(np.asarray(list(mask)))[0]) + 1


def _blocks(frame: pd.DataFrame) -> pd.Series:
    changed = frame[GRID_KEY].ne(frame[GRID_KEY].shift()).any(axis=1)
    return changed.cumsum() - 1
