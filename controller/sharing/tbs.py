"""The 3GPP transport block size table and the PRBs one user needs for a constant bitrate (paper Sec. VI-F).

The table is TS 36.213 Table 7.1.7.2.1-1 with every entry doubled (2x2 MIMO), one row per I_TBS and one column
per PRB count 1-110, in bits per 1 ms subframe. slicebed does not ship it: it reads the CSV rendering
``tbs_table_x2_from_pickle.csv`` (header ``row_index_i_tbs,n_prb_1,...,n_prb_110``) named by ``--tbs-table``,
``$SLICEBED_TBS_TABLE``, or found at ``shared/datasets/robust_sharing/`` beside the checkout.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InputError

MCS_MAX = 28
"""Highest downlink MCS index (TS 36.213 Table 7.1.7.1-1)."""
N_PRB_MAX = 110
I_TBS_CLAMP = 26
"""The paper's code clamps I_TBS here (the 64-QAM rows); higher rows are never read."""
TBS_TABLE_ENV = "SLICEBED_TBS_TABLE"
SHARED_TBS_TABLE = (Path(__file__).resolve().parents[3] / "shared" / "datasets" / "robust_sharing"
                    / "tbs_table_x2_from_pickle.csv")


def i_tbs(mcs: int) -> int:
    """The transport block size index of a downlink MCS, as the paper's code maps it (MCS 27-28 -> 26)."""
    if not 0 <= mcs <= MCS_MAX:
        raise InputError(f"MCS {mcs} is outside 0-{MCS_MAX}")
    if mcs <= 9:
        return mcs
    if mcs <= 16:
        return mcs - 1
    return min(mcs - 2, I_TBS_CLAMP)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: lookups are cached per table
class TbsTable:
    """Transport block sizes in bits per subframe, ``bits[i_tbs, n_prb - 1]`` (already x2 for 2x2 MIMO)."""

    bits: np.ndarray
    source: Path

    def prbs_per_user(self, bitrate_mbps: float) -> np.ndarray:
        """PRBs one user needs at ``bitrate_mbps`` for each MCS 0-28 (index = MCS).

        Raises:
            InputError: some MCS cannot reach the bitrate with 110 PRBs (the message names them).
        """
        return _prbs_per_user(self, float(bitrate_mbps)).copy()


@cache
def _prbs_per_user(table: TbsTable, bitrate_mbps: float) -> np.ndarray:
    prbs = np.empty(MCS_MAX + 1, dtype=np.int64)
    for mcs in range(MCS_MAX + 1):
        row = table.bits[i_tbs(mcs)] / 1000.0  # Mbps at 1000 subframes per second
        prbs[mcs] = bisect.bisect_left(list(row), bitrate_mbps) + 1  # as the paper's code: not monotonic row 6
    short = np.flatnonzero(prbs > N_PRB_MAX)
    if short.size:
        best = table.bits[i_tbs(int(short[0])), N_PRB_MAX - 1] / 1000.0
        raise InputError(f"bitrate {bitrate_mbps:g} Mbps: no PRB count up to {N_PRB_MAX} reaches it at MCS "
                         f"{_ranges(short)} (at MCS {short[0]} the most is {best:g} Mbps)")
    return prbs


def _ranges(values: np.ndarray) -> str:
    """``[0 1 2 5]`` -> ``0-2, 5``."""
    parts, start = [], int(values[0])
    for previous, current in zip(values, [*values[1:], None], strict=True):
        if current is None or current != previous + 1:
            parts.append(f"{start}-{previous}" if previous != start else f"{start}")
            start = int(current) if current is not None else start
    return ", ".join(parts)


def tbs_table_path(explicit: Path | None = None) -> Path:
    """The table to read: ``explicit``, else ``$SLICEBED_TBS_TABLE``, else the shared copy beside the checkout."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(TBS_TABLE_ENV)
    return Path(from_env) if from_env else SHARED_TBS_TABLE


def load_tbs_table(path: Path | None = None) -> TbsTable:
    """Read and check the TBS table CSV (rows I_TBS 0..>=26, columns n_prb_1..n_prb_110, positive integers)."""
    path = tbs_table_path(path)
    if not path.is_file():
        raise InputError(f"{path}: no TBS table there; give --tbs-table FILE or set {TBS_TABLE_ENV} "
                         "(the 3GPP TS 36.213 Table 7.1.7.2.1-1 CSV, see docs/sharing.md)")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({type(exc).__name__})") from None
    expected = ["row_index_i_tbs", *(f"n_prb_{n}" for n in range(1, N_PRB_MAX + 1))]
    if [column.strip() for column in frame.columns] != expected:
        raise InputError(f"{path}: expected the columns row_index_i_tbs, n_prb_1 ... n_prb_{N_PRB_MAX}")
    values = frame.to_numpy()
    if not np.issubdtype(values.dtype, np.integer) or (values[:, 1:] <= 0).any():
        raise InputError(f"{path}: every transport block size must be a positive integer")
    if len(values) <= I_TBS_CLAMP or list(values[:, 0]) != list(range(len(values))):
        raise InputError(f"{path}: expected rows for I_TBS 0, 1, ... at least up to {I_TBS_CLAMP}")
    return TbsTable(bits=values[:, 1:].astype(np.int64), source=path)
