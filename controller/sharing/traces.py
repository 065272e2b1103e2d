"""Slice traces: per-second state, aggregation into slots, quantization, and the trial/regular split.

A slice's state is (RRC-connected users, average downlink MCS). Its demand in PRBs is the per-user PRBs for the
slice's constant bitrate at that MCS (:mod:`controller.sharing.tbs`) times the users (paper Sec. VI-F). Slots of
``slot_s`` seconds sample the state at their first second and take the maximum demand over their seconds (or
the first second's, ``aggregation="sample"``); users, MCS and demand are then quantized by per-slice constants
(Sec. VI-G). A trace is cut into segments (days, or campaign points); slots never straddle two segments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from controller.sharing.tbs import MCS_MAX, TbsTable
from core.errors import InputError

Aggregation = Literal["max", "sample"]
JOINT_CODE = 64
"""Joint state code = users x 64 + MCS (a quantized MCS never reaches 64)."""


@dataclass(frozen=True)
class Quantization:
    """Quantization constants: users, MCS and demand round up to multiples of these (as the paper's code)."""

    users: int = 1
    mcs: int = 1
    demand_prb: int = 1


@dataclass(frozen=True)
class SecondTrace:
    """One slice's state each second: users and average MCS, with the segment each second belongs to.

    Construction checks the trace and raises :class:`InputError` naming ``source`` for negative users, an MCS
    outside 0-28, or a gap (a missing second) inside a segment.
    """

    source: str
    time: np.ndarray
    users: np.ndarray
    mcs: np.ndarray
    segment: np.ndarray
    segment_labels: tuple[str, ...]

    def __post_init__(self) -> None:
        lengths = {len(self.time), len(self.users), len(self.mcs), len(self.segment)}
        if len(lengths) != 1 or not len(self.time):
            raise InputError(f"{self.source}: the trace is empty or its columns differ in length")
        negative = np.flatnonzero(self.users < 0)
        if negative.size:
            first = negative[0]
            raise InputError(f"{self.source}: negative users ({self.users[first]:g}) at {_when(self.time[first])}")
        bad = np.flatnonzero(~np.isfinite(self.mcs) | (self.mcs < 0) | (self.mcs > MCS_MAX))
        if bad.size:
            first = bad[0]
            raise InputError(f"{self.source}: MCS {self.mcs[first]:g} outside 0-{MCS_MAX} at {_when(self.time[first])}")
        same_segment = self.segment[1:] == self.segment[:-1]
        steps = np.diff(self.time)
        gaps = np.flatnonzero(same_segment & (steps != 1))
        if gaps.size:
            first = gaps[0]
            label = self.segment_labels[self.segment[first]]
            raise InputError(f"{self.source}: {label}: the trace has a gap of {steps[first] - 1} s after "
                             f"{_when(self.time[first])} (one sample per second is needed)")


def _when(unix_s: float) -> str:
    try:
        return datetime.fromtimestamp(float(unix_s), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):
        return f"time {unix_s}"


@dataclass(frozen=True)
class SlotTrace:
    """A slice's trace in slots: quantized state and demand, plus the per-second values anomalies rescale."""

    name: str
    users: np.ndarray
    mcs: np.ndarray
    demand: np.ndarray
    second_users: np.ndarray
    second_prbs: np.ndarray
    start: np.ndarray
    segment_labels: tuple[str, ...]
    segment: np.ndarray
    quantization: Quantization
    aggregation: Aggregation

    def __len__(self) -> int:
        return len(self.demand)

    def take(self, index: slice | np.ndarray) -> SlotTrace:
        """The slots at ``index`` (a slice or a boolean mask)."""
        return replace(self, users=self.users[index], mcs=self.mcs[index], demand=self.demand[index],
                       second_users=self.second_users[index], second_prbs=self.second_prbs[index],
                       start=self.start[index], segment=self.segment[index])

    def with_users(self, users: np.ndarray) -> SlotTrace:
        """This trace with the quantized users replaced by ``users``: each second's users shift by the slot's
        change and the demand is recomputed (how an anomalous user chain raises the demand)."""
        shift = (users - self.users)[:, None]
        second_users = np.maximum(self.second_users + shift, 0)
        demand = slot_demand(second_users, self.second_prbs, self.aggregation, self.quantization.demand_prb)
        return replace(self, users=users.astype(np.int64), second_users=second_users, demand=demand)

    def components(self, joint: bool) -> list[np.ndarray]:
        """The state sequences the Markov chains model: one joint (users, MCS) code, or users and MCS apart."""
        if joint:
            return [self.users * JOINT_CODE + self.mcs]
        return [self.users, self.mcs]

    @property
    def span(self) -> tuple[int, int]:
        """First and last second covered."""
        return int(self.start.min()), int(self.start.max()) + self.second_users.shape[1] - 1


def quantize_up(values: np.ndarray, step: int) -> np.ndarray:
    """``values`` rounded up to multiples of ``step``."""
    return (np.ceil(values / step) * step).astype(np.int64)


def slot_demand(second_users: np.ndarray, second_prbs: np.ndarray, aggregation: Aggregation,
                step: int) -> np.ndarray:
    """Each slot's demand: users x per-user PRBs per second, max over the slot (or its first second), rounded up."""
    per_second = second_users * second_prbs
    demand = per_second.max(axis=1) if aggregation == "max" else per_second[:, 0]
    return quantize_up(demand, step)


def to_slots(trace: SecondTrace, name: str, bitrate_mbps: float, table: TbsTable, slot_s: int,
             quantization: Quantization, aggregation: Aggregation = "max") -> SlotTrace:
    """Aggregate ``trace`` into slots of ``slot_s`` seconds within each segment (a partial last slot is dropped).

    Raises:
        InputError: the bitrate cannot be reached at some MCS, or a segment is shorter than one slot.
    """
    prbs_per_user = table.prbs_per_user(bitrate_mbps)
    rows: list[np.ndarray] = []
    for index, label in enumerate(trace.segment_labels):
        seconds = np.flatnonzero(trace.segment == index)
        slots = len(seconds) // slot_s
        if slots == 0:
            raise InputError(f"{trace.source}: {label}: {len(seconds)} s of data, shorter than one {slot_s} s slot")
        rows.append(seconds[: slots * slot_s].reshape(slots, slot_s))
    positions = np.concatenate(rows)
    second_users = trace.users[positions].astype(np.int64)
    second_mcs = np.floor(trace.mcs[positions]).astype(np.int64)
    second_prbs = prbs_per_user[second_mcs]
    users = quantize_up(second_users[:, 0], quantization.users)
    mcs = quantize_up(second_mcs[:, 0], quantization.mcs)
    return SlotTrace(name=name, users=users, mcs=mcs,
                     demand=slot_demand(second_users, second_prbs, aggregation, quantization.demand_prb),
                     second_users=second_users, second_prbs=second_prbs, start=trace.time[positions[:, 0]],
                     segment_labels=trace.segment_labels, segment=trace.segment[positions[:, 0]],
                     quantization=quantization, aggregation=aggregation)


def split_phases(trace: SlotTrace, trial_segments: int, regular_segments: int) -> tuple[SlotTrace, SlotTrace]:
    """The trial phase (the first ``trial_segments`` segments) and the regular phase (the next ones).

    The two come from disjoint segments, so the regular phase never sees a trial sample.
    """
    available = len(trace.segment_labels)
    if trial_segments + regular_segments > available:
        raise InputError(f"slice {trace.name}: {trial_segments} trial + {regular_segments} regular segments asked, "
                         f"the trace has {available} ({', '.join(trace.segment_labels)})")
    trial = trace.take(trace.segment < trial_segments)
    regular = trace.take((trace.segment >= trial_segments) & (trace.segment < trial_segments + regular_segments))
    return trial, regular


def ensure_disjoint(name: str, trial_span: tuple[int, int], regular: SlotTrace) -> None:
    """Refuse a regular phase that overlaps the trial phase in time: evaluating on trial data measures nothing."""
    first, last = trial_span
    inside = (regular.start + regular.second_users.shape[1] - 1 >= first) & (regular.start <= last)
    if inside.any():
        raise InputError(f"slice {name}: the regular phase overlaps the trial phase ({inside.sum()} slots from "
                         f"{_when(regular.start[inside][0])}); the two phases must come from disjoint ranges")
