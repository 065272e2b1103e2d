"""Validating a level's allocation on the testbed: its traffic, the safety guard, and the verdict.

The allocation is applied and held ``validation.settle_s`` seconds; then the level's traffic runs for
``validation.window_s`` seconds (a user count drawn from the level every ``hold_s`` seconds, a trace as recorded)
while the guard (:mod:`controller.loop.guard`) judges each second. The window is judged by eq. (1) and the
one-sided test of :mod:`controller.loop.evidence`: ``fail`` (above beta_thresh with evidence at
``validation.alpha``, or the guard fell back), ``pass`` (within beta_thresh and, if ``validation.tolerance`` is
set, within it of the expected degradation), else ``retry``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import astuple
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import Progress

from controller.loop.evidence import window_evidence
from controller.loop.guard import SafetyGuard
from controller.spec import ExperimentSpec, SliceSpec, TraceTraffic, TrafficSpec
from controller.testbeds.base import Allocation, Testbed
from core.runstore import Run

VERDICT_ORDER = ("pass", "retry", "fail")
"""Verdicts from best to worst; a level's verdict is its worst slice's."""

TestbedGuard = Callable[[str], AbstractContextManager[None]]
"""Turns a lost testbed into a resumable stop while doing what the string says (the sweep runner's)."""


class LevelValidator:
    """Validates chosen allocations on ``testbed`` and judges them against the spec's thresholds."""

    def __init__(self, spec: ExperimentSpec, testbed: Testbed, run: Run, progress: Progress,
                 testbed_guard: TestbedGuard) -> None:
        self.spec = spec
        self.testbed = testbed
        self.run = run
        self.progress = progress
        self.testbed_guard = testbed_guard
        self.safe = {s.name: Allocation(*s.bounds.upper) for s in spec.slices}

    def window(self, round_index: int, level: int,
               chosen: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, int]]:
        """Apply the chosen allocations and drive the level's traffic for the window, the guard watching.

        The testbed is read in chunks of unchanged users (at most ``hold_s`` seconds), and the guard judges each
        chunk's seconds in turn. Returns the window's samples (``fallback`` marks seconds a slice spent on its safe
        allocation) and, per slice the guard moved to its safe (peak) allocation, the second it did. Once every
        slice has fallen back, the safe allocations are measured for ``guard.recovery_s`` seconds and the window
        ends: nothing is left to validate.
        """
        validation = self.spec.validation
        rng = np.random.default_rng([self.spec.seed, round_index, level])
        series = {s.name: level_series(s.traffic[level], validation.window_s, validation.hold_s, rng)
                  for s in self.spec.slices}
        guards = {s.name: SafetyGuard(validation.guard, s.q_thresh, s.beta_thresh, validation.window_s,
                                      higher_is_better=s.higher_is_better) for s in self.spec.slices}
        fallbacks: dict[str, int] = {}
        frames = []
        with self.testbed_guard(f"validating round {round_index}, level {level + 1}"):
            for slice_spec in self.spec.slices:
                allocation = Allocation(*chosen["allocations"][slice_spec.name])
                allocation.check_within(slice_spec.bounds.lower, slice_spec.bounds.upper, slice_spec.name)
                self.testbed.apply(slice_spec.name, allocation)
                self.testbed.set_traffic(slice_spec.name, int(series[slice_spec.name][0]))
            if validation.settle_s:
                self.testbed.collect(validation.settle_s)
            task = self.progress.add_task(f"round {round_index}: validate level {level + 1}",
                                          total=validation.window_s)
            for start, length in chunks(np.stack(list(series.values())), validation.hold_s):
                for name, users in series.items():
                    self.testbed.set_traffic(name, int(users[start]))
                frame = self.read(length)
                frames.append(frame.assign(fallback=frame["slice"].isin(list(fallbacks))))
                self.progress.advance(task, length)
                for name in sorted(set(frame["slice"]) - set(fallbacks)):
                    seconds = frame[frame["slice"] == name]
                    if any(guards[name].observe(float(users), float(qos)) is not None
                           for users, qos in zip(seconds["n_users"], seconds["qos"], strict=True)):
                        fallbacks[name] = start + length
                        self.fall_back(round_index, level, name, start + length, guards[name])
                if len(fallbacks) == len(self.spec.slices):
                    if validation.guard.recovery_s:  # what the safe allocation restores, for the record
                        frames.append(self.read(validation.guard.recovery_s).assign(fallback=True))
                    break
        samples = pd.concat(frames, ignore_index=True).assign(round=round_index, level=level)
        holdout = np.random.default_rng([self.spec.seed, round_index, level, 1]).random(len(samples))
        return samples.assign(holdout=holdout < self.spec.training.validation_fraction), fallbacks

    def read(self, seconds: int) -> pd.DataFrame:
        """The testbed's next ``seconds`` of samples, in time order."""
        return self.testbed.collect(seconds).sort_values("time", kind="stable")

    def fall_back(self, round_index: int, level: int, slice_name: str, second: int, guard: SafetyGuard) -> None:
        """Give the slice its safe (peak) allocation and log ``safety_fallback`` with the guard's evidence."""
        self.testbed.apply(slice_name, self.safe[slice_name])
        evidence = guard.evidence()
        self.run.log_event("safety_fallback", round=round_index, level=level, slice=slice_name, second=second,
                           degradation=round(evidence.degradation, 4), bound=evidence.bound,
                           p_value=evidence.p_value, allocation=list(astuple(self.safe[slice_name])))

    def judge(self, round_index: int, level: int, slice_spec: SliceSpec, chosen: dict[str, Any],
              samples: pd.DataFrame, fallback_second: int | None) -> dict[str, Any]:
        """The result row of one slice's window: allocation, expected against measured degradation, verdict."""
        measured = samples[(samples["slice"] == slice_spec.name) & ~samples["fallback"]]
        evidence = window_evidence(measured, slice_spec.q_thresh, slice_spec.beta_thresh,
                                   higher_is_better=slice_spec.higher_is_better)
        expected = float(chosen["expected"][slice_spec.name])
        agrees = self.spec.validation.tolerance is None or abs(
            expected - evidence.degradation) <= self.spec.validation.tolerance
        if fallback_second is not None or evidence.exceeds(self.spec.validation.alpha):
            verdict = "fail"
        elif evidence.degradation <= slice_spec.beta_thresh and agrees:
            verdict = "pass"
        else:
            verdict = "retry"
        cpu, bandwidth = chosen["allocations"][slice_spec.name]
        eta = self.spec.resources.eta
        return {
            "round": round_index,
            "level": level,
            "slice": slice_spec.name,
            "traffic": slice_spec.traffic[level].label,
            "traffic_mean": float(measured["n_users"].mean()) if len(measured) else math.nan,
            "method": chosen["method"],
            "cpu_millicores": float(cpu),
            "bandwidth_mbps": float(bandwidth),
            "normalized": float(cpu * eta.cpu_millicores + bandwidth * eta.bandwidth_mbps),
            "feasible": bool(chosen["feasible"]),
            "solve_seconds": float(chosen["solve_seconds"]),
            "q_thresh": slice_spec.q_thresh,
            "beta_thresh": slice_spec.beta_thresh,
            "beta_target": slice_spec.beta_thresh - self.spec.optimizer.beta_margin,
            "expected_degradation": expected,
            "achieved_degradation": evidence.degradation,
            "p_value": evidence.p_value,
            "effective_seconds": evidence.effective_seconds,
            "verdict": verdict,
            "fallback": fallback_second is not None,
            "fallback_second": float(fallback_second) if fallback_second is not None else math.nan,
            "mean_qos": float(measured["qos"].mean()) if len(measured) else math.nan,
            "seconds": len(measured),
        }


def chunks(users: np.ndarray, longest: int) -> list[tuple[int, int]]:
    """(start, length) of the runs of seconds in which no slice's users change, each at most ``longest`` long.

    ``users`` has one row per slice and one column per second.
    """
    runs: list[tuple[int, int]] = []
    for second in range(users.shape[1]):
        if runs and runs[-1][1] < longest and (users[:, second] == users[:, runs[-1][0]]).all():
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((second, 1))
    return runs


def level_series(profile: TrafficSpec, seconds: int, hold_s: int, rng: np.random.Generator) -> np.ndarray:
    """Whole users for each second of a window: a trace as recorded, else a draw from the level held ``hold_s`` s."""
    if isinstance(profile, TraceTraffic):
        values = profile.series(seconds, rng)
    else:
        values = np.repeat(profile.series(-(-seconds // hold_s), rng), hold_s)[:seconds]
    users: np.ndarray = np.maximum(1, np.rint(values)).astype(int)
    return users
