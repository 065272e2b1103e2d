"""Synthetic slice traces: Markov users and MCS each second, shaped by an hourly day profile.

Users follow an M/M/inf birth-death chain: arrivals are Poisson with rate ``users_mean x profile(hour) /
holding_s`` per second and each user stays a geometric number of seconds (mean ``holding_s``), so the users
hover around ``users_mean x profile`` and change smoothly. Each day starts in that chain's stationary state. The
average MCS follows a mean-reverting AR(1) chain (time constant ``mcs_memory_s``), clipped to 0-28.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from scipy.signal import lfilter

from controller.sharing.spec import SyntheticSource
from controller.sharing.tbs import MCS_MAX
from controller.sharing.traces import SecondTrace

EPOCH = datetime(2020, 5, 25, tzinfo=UTC)
"""Day 0 of synthetic traces (a Monday, as the paper's first trial day)."""


def synthetic_trace(source: SyntheticSource, days: int, rng: np.random.Generator, label: str) -> SecondTrace:
    """``days`` consecutive days of ``source``'s hour window, one sample per second."""
    times, users, mcs, segments, labels = [], [], [], [], []
    profile = np.asarray(source.day_profile or [1.0] * (source.hours[1] - source.hours[0]))
    for day in range(days):
        start = EPOCH + timedelta(days=day, hours=source.hours[0])
        mean = np.repeat(source.users_mean * profile, 3600)
        times.append(int(start.timestamp()) + np.arange(len(mean)))
        users.append(_users(mean, source.holding_s, rng))
        mcs.append(_mcs(len(mean), source, rng))
        segments.append(np.full(len(mean), day))
        labels.append(start.strftime("%Y-%m-%d"))
    return SecondTrace(source=label, time=np.concatenate(times), users=np.concatenate(users),
                       mcs=np.concatenate(mcs), segment=np.concatenate(segments), segment_labels=tuple(labels))


def _users(mean: np.ndarray, holding_s: float, rng: np.random.Generator) -> np.ndarray:
    """Connected users each second of an M/M/inf chain whose stationary mean follows ``mean``."""
    length = len(mean)
    arrivals = rng.poisson(mean / holding_s)
    starts = np.concatenate([np.zeros(rng.poisson(mean[0]), dtype=np.int64), np.repeat(np.arange(length), arrivals)])
    ends = np.minimum(starts + rng.geometric(min(1.0 / holding_s, 1.0), size=len(starts)), length)
    change = np.bincount(starts, minlength=length + 1) - np.bincount(ends, minlength=length + 1)
    return np.cumsum(change)[:length]


def _mcs(length: int, source: SyntheticSource, rng: np.random.Generator) -> np.ndarray:
    """Average MCS each second: AR(1) around ``mcs_mean`` with stationary std ``mcs_std``."""
    memory = np.exp(-1.0 / source.mcs_memory_s)
    noise = rng.normal(0.0, source.mcs_std * np.sqrt(1.0 - memory**2), length)
    first = rng.normal(0.0, source.mcs_std)
    deviation = lfilter([1.0], [1.0, -memory], noise, zi=[memory * first])[0]
    return np.clip(source.mcs_mean + deviation, 0.0, MCS_MAX)
