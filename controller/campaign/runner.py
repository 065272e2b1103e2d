"""Runs a sweep's pending points on a testbed, journaling each one so a crash costs at most one point.

Campaigns and the closed loop's sweeps both run here. Per point: apply the allocation to every slice,
start the traffic, hold ``settle_s`` (discarded) and ``dwell_s`` seconds (collected), fetch the point's
Prometheus series if the sweep asks for them, write the Parquet parts (temp + fsync + rename) and only
then journal the point as completed.

Faults:

- Prometheus down or slow: the reader retries with backoff; then the point is journaled *incomplete*
  (nothing written for it) and the sweep goes on; a resume redoes it.
- Actuator failure: every slice gets its safe allocation (the upper bounds: peak), the run's event log
  says so, and the point is incomplete.
- Testbed lost (a node or the connection to it): :class:`RunStopped`; the run stays resumable.
- Disk full: the half-written temp file is removed, :class:`RunStopped`; no corrupt Parquet remains.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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
from controller.campaign.plan import Point, Sweep
from controller.campaign.spec import PrometheusSpec
from controller.testbeds.base import Allocation, Testbed
from core.commands import CommandError
from core.errors import RunStopped, SlicebedError
from core.runstore import Run

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

Annotate = Callable[[pd.DataFrame, Point], pd.DataFrame]
"""Adds the columns a sweep's owner needs to a point's samples before they are written."""


@dataclass(frozen=True)
class SweepOutcome:
    total: int
    completed: int
    incomplete: dict[str, str]
    """Point id -> why it is incomplete (a resume redoes it)."""


def prometheus_reader(settings: PrometheusSpec) -> PrometheusReader:
    """A reader with the spec's timeout and retry budget."""
    return PrometheusReader(settings.url, timeout_s=settings.timeout_s,
                            retry=RetryPolicy(attempts=settings.retry_attempts, budget_s=settings.retry_budget_s))


class SweepRunner:
    """Measures the points of a :class:`Sweep` that ``run``'s journal does not list as completed.

    Args:
        resume: the command that goes on after a stop, named in the stop's message.
        pace: wall seconds per testbed second to wait at each point (the replay twin answers at once).
        reader: the Prometheus reader for the sweep's series, if it exports any.
        annotate: adds the caller's own columns to each point's samples (the runner adds ``point``,
            ``point_index``, ``repetition`` and, in a loop, ``round``).
    """

    def __init__(self, sweep: Sweep, run: Run, testbed: Testbed, progress: Progress, resume: str,
                 pace: float = 0.0, reader: PrometheusReader | None = None, annotate: Annotate | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.sweep = sweep
        self.run = run
        self.testbed = testbed
        self.progress = progress
        self.resume = resume
        self.pace = pace
        self.reader = reader
        self.annotate = annotate
        self._sleep = sleep

    def execute(self, points: Sequence[Point], label: str | None = None) -> SweepOutcome:
        """Remove orphan parts, then run every pending point of ``points``; returns what is complete and what not."""
        removed = remove_orphans(self.run)
        if removed:
            self.run.log_event("orphan_parts_removed", parts=[str(path.relative_to(self.run.path)) for path in removed])
        done = completed_points(self.run)
        planned = {point.id for point in points}
        task = self.progress.add_task(label or self.sweep.name, total=len(points),
                                      completed=len(planned & done.keys()))
        for point in points:
            if point.id not in done and self.run_point(point):
                self.progress.advance(task)
        completed = completed_points(self.run)
        incomplete = {point: reason for point, reason in incomplete_points(self.run).items() if point in planned}
        return SweepOutcome(len(points), len(planned & completed.keys()), incomplete)

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
            self._sleep(max(0.0, (self.sweep.settle_s + self.sweep.dwell_s) * self.pace - (time.monotonic() - started)))
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
        parts = [self._write(self._annotated(samples, point), "samples")]
        if metrics is not None:
            parts.append(self._write(annotated(metrics, point), "metrics"))
        record_completed(self.run, point, parts, len(samples), end=samples["time"].max())  # parts are durable now
        return True

    def _missing_seconds(self, samples: pd.DataFrame) -> str | None:
        """Why ``samples`` do not cover every slice for every second of the dwell, or None if they do."""
        counts = samples.groupby("slice").size() if not samples.empty else pd.Series(dtype=int)
        for slice_name in self.sweep.safe_allocations:
            got = int(counts.get(slice_name, 0))
            if got != self.sweep.dwell_s:
                return (f"slice {slice_name}: the testbed returned {got} of {self.sweep.dwell_s} one-second "
                        "samples")
        return None

    def _apply(self, point: Point) -> None:
        allocation = Allocation(point.cpu_millicores, point.bandwidth_mbps)
        with self.testbed_guard("applying the allocation"):
            for slice_name in self.sweep.safe_allocations:
                self.testbed.apply(slice_name, allocation)
                self.testbed.set_traffic(slice_name, point.users)

    def _collect(self) -> pd.DataFrame:
        with self.testbed_guard("collecting samples"):
            if self.sweep.settle_s:
                self.testbed.collect(self.sweep.settle_s)
            return self.testbed.collect(self.sweep.dwell_s)

    def _metrics(self, start: float, end: float) -> pd.DataFrame | None:
        settings = self.sweep.prometheus
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
        with self.testbed_guard("restoring the safe (peak) allocation"):
            for slice_name, peak in self.sweep.safe_allocations.items():
                try:
                    self.testbed.apply(slice_name, peak)
                except CommandError as again:
                    self.run.log_event("safe_allocation_failed", point=point.id, error=str(error), restore=str(again))
                    raise RunStopped(
                        f"{self.run.path}: actuator failure at {point.id} ({error}) and restoring the safe (peak) "
                        f"allocation of slice {slice_name} failed too ({again}); check the testbed, then "
                        f"`{self.resume}`") from None
                restored[slice_name] = {"cpu_millicores": peak.cpu_millicores, "bandwidth_mbps": peak.bandwidth_mbps}
        self.run.log_event("safe_allocation_restored", point=point.id, error=str(error), allocation=restored)
        record_incomplete(self.run, point, f"actuator failure: {error}; the safe (peak) allocation was restored")

    @contextmanager
    def testbed_guard(self, doing: str) -> Iterator[None]:
        """Turn a lost testbed (node gone, connection dropped) into a resumable stop."""
        try:
            yield
        except (CommandError, PrometheusUnavailable):
            raise
        except (SlicebedError, OSError) as exc:
            raise RunStopped(f"{self.run.path}: testbed {self.testbed.name} failed while {doing} ({exc}); "
                             f"the run is kept: fix the testbed, then `{self.resume}`") from None

    def _write(self, frame: pd.DataFrame, table: str) -> Path:
        try:
            return self.run.append_samples(frame, table)
        except OSError as exc:
            for leftover in (self.run.path / table).glob(".part-*"):
                leftover.unlink()
            raise stop_if_disk_full(exc, self.run, f"writing {table}", self.resume) from None

    def _annotated(self, samples: pd.DataFrame, point: Point) -> pd.DataFrame:
        samples = annotated(samples, point)
        return self.annotate(samples, point) if self.annotate is not None else samples


def is_disk_full(error: OSError) -> bool:
    """ENOSPC/EDQUOT, also when pyarrow reports it only in the message."""
    return error.errno in DISK_FULL or "No space left on device" in str(error) or "[errno 28]" in str(error)


def stop_if_disk_full(error: OSError, run: Run, doing: str, resume: str) -> OSError | RunStopped:
    """A resumable :class:`RunStopped` for a full disk (naming the ``resume`` command); any other OSError unchanged."""
    if not is_disk_full(error):
        return error
    return RunStopped(f"{run.path}: disk full while {doing}; nothing partial was kept; free space, then `{resume}`")


def annotated(frame: pd.DataFrame, point: Point) -> pd.DataFrame:
    """``frame`` with the point's id, index and repetition (and round, in a loop) as columns."""
    frame = frame.assign(point=point.id, point_index=point.index, repetition=point.repetition)
    return frame.assign(round=point.round) if point.round is not None else frame
