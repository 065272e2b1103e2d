"""Per-second QoS of the slices on a deployed testbed, read back from Prometheus after each interval.

The local and lab testbeds export the same metrics (docs/design/local-testbed.md): each user's received
throughput, p95 one-way delay and delivery ratio, and each slice's active users.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pandas as pd

from collectors.prometheus import PrometheusReader
from controller.testbeds.base import TestbedUnavailable
from core.slice_types import QosKind

MEASURED_COLUMNS = ("time", "slice", "total_bandwidth_usage", "n_users", "qos")
QOS_QUERIES: dict[QosKind, str] = {
    "throughput_mbps": "sum by (slice) (slicebed_user_throughput_bps) / 1e6",
    "delay_p95_ms": "avg by (slice) (slicebed_user_delay_p95_seconds) * 1000",
    "delivery_ratio": "avg by (slice) (slicebed_user_delivery_ratio)",
}
"""Per slice and second: the total throughput in Mbps (divided by the users afterwards: per-user throughput), the
users' mean p95 one-way delay in ms, the users' mean delivery ratio."""
NOTHING_RECEIVED: dict[QosKind, float] = {"throughput_mbps": 0.0, "delay_p95_ms": 1000.0, "delivery_ratio": 0.0}
"""A second with active users and no QoS series yet (nothing has reached the UE sinks: a point's first second):
what the sinks publish for a 1 s window in which nothing arrived."""


class QosMeter(Protocol):
    def measure(self, seconds: int) -> pd.DataFrame:
        """Wait ``seconds`` s; one row per slice per second: ``MEASURED_COLUMNS`` (throughput in Mbps, ``qos`` in
        the unit of the slice's QoS kind)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class PrometheusQosMeter:
    """Per-second slice throughput, QoS and active users, read back from Prometheus after the interval.

    ``qos`` names each slice's QoS kind (core.slice_types); a slice not named is judged by its throughput.
    """

    USERS = "max by (slice) (slicebed_active_users)"

    def __init__(self, reader: PrometheusReader, qos: dict[str, QosKind] | None = None, settle_s: float = 0.3) -> None:
        self.reader = reader
        self.qos = qos or {}
        self.settle_s = settle_s

    def measure(self, seconds: int) -> pd.DataFrame:
        start = datetime.now(UTC)  # the sample at t covers the second before t
        first, last = start + timedelta(seconds=1), start + timedelta(seconds=seconds)
        time.sleep(max(0.0, (last - datetime.now(UTC)).total_seconds() + self.settle_s))
        users = self.reader.range(self.USERS, first, last, 1.0)
        if users.empty:
            raise TestbedUnavailable(f"Prometheus at {self.reader.url} has no slicebed_active_users samples; "
                                     "check its scrape targets (`slicebed testbed status`)")
        merged = users.rename(columns={"value": "n_users"})[["time", "slice", "n_users"]]
        merged = merged.merge(self._series("throughput_mbps", first, last, "total_bandwidth_usage"),
                              on=["time", "slice"], how="left").fillna({"total_bandwidth_usage": 0.0})
        merged["qos"] = merged["total_bandwidth_usage"] / merged["n_users"].where(merged["n_users"] > 0)
        for kind in sorted(set(self.qos.values()) - {"throughput_mbps"}):
            names = [name for name, wanted in self.qos.items() if wanted == kind]
            series = self._series(kind, first, last, "measured")
            rows = merged["slice"].isin(names)
            merged.loc[rows, "qos"] = merged.loc[rows, ["time", "slice"]].merge(
                series, on=["time", "slice"], how="left")["measured"].fillna(NOTHING_RECEIVED[kind]).to_numpy()
        return merged[list(MEASURED_COLUMNS)]

    def _series(self, kind: QosKind, first: datetime, last: datetime, column: str) -> pd.DataFrame:
        """One QoS query over the interval as (time, slice, ``column``); empty when no user received anything."""
        frame = self.reader.range(QOS_QUERIES[kind], first, last, 1.0)
        if frame.empty:
            return pd.DataFrame({"time": pd.Series(dtype="datetime64[ns, UTC]"), "slice": pd.Series(dtype=str),
                                 column: pd.Series(dtype=float)})
        return frame.rename(columns={"value": column})[["time", "slice", column]]

    def close(self) -> None:
        self.reader.close()
