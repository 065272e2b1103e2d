"""The closed loop: measure, retrain, optimize, apply, validate, and measure again where validation says so.

Round 1 measures the spec's design (``sweep.design`` over the user counts the levels validate). Every round:

1. **Sweep** its planned points through the campaign's sweep runner and journal (one Parquet part per point,
   journaled once durable).
2. **Retrain** each slice's model on every sample so far, sweep points and earlier validation windows alike
   (plus the spec's extra datasets), warm-starting from the round before.
3. For every level not yet passed: **optimize** against ``beta_thresh - optimizer.beta_margin``, **apply** the
   allocation and **validate** it over ``validation.window_s`` seconds of the level's traffic, the safety guard
   (:mod:`controller.loop.guard`) watching every second.
4. **Judge** each level: ``pass`` (measured degradation <= beta_thresh and, if ``validation.tolerance`` is set,
   within it of the expected one), ``fail`` (above beta_thresh with evidence at ``validation.alpha``, or the
   guard fell back), else ``retry``.

A level that passed keeps its allocation. The next round's sweep targets the levels that failed
(:mod:`controller.loop.design`); the loop stops when every level passed or after ``rounds`` rounds. Each decision
and measurement is journaled (:mod:`controller.loop.journal`), so ``slicebed loop resume`` goes on where a killed
loop stopped without measuring a completed point again.
"""

from __future__ import annotations

import json
import math
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from analysis.calibration import MIN_CALIBRATION_GROUPS
from analysis.slice_model import EnsembleConfig, ModelConfig, PaperConfig, SliceModel, load_model
from analysis.training import TrainingConfig, save_training, train
from analysis.validation import count_groups
from collectors.dataset import drop_settling, load_qos_csvs
from controller.campaign.export import export_samples, journaled_table, run_provenance
from controller.campaign.plan import Point, Sweep
from controller.campaign.runner import SweepRunner
from controller.loop.design import FailedLevel, first_round_targets, numbered_points, targeted_targets
from controller.loop.evidence import window_evidence
from controller.loop.guard import SafetyGuard
from controller.loop.journal import RESULTS_TABLE, VALIDATION_TABLE, LoopJournal
from controller.optimizers import solve
from controller.problem import Problem, SliceProblem
from controller.spec import ExperimentSpec, SliceSpec, TraceTraffic, TrafficSpec, TrainingSpec
from controller.testbeds.base import Allocation, Testbed
from core.errors import InputError
from core.runstore import Run, write_json_atomic

VERDICT_ORDER = ("pass", "retry", "fail")
"""Verdicts from best to worst; a level's verdict is its worst slice's."""
HISTORY_FILE = "history.json"
CALIBRATION_FOLDS = 5
"""Grouped cross-validation folds that calibrate sigma each round (once the data hold enough allocations)."""


@dataclass
class SliceRound:
    """A slice's model after a round's training, with its ``metrics.json`` and loss history."""

    model: SliceModel
    metrics: dict[str, Any]
    history: list[dict[str, float]]


@dataclass(frozen=True)
class LoopOutcome:
    """The validated rows of every round and each level's last verdict."""

    results: pd.DataFrame
    verdicts: dict[int, str]
    rounds: int

    @property
    def holds(self) -> bool:
        """Whether every level passed."""
        return all(verdict == "pass" for verdict in self.verdicts.values())


@dataclass
class LoopInputs:
    """What a spec names besides its testbed: initial slice models and extra training data."""

    models: dict[str, SliceModel | None]
    extra_data: pd.DataFrame | None

    @classmethod
    def load(cls, spec: ExperimentSpec) -> LoopInputs:
        """Read them all (raising :class:`InputError` on a bad one) before any run directory exists."""
        extra = None
        if spec.training.datasets:
            extra = load_qos_csvs(spec.training.datasets, settle_s=spec.training.settle_s)
            rng = np.random.default_rng(spec.seed)
            extra = extra.assign(holdout=rng.random(len(extra)) < spec.training.validation_fraction)
        models = {s.name: load_model(s.model) if s.model is not None else None for s in spec.slices}
        for slice_spec in spec.slices:
            model = models[slice_spec.name]
            if model is not None and spec.training.warm_start and model.arch != spec.training.arch:
                raise InputError(f"{slice_spec.model}: a {model.arch} model cannot warm-start training.arch "
                                 f"{spec.training.arch}; set training.arch: {model.arch} or warm_start: false")
        return cls(models=models, extra_data=extra)


class ClosedLoop:
    """Runs (or resumes) an :class:`ExperimentSpec` on a testbed, recording everything in ``run``."""

    def __init__(self, spec: ExperimentSpec, inputs: LoopInputs, testbed: Testbed, run: Run, progress: Progress,
                 device: torch.device | str = "cpu") -> None:
        self.spec = spec
        self.testbed = testbed
        self.run = run
        self.progress = progress
        self.device = device
        self.models = dict(inputs.models)
        self.extra_data = inputs.extra_data
        self.final_rounds: dict[str, SliceRound] = {}
        self.incomplete_points: dict[str, str] = {}
        """Sweep point id -> why it could not be measured (left out of training)."""
        self.journal = LoopJournal.read(run)
        self.safe = {s.name: Allocation(*s.bounds.upper) for s in spec.slices}
        self.sweeper = SweepRunner(Sweep(spec.name, self.safe, spec.sweep.dwell_s), run, testbed, progress,
                                   resume=f"slicebed loop resume {run.path}", annotate=self._holdout)

    @property
    def levels(self) -> int:
        return len(self.spec.slices[0].traffic)

    def execute(self) -> LoopOutcome:
        """Run every round still to run; returns every validated row and each level's last verdict."""
        removed = self.journal.remove_orphans()
        if removed:
            self.run.log_event("orphan_parts_removed", parts=[str(path.relative_to(self.run.path)) for path in removed])
        open_levels = list(range(self.levels))
        verdicts: dict[int, str] = {}
        round_index = 0
        for round_index in range(1, self.spec.rounds + 1):
            if round_index not in self.journal.plans:
                self.run.log_event("round_started", round=round_index, levels=open_levels)
            self.sweep(round_index, self.plan(round_index))
            self.export_datasets()
            self.final_rounds = {s.name: self.retrain(round_index, s.name) for s in self.spec.slices}
            for level in open_levels:
                verdicts[level] = self.validate_level(round_index, level)
            if round_index not in self.journal.finished_rounds:
                self.journal.record_round(round_index, {level: verdicts[level] for level in open_levels})
            open_levels = [level for level in open_levels if verdicts[level] != "pass"]
            if not open_levels:
                break
        return LoopOutcome(self.journal.table(RESULTS_TABLE), verdicts, round_index)

    # --- planning and sweeping ------------------------------------------------------------------------------

    def plan(self, round_index: int) -> list[Point]:
        """The round's sweep points: the journaled plan, else the design (round 1) or the targeted sweep."""
        if round_index in self.journal.plans:
            return self.journal.plans[round_index]
        sweep = self.spec.sweep
        shuffle = [self.spec.seed, round_index] if sweep.shuffle else None
        if round_index == 1:
            points = numbered_points(first_round_targets(self.spec), sweep.repetitions, round_index, shuffle)
            self.journal.record_plan(round_index, "design", points)
            return points
        failures = self.failed_levels(round_index - 1)
        targets = []
        for failure in failures:
            model = self.models[failure.slice_name]
            assert model is not None, "every round trains before the next one plans"
            targets += targeted_targets(failure, model, self.measured_inputs(failure.slice_name, round_index),
                                        sweep.targeted, seed=[self.spec.seed, round_index, failure.level])
        points = numbered_points(targets, 1, round_index, shuffle)
        self.journal.record_plan(round_index, "targeted", points)
        return points

    def failed_levels(self, round_index: int) -> list[FailedLevel]:
        """The (level, slice) pairs of ``round_index`` that failed, with the allocation they were given."""
        results = self.journal.table(RESULTS_TABLE)
        failed = results[(results["round"] == round_index) & (results["verdict"] == "fail")]
        slices = {s.name: s for s in self.spec.slices}
        return [FailedLevel(
            level=int(row["level"]),
            slice_name=row["slice"],
            cpu_millicores=float(row["cpu_millicores"]),
            bandwidth_mbps=float(row["bandwidth_mbps"]),
            traffic=slices[row["slice"]].traffic[int(row["level"])].distribution(),
            q_thresh=float(row["q_thresh"]),
            beta=float(row["beta_target"]),
            lower=slices[row["slice"]].bounds.lower,
            upper=slices[row["slice"]].bounds.upper,
        ) for row in failed.to_dict("records")]

    def measured_inputs(self, slice_name: str, before_round: int) -> np.ndarray:
        """(n_users, bw, cpu) of every sample of the slice measured before ``before_round`` (sweeps and windows)."""
        frame = self.training_frame(slice_name, before_round - 1, windows_before=before_round, with_extra=False)
        return frame[["n_users", "bw", "cpu"]].to_numpy(dtype=float)

    def sweep(self, round_index: int, points: list[Point]) -> None:
        """Hold every point of the round for ``dwell_s`` seconds and journal its samples, point by point.

        A point the testbed could not measure (an actuator fault, a hole in the samples) is logged and left out
        of training; a lost testbed or a full disk stops the loop with the measured points kept.
        """
        if not points:
            return
        outcome = self.sweeper.execute(points, f"round {round_index}: sweep")
        if outcome.incomplete:
            self.run.log_event("sweep_incomplete", round=round_index, points=outcome.incomplete)
            self.incomplete_points.update(outcome.incomplete)
        self.run.log_event("sweep_finished", round=round_index, points=outcome.total, completed=outcome.completed)

    def _holdout(self, samples: pd.DataFrame, point: Point) -> pd.DataFrame:
        """Flag each sample as validation data with probability ``validation_fraction`` (seeded per point)."""
        rng = np.random.default_rng([self.spec.seed, point.round or 0, point.index])
        return samples.assign(holdout=rng.random(len(samples)) < self.spec.training.validation_fraction)

    # --- training -------------------------------------------------------------------------------------------

    def training_frame(self, slice_name: str, through_round: int, windows_before: int | None = None,
                       with_extra: bool = True) -> pd.DataFrame:
        """Every sample of the slice up to ``through_round``: its sweep points, the validation windows of the
        rounds before (or before ``windows_before``), each block's first ``training.settle_s`` seconds dropped,
        and, if asked, the extra datasets."""
        settle = self.spec.training.settle_s
        frames = []
        if with_extra and self.extra_data is not None:
            frames.append(self.extra_data)
        swept = journaled_table(self.run)
        if not swept.empty:
            swept = swept[(swept["slice"] == slice_name) & (swept["round"] <= through_round)].copy()
            swept["block"] = swept.groupby(["round", "point"]).ngroup()
            frames.append(drop_settling(swept, settle) if settle else swept)
        windows = self.journal.table(VALIDATION_TABLE, before_round=windows_before or through_round)
        if not windows.empty:
            windows = windows[windows["slice"] == slice_name].copy()
            windows["block"] = windows.groupby(["round", "level"]).ngroup()
            unsettled = max(0.0, settle - self.spec.validation.settle_s)  # the window starts settle_s after applying
            frames.append(drop_settling(windows, unsettled) if unsettled else windows)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["n_users", "bw", "cpu"])

    def retrain(self, round_index: int, slice_name: str) -> SliceRound:
        """The slice's model of the round: the journaled checkpoint, else trained on everything measured so far."""
        directory = self.journal.models.get((round_index, slice_name))
        if directory is not None:
            model = load_model(directory, self.device)
            self.models[slice_name] = model
            return SliceRound(model, _read_json(directory / "metrics.json"), _read_json(directory / HISTORY_FILE))
        training = self.spec.training
        frame = self.training_frame(slice_name, round_index)
        if len(frame) < 10:
            raise InputError(f"slice {slice_name}: only {len(frame)} samples to train on; lengthen the sweep")
        groups = count_groups(frame)
        calibrate = training.calibrate and groups >= MIN_CALIBRATION_GROUPS
        if training.calibrate and not calibrate:
            self.run.log_event("calibration_skipped", round=round_index, slice=slice_name, allocations=groups,
                               needed=MIN_CALIBRATION_GROUPS)
        config = TrainingConfig(
            epochs=training.epochs,
            batch_size=training.batch_size,
            validation_fraction=training.validation_fraction,
            seed=self.spec.seed + round_index,
            model=model_config(training),
            folds=CALIBRATION_FOLDS if calibrate else 0,
            calibrate=calibrate,
        )
        warm = self.models[slice_name] if training.warm_start else None
        task = self.progress.add_task(f"round {round_index}: train {slice_name}", total=config.steps)

        def show(step: int, total: int, _loss: float) -> None:
            self.progress.update(task, completed=step, total=total)

        result = train(frame, config, device=self.device, warm_start=warm, progress=show,
                       holdout=frame["holdout"].to_numpy(dtype=bool), source=f"slice {slice_name}'s samples")
        self.models[slice_name] = result.model
        directory = self.run.models_dir / f"round-{round_index}" / slice_name
        save_training(result, directory, extra={"round": round_index, "slice": slice_name})
        write_json_atomic(directory / HISTORY_FILE, result.history)
        self.journal.record_model(round_index, slice_name, directory, samples=len(frame), allocations=groups,
                                  warm_start=warm is not None, calibrated=calibrate, seconds=round(result.seconds, 2),
                                  validation=result.validation_metrics.as_dict() if result.validation_metrics else None)
        return SliceRound(result.model, result.metrics_document(), result.history)

    # --- optimizing and validating --------------------------------------------------------------------------

    def problem(self, level: int) -> Problem:
        """The allocation problem of traffic level ``level`` over all slices, on the current models, with each
        slice's degradation target lowered by ``optimizer.beta_margin``."""
        slices = []
        for slice_spec in self.spec.slices:
            model = self.models[slice_spec.name]
            assert model is not None, "retrain() runs before problem()"
            slices.append(SliceProblem(
                name=slice_spec.name,
                model=model,
                traffic=slice_spec.traffic[level].distribution(),
                q_thresh=slice_spec.q_thresh,
                beta_thresh=self.beta_target(slice_spec),
                lower=slice_spec.bounds.lower,
                upper=slice_spec.bounds.upper,
            ))
        capacity = self.spec.resources.capacity
        return Problem(tuple(slices), eta=self.spec.resources.eta.as_tuple(),
                       capacity=capacity.as_tuple() if capacity else None)

    def beta_target(self, slice_spec: SliceSpec) -> float:
        return slice_spec.beta_thresh - self.spec.optimizer.beta_margin

    def choose(self, round_index: int, level: int) -> dict[str, Any]:
        """The level's allocation of the round: the journaled one, else solved now with the spec's method."""
        chosen = self.journal.allocations.get((round_index, level))
        if chosen is not None:
            return chosen
        method = self.spec.optimizer.method
        solution = solve(self.problem(level), method, self.spec.optimizer.settings(), device=self.device)
        if not solution.feasible:
            self.run.log_event("infeasible_allocation_applied", round=round_index, level=level,
                               note="no allocation met every constraint; applying the least-violating one")
        names = [s.name for s in self.spec.slices]
        return self.journal.record_allocation(
            round_index, level, method=method, feasible=bool(solution.feasible), solve_seconds=solution.seconds,
            allocations={name: [float(v) for v in solution.allocation[index]] for index, name in enumerate(names)},
            expected={name: float(solution.expected_degradation[index]) for index, name in enumerate(names)},
        )

    def validate_level(self, round_index: int, level: int) -> str:
        """Apply the level's allocation, validate it under the guard and journal the window; the level's verdict."""
        done = self.journal.validations.get((round_index, level))
        if done is not None:
            return str(done["verdict"])
        chosen = self.choose(round_index, level)
        samples, fallbacks = self.window(round_index, level, chosen)
        rows = [self.judge(round_index, level, slice_spec, chosen, samples, fallbacks.get(slice_spec.name))
                for slice_spec in self.spec.slices]
        verdict = max((str(row["verdict"]) for row in rows), key=VERDICT_ORDER.index)
        self.journal.record_validation(round_index, level, samples, pd.DataFrame(rows), verdict=verdict,
                                       achieved={row["slice"]: round(row["achieved_degradation"], 4) for row in rows},
                                       fallback=sorted(fallbacks))
        return verdict

    def window(self, round_index: int, level: int,
               chosen: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, int]]:
        """Apply the chosen allocations and drive the level's traffic for the window, the guard watching.

        The testbed is read in chunks of unchanged users (at most ``hold_s`` seconds), and the guard judges each
        chunk's seconds in turn. Returns the window's samples (``fallback`` marks seconds a slice spent on its safe
        allocation) and, per slice the guard moved to its safe (peak) allocation, the second it did. Once every
        slice has fallen back the window ends: nothing is left to validate.
        """
        validation = self.spec.validation
        rng = np.random.default_rng([self.spec.seed, round_index, level])
        series = {s.name: level_series(s.traffic[level], validation.window_s, validation.hold_s, rng)
                  for s in self.spec.slices}
        guards = {s.name: SafetyGuard(validation.guard, s.q_thresh, s.beta_thresh, validation.window_s)
                  for s in self.spec.slices}
        fallbacks: dict[str, int] = {}
        frames = []
        with self.sweeper.testbed_guard(f"validating round {round_index}, level {level + 1}"):
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
                frame = self.testbed.collect(length).sort_values("time", kind="stable")
                frames.append(frame.assign(fallback=frame["slice"].isin(list(fallbacks))))
                self.progress.advance(task, length)
                for name in sorted(set(frame["slice"]) - set(fallbacks)):
                    seconds = frame[frame["slice"] == name]
                    if any(guards[name].observe(float(users), float(qos)) is not None
                           for users, qos in zip(seconds["n_users"], seconds["qos"], strict=True)):
                        fallbacks[name] = start + length
                        self.fall_back(round_index, level, name, start + length, guards[name])
                if len(fallbacks) == len(self.spec.slices):
                    break
        samples = pd.concat(frames, ignore_index=True).assign(round=round_index, level=level)
        holdout = np.random.default_rng([self.spec.seed, round_index, level, 1]).random(len(samples))
        return samples.assign(holdout=holdout < self.spec.training.validation_fraction), fallbacks

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
        evidence = window_evidence(measured, slice_spec.q_thresh, slice_spec.beta_thresh)
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
            "beta_target": self.beta_target(slice_spec),
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

    def export_datasets(self) -> None:
        """Write every slice's sweep samples as ``dataset-<slice>.csv`` in the MicroOpt format."""
        export_samples(journaled_table(self.run), self.run.path, run_provenance(self.run), formats=("csv",))


def model_config(training: TrainingSpec) -> ModelConfig:
    """The spec's architecture with its sizes (the architecture's own defaults where the spec gives none)."""
    if training.arch == "paper":
        paper = PaperConfig()
        return PaperConfig(training.width or paper.width, training.depth or paper.depth, training.head_width)
    ensemble = EnsembleConfig()
    return EnsembleConfig(training.members, training.width or ensemble.width, training.depth or ensemble.depth)


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


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
