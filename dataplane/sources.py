"""Per-user packet sources of the app server, one kind per slice type (core.slice_types).

A source is an endless iterator of (seconds after the previous packet, payload bytes); a size of 0 is a pause.

- eMBB ``video``: the per-user rate profile (a constant or a per-second trace), modulated per video frame by a
  log-normal size factor, each frame's packets paced evenly within the frame;
- URLLC ``interactive``: small packets with exponential inter-arrival times (short mean);
- mMTC ``periodic``: a group of devices, each sending one small message per period at its own phase;
- ``replay``: a recorded :class:`~core.packet_trace.PacketTrace`, each user starting at another offset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.packet_trace import PacketTrace
from core.slice_types import SliceType
from dataplane.packets import APP

Source = Iterator[tuple[float, int]]
MIN_BYTES = APP.size
"""The smallest payload the app server sends (its header: user, sequence, send time)."""


class RateProfile:
    """Per-user rate in bit/s at a time: a constant, or a per-second trace replayed cyclically."""

    def __init__(self, rate_mbps: float, trace_mbps: list[float] | None = None) -> None:
        values = trace_mbps or [rate_mbps]
        if any(not math.isfinite(v) or v < 0 for v in values) or not values:
            raise ValueError("rates must be finite and >= 0 Mbps")
        self.trace = np.asarray(values, dtype=float) * 1e6

    def rate(self, user: int, seconds: float) -> float:
        return float(self.trace[(int(seconds) + 7 * user) % len(self.trace)])

    def describe(self) -> dict[str, Any]:
        if len(self.trace) == 1:
            return {"rate_mbps": self.trace[0] / 1e6, "rate_trace": None}
        return {"rate_mbps": None, "rate_trace": (self.trace / 1e6).tolist()}


@dataclass(frozen=True)
class SourceSettings:
    """How a slice's users send (the app server's command line)."""

    slice_type: SliceType = "embb"
    packet_bytes: int = 1400
    fps: float = 30.0
    vbr_sigma: float = 0.25
    interval_ms: float = 2.0
    devices: int = 500
    period_s: float = 1.0
    trace: PacketTrace | None = None


def user_source(settings: SourceSettings, profile: Callable[[], RateProfile], user: int,
                rng: np.random.Generator) -> Source:
    """The packets of ``user``: the recorded trace if there is one, else the slice type's generator."""
    if settings.trace is not None:
        return replay(settings.trace, user)
    if settings.slice_type == "urllc":
        return interactive(settings.interval_ms / 1000, settings.packet_bytes, rng)
    if settings.slice_type == "mmtc":
        return periodic(settings.devices, settings.period_s, settings.packet_bytes, rng)
    return video(profile, user, settings.fps, settings.vbr_sigma, settings.packet_bytes, rng)


def video(profile: Callable[[], RateProfile], user: int, fps: float, vbr_sigma: float, packet_bytes: int,
          rng: np.random.Generator) -> Source:
    """eMBB: frames of rate/fps bits times a log-normal factor (mean 1), split into paced packets."""
    frame_s, elapsed = 1 / fps, 0.0
    while True:
        factor = float(rng.lognormal(-vbr_sigma**2 / 2, vbr_sigma)) if vbr_sigma else 1.0
        frame_bytes = profile().rate(user, elapsed) / 8 * frame_s * factor
        count = math.ceil(frame_bytes / packet_bytes) if frame_bytes >= MIN_BYTES else 0
        if count == 0:
            yield frame_s, 0
        last = max(MIN_BYTES, round(frame_bytes - packet_bytes * (count - 1)))
        for index in range(count):
            yield frame_s / count, packet_bytes if index < count - 1 else last
        elapsed += frame_s


def interactive(mean_gap_s: float, packet_bytes: int, rng: np.random.Generator) -> Source:
    """URLLC: ``packet_bytes`` packets at exponential inter-arrival times of mean ``mean_gap_s``."""
    while True:
        yield float(rng.exponential(mean_gap_s)), packet_bytes


def periodic(devices: int, period_s: float, packet_bytes: int, rng: np.random.Generator) -> Source:
    """mMTC: ``devices`` devices, each one ``packet_bytes`` message per ``period_s`` at a random phase."""
    phases = np.sort(rng.uniform(0, period_s, devices))
    gaps = np.diff(phases, prepend=phases[-1] - period_s)
    while True:
        for gap in gaps:
            yield float(gap), packet_bytes


def replay(trace: PacketTrace, user: int) -> Source:
    """A recorded trace, cyclically, user ``u`` starting ``7919 u`` packets in (users do not send in lockstep)."""
    start = 7919 * user % len(trace.sizes)
    while True:
        for index in range(len(trace.sizes)):
            position = (start + index) % len(trace.sizes)
            yield trace.gaps_s[position], max(MIN_BYTES, trace.sizes[position])
