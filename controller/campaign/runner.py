"""Runs a campaign's pending points on a testbed, journaling each one so a crash costs at most one point.

Per point: apply the allocation to every slice, start the traffic, hold ``settle_s`` (discarded) and
``dwell_s`` seconds (collected), fetch the point's Prometheus series if the spec asks for them, write
the Parquet parts (temp + fsync + rename) and only then journal the point as completed.

Faults:

- Prometheus down or slow: the reader retries with backoff; then the point is journaled *incomplete*
  (nothing written for it) and the campaign goes on; a resume redoes it.
- Actuator failure: every slice gets its safe allocation (the upper bounds: peak), the run's event log
  says so, and the point is incomplete.
- Testbed lost (a node or the connection to it): :class:`CampaignStopped`; the run stays resumable.
- Disk full: the half-written temp file is removed, :class:`CampaignStopped`; no corrupt Parquet remains.
"""

from __future__ import annotations

import errno
import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from collectors.prometheus import PrometheusReader, PrometheusUnavailable, RetryPolicy
from controller.campaign.journal import (
    completed_points,
    incomplete_points,
    record_completed,
    record_incomplete,
    remove_orphans,
)
from controller.campaign.plan import Point, plan_points
from controller.campaign.spec import CampaignSpec, PrometheusSpec
from controller.testbeds.base import Allocation, Testbed
from controller.testbeds.replay import ReplayTestbed
from core.commands import CommandError
from core.errors import SlicebedError
from core.runstore import Run

LOCK = "campaign.lock"
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class CampaignStopped(SlicebedError):
    """The campaign cannot go on now (disk full, testbed lost); the run is kept and can be resumed."""


@dataclass(frozen=True)
class CampaignOutcome:
    total: int
    completed: int
    incomplete: dict[str, str]
    """Point id -> why it is incomplete (redone by ``slicebed campaign resume``)."""


@contextmanager
def campaign_lock(run: Run) -> Iterator[None]:
    """Hold the run's lock (released by the kernel even on kill -9), refusing a second live runner."""
    with (run.path / LOCK).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CampaignStopped(f"{run.path}: the campaign is still running in another process "
                                  f"(pid {run.metadata().get('pid')}); wait for it or stop it first") from None
        yield


def prometheus_reader(settings: PrometheusSpec) -> PrometheusReader:
    """A reader with the spec's timeout and retry budget."""
    return PrometheusReader(settings.url, timeout_s=settings.timeout_s,
                            retry=RetryPolicy(attempts=settings.retry_attempts, budget_s=settings.retry_budget_s))


def continue_replay(testbed: Testbed, run: Run, session: int) -> None:
    """On the replay twin, go on after the last recorded sample with fresh draws (not a rerun of session 1)."""
    if not isinstance(testbed, ReplayTestbed):
        return
    ends = [pd.Timestamp(entry["end"]) for entry in completed_points(run).values() if entry.get("end")]
    if ends:
        testbed.clock = max(ends).to_pydatetime() + pd.Timedelta(seconds=1)
    testbed.rng = np.random.default_rng([int(run.metadata().get("seed", 0)), session])


class CampaignRunner:
    """Runs the points of ``spec`` that ``run``'s journal does not list as completed."""

    def __init__(self, spec: CampaignSpec, run: Run, testbed: Testbed, progress: Progress, pace: float = 0.0,
                 reader: PrometheusReader | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.spec = spec
        self.run = run
        self.testbed = testbed
        self.progress = progress
        self.pace = pace
        self.reader = reader
        self._sleep = sleep

    def execute(self) -> CampaignOutcome:
        """Run every pending point; returns what is complete and what is not."""
        removed = remove_orphans(self.run)
        if removed:
            self.run.log_event("orphan_parts_removed", parts=[str(path.relative_to(self.run.path)) for path in removed])
        points = plan_points(self.spec)
        done = completed_points(self.run)
        task = self.progress.add_task(f"campaign {self.spec.name}", total=len(points), completed=len(done))
        for point in points:
            if point.id not in done and self.run_point(point):
                self.progress.advance(task)
        return CampaignOutcome(len(points), len(completed_points(self.run)), incomplete_points(self.run))

    def run_point(self, point: Point) -> bool:
        """Measure one point and journal it; True if it completed, False if it is incomplete."""
        wall_start = time.time()
        started = time.monotonic()
        try:
            self._apply(point)
        except CommandError as exc:  # an actuator failed (ActuatorError) or its command did
            self._restore_safe_allocation(point, exc)
            return False
        try:
            samples = self._collect()
        except PrometheusUnavailable as exc:  # a testbed that measures through Prometheus
            record_incomplete(self.run, point, str(exc))
            return False
        if self.pace > 0:
            self._sleep(max(0.0, (self.spec.settle_s + self.spec.dwell_s) * self.pace - (time.monotonic() - started)))
        missing = self._missing_seconds(samples)
        if missing:
            record_incomplete(self.run, point, missing)
            return False
        try:
            metrics = self._metrics(wall_start, time.time())
        except PrometheusUnavailable as exc:
            record_incomplete(self.run, point, str(exc))
            return False
        if metrics is not None and metrics.empty:
            record_incomplete(self.run, point, "Prometheus returned no samples for the point's window")
            return False
        parts = [self._write(_annotate(samples, point), "samples")]
        if metrics is not None:
            parts.append(self._write(_annotate(metrics, point), "metrics"))
        record_completed(self.run, point, parts, len(samples), end=samples["time"].max())  # parts are durable now
        return True

    def _missing_seconds(self, samples: pd.DataFrame) -> str | None:
        """Why ``samples`` do not cover every slice for every second of the dwell, or None if they do."""
        counts = samples.groupby("slice").size() if not samples.empty else pd.Series(dtype=int)
        for slice_spec in self.spec.slices:
            got = int(counts.get(slice_spec.name, 0))
            if got != self.spec.dwell_s:
                return (f"slice {slice_spec.name}: the testbed returned {got} of {self.spec.dwell_s} one-second "
                        "samples")
        return None

    def _apply(self, point: Point) -> None:
        allocation = Allocation(point.cpu_millicores, point.bandwidth_mbps)
        with self._testbed_guard("applying the allocation"):
            for slice_spec in self.spec.slices:
                self.testbed.apply(slice_spec.name, allocation)
                self.testbed.set_traffic(slice_spec.name, point.users)

    def _collect(self) -> pd.DataFrame:
        with self._testbed_guard("collecting samples"):
            if self.spec.settle_s:
                self.testbed.collect(self.spec.settle_s)
            return self.testbed.collect(self.spec.dwell_s)

    def _metrics(self, start: float, end: float) -> pd.DataFrame | None:
        settings = self.spec.prometheus
        if settings is None or self.reader is None:
            return None
        frames = []
        for name, query in settings.queries.items():
            frame = self.reader.range(query, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC),
                                      settings.step_s)
            if frame.empty:
                return frame
            frames.append(frame.assign(query=name))
        return pd.concat(frames, ignore_index=True)

    def _restore_safe_allocation(self, point: Point, error: CommandError) -> None:
        restored = {}
        with self._testbed_guard("restoring the safe (peak) allocation"):
            for slice_spec in self.spec.slices:
                peak = Allocation(*slice_spec.bounds.upper)
                try:
                    self.testbed.apply(slice_spec.name, peak)
                except CommandError as again:
                    self.run.log_event("safe_allocation_failed", point=point.id, error=str(error), restore=str(again))
                    raise CampaignStopped(
                        f"{self.run.path}: actuator failure at {point.id} ({error}) and restoring the safe (peak) "
                        f"allocation of slice {slice_spec.name} failed too ({again}); check the testbed, then "
                        f"`slicebed campaign resume {self.run.id}`") from None
                restored[slice_spec.name] = {"cpu_millicores": peak.cpu_millicores,
                                             "bandwidth_mbps": peak.bandwidth_mbps}
        self.run.log_event("safe_allocation_restored", point=point.id, error=str(error), allocation=restored)
        record_incomplete(self.run, point, f"actuator failure: {error}; the safe (peak) allocation was restored")

    @contextmanager
    def _testbed_guard(self, doing: str) -> Iterator[None]:
        """Turn a lost testbed (node gone, connection dropped) into a resumable stop."""
        try:
            yield
        except (CommandError, PrometheusUnavailable):
            raise
        except (SlicebedError, OSError) as exc:
            raise CampaignStopped(f"{self.run.path}: testbed {self.testbed.name} failed while {doing} ({exc}); "
                                  f"the run is kept: fix the testbed, then `slicebed campaign resume "
                                  f"{self.run.id}`") from None

    def _write(self, frame: pd.DataFrame, table: str) -> Path:
        try:
            return self.run.append_samples(frame, table)
        except OSError as exc:
            for leftover in (self.run.path / table).glob(".part-*"):
                leftover.unlink()
            raise stop_if_disk_full(exc, self.run, f"writing {table}") from None


def is_disk_full(error: OSError) -> bool:
    """ENOSPC/EDQUOT, also when pyarrow reports it only in the message."""
    return error.errno in DISK_FULL or "No space left on device" in str(error) or "[errno 28]" in str(error)


def stop_if_disk_full(error: OSError, run: Run, doing: str) -> OSError | CampaignStopped:
    """A resumable :class:`CampaignStopped` for a full disk; any other OSError unchanged."""
    if not is_disk_full(error):
        return error
    return CampaignStopped(f"{run.path}: disk full while {doing}; nothing partial was kept; free space, then "
                           f"`slicebed campaign resume {run.id}`")


def _annotate(frame: pd.DataFrame, point: Point) -> pd.DataFrame:
    return frame.assign(point=point.id, point_index=point.index, repetition=point.repetition)
