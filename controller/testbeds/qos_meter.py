"""Per-second QoS of the slices on a deployed testbed, read back from Prometheus after each interval.

The local and lab testbeds export the same metrics (docs/design/local-testbed.md): each user's received
throughput and each slice's active users.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pandas as pd

from collectors.prometheus import PrometheusReader
from controller.testbeds.base import TestbedUnavailable

MEASURED_COLUMNS = ("time", "slice", "total_bandwidth_usage", "n_users")


class QosMeter(Protocol):
    def measure(self, seconds: int) -> pd.DataFrame:
        """Wait ``seconds`` s; one row per slice per second: ``MEASURED_COLUMNS`` (throughput in Mbps)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class PrometheusQosMeter:
    """Per-second slice throughput and active users, read back from Prometheus after the interval."""

    THROUGHPUT = "sum by (slice) (slicebed_user_throughput_bps) / 1e6"
    USERS = "max by (slice) (slicebed_active_users)"

    def __init__(self, reader: PrometheusReader, settle_s: float = 0.3) -> None:
        self.reader = reader
        self.settle_s = settle_s

    def measure(self, seconds: int) -> pd.DataFrame:
        start = datetime.now(UTC)  # the sample at t covers the second before t
        first, last = start + timedelta(seconds=1), start + timedelta(seconds=seconds)
        time.sleep(max(0.0, (last - datetime.now(UTC)).total_seconds() + self.settle_s))
        throughput = self.reader.range(self.THROUGHPUT, first, last, 1.0)
        users = self.reader.range(self.USERS, first, last, 1.0)
        if users.empty:
            raise TestbedUnavailable(f"Prometheus at {self.reader.url} has no slicebed_active_users samples; "
                                     "check its scrape targets (`slicebed testbed status`)")
        if throughput.empty:  # no user received anything (none active, or all starved): zero, not missing
            throughput = users.assign(value=0.0)
        merged = users.rename(columns={"value": "n_users"})[["time", "slice", "n_users"]].merge(
            throughput.rename(columns={"value": "total_bandwidth_usage"})[["time", "slice", "total_bandwidth_usage"]],
            on=["time", "slice"], how="left").fillna({"total_bandwidth_usage": 0.0})
        return merged[list(MEASURED_COLUMNS)]

    def close(self) -> None:
        self.reader.close()
