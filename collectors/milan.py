"""The Telecom Italia "Milan" call-detail-record files and the traffic variation MicroOpt derives from them.

Files ``sms-call-internet-mi-YYYY-MM-DD.txt`` are tab-separated, without a header, with the fields
``square_id, time_interval, country_code, sms_in, sms_out, call_in, call_out, internet``: one row per
grid square, 10-minute interval (start, epoch milliseconds) and country code; activity fields may be
empty (no activity).

MicroOpt (Sec. VI-A3) takes one cell's Internet activity over a week, normalizes it, and uses the mean
and the maximum of its standard deviation as the spread of the slice's traffic. Here the activity is
summed over country codes, scaled so the cell's busiest interval is ``peak_users`` users/s, and the
standard deviation is taken within each hour (over its 10-minute intervals): sigma_mean is the mean of
those hourly standard deviations, sigma_max their maximum.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InputError

CDR_COLUMNS: tuple[str, ...] = ("square_id", "time_interval", "country_code", "sms_in", "sms_out",
                                "call_in", "call_out", "internet")
ACTIVITY_COLUMNS: tuple[str, ...] = CDR_COLUMNS[3:]


@dataclass(frozen=True)
class TrafficVariation:
    """The spread of one cell's traffic in users/s, as MicroOpt's dataset traffic distributions use it."""

    square_id: int
    sigma_mean: float
    sigma_max: float
    hours: int
    intervals: int


def read_cdr_file(path: str | Path) -> pd.DataFrame:
    """One CDR file as a frame of the ``CDR_COLUMNS`` (activity NaN -> 0); bad lines raise InputError."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, sep="\t", header=None, names=list(CDR_COLUMNS), dtype=str,
                            keep_default_na=False, on_bad_lines="error", engine="c")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; pass a Telecom Italia sms-call-internet-mi-*.txt file") from None
    except pd.errors.ParserError as exc:
        found = re.search(r"line (\d+)", str(exc))
        where = f"line {found.group(1)}" if found else "a line"
        raise InputError(f"{path}: {where}: expected {len(CDR_COLUMNS)} tab-separated fields "
                         f"({', '.join(CDR_COLUMNS)})") from None
    except (OSError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CDR text file ({type(exc).__name__})") from None
    if frame.empty:
        raise InputError(f"{path}: no rows; expected tab-separated lines of {', '.join(CDR_COLUMNS)}")
    return _validated(frame, path)


def _validated(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Numbers where numbers belong: the first offending line is named (line 1 is the file's first)."""
    numeric = pd.DataFrame(index=frame.index)
    for column in CDR_COLUMNS:
        text = frame[column].str.strip()
        values = pd.to_numeric(text.replace("", np.nan), errors="coerce")
        required = column in ("square_id", "time_interval")
        bad = (text != "") & values.isna() | (values < 0)
        if required:
            bad |= text == ""
        if bad.any():
            line = int(bad.to_numpy().argmax()) + 1
            problem = "is empty" if text.iloc[line - 1] == "" else f"is {text.iloc[line - 1]!r}"
            raise InputError(f"{path}: line {line}: {column} {problem}; expected a number >= 0"
                             + ("" if required else " or an empty field"))
        numeric[column] = values if required else values.fillna(0.0)
    return numeric


def read_cdr_files(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Several CDR files (e.g. a week) concatenated."""
    if not paths:
        raise InputError("no Milan CDR files given; pass sms-call-internet-mi-YYYY-MM-DD.txt files")
    return pd.concat([read_cdr_file(path) for path in paths], ignore_index=True)


def cell_series(frame: pd.DataFrame, square_id: int | None = None) -> tuple[int, pd.Series]:
    """One cell's Internet activity per 10-minute interval (summed over country codes), indexed by UTC time.

    ``square_id`` None picks the cell with the most Internet activity.
    """
    if square_id is None:
        square_id = int(frame.groupby("square_id")["internet"].sum().idxmax())
    cell = frame[frame["square_id"] == square_id]
    if cell.empty:
        raise InputError(f"Milan CDR files: square_id {square_id} does not occur; choose one that does")
    series = cell.groupby("time_interval")["internet"].sum()
    try:
        series.index = pd.to_datetime(series.index.astype("int64"), unit="ms", utc=True)
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        raise InputError("Milan CDR files: a time_interval is not a plausible epoch time in milliseconds") from None
    return square_id, series.sort_index()


def traffic_variation(paths: Sequence[str | Path], square_id: int | None = None,
                      peak_users: float = 5.0) -> TrafficVariation:
    """sigma_mean and sigma_max (users/s) of one cell's traffic in the given CDR files."""
    chosen, series = cell_series(read_cdr_files(paths), square_id)
    if series.max() <= 0:
        raise InputError(f"Milan CDR files: square_id {chosen} has no Internet activity; choose another cell")
    users = series / series.max() * peak_users
    hourly = users.groupby(users.index.floor("h")).agg(["std", "count"])
    hourly = hourly[hourly["count"] >= 2]
    if hourly.empty:
        raise InputError(f"Milan CDR files: square_id {chosen} has no hour with two or more 10-minute "
                         "intervals; give files covering whole hours")
    spread = hourly["std"].to_numpy()
    return TrafficVariation(square_id=chosen, sigma_mean=float(spread.mean()), sigma_max=float(spread.max()),
                            hours=len(hourly), intervals=len(series))
