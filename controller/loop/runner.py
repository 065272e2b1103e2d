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

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from analysis.slice_model import SliceModel, load_model
from collectors.dataset import load_qos_csvs
from controller.campaign.export import export_samples, journaled_table, run_provenance
from controller.campaign.plan import Point, Sweep
from controller.campaign.runner import SweepRunner
from controller.loop.design import FailedLevel, first_round_targets, numbered_points, targeted_targets
from controller.loop.journal import RESULTS_TABLE, LoopJournal
from controller.loop.training import LoopTrainer, SliceRound
from controller.loop.validation import VERDICT_ORDER, LevelValidator
from controller.optimizers import solve
from controller.problem import Problem, SliceProblem
from controller.spec import ExperimentSpec, SliceSpec
from controller.testbeds.base import Allocation, Testbed
from core.errors import InputError
from core.runstore import Run


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
        """Each slice's model of the last round trained (for the report)."""
        self.incomplete_points: dict[str, str] = {}
        """Sweep point id -> why it could not be measured (left out of training)."""
        self.journal = LoopJournal.read(run)
        safe = {s.name: Allocation(*s.bounds.upper) for s in spec.slices}
        self.sweeper = SweepRunner(Sweep(spec.name, safe, spec.sweep.dwell_s), run, testbed, progress,
                                   resume=f"slicebed loop resume {run.path}", annotate=self._holdout)
        self.trainer = LoopTrainer(spec, run, self.journal, progress, device, inputs.extra_data)
        self.validator = LevelValidator(spec, testbed, run, progress, self.sweeper.testbed_guard)

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
        frame = self.trainer.frame(slice_name, before_round - 1, windows_before=before_round, with_extra=False)
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

    def retrain(self, round_index: int, slice_name: str) -> SliceRound:
        """The slice's model of the round (journaled, or trained now), which the loop then optimizes on."""
        trained = self.trainer.retrain(round_index, slice_name, self.models[slice_name])
        self.models[slice_name] = trained.model
        return trained

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
        samples, fallbacks = self.validator.window(round_index, level, chosen)
        rows = [self.validator.judge(round_index, level, slice_spec, chosen, samples, fallbacks.get(slice_spec.name))
                for slice_spec in self.spec.slices]
        verdict = max((str(row["verdict"]) for row in rows), key=VERDICT_ORDER.index)
        self.journal.record_validation(round_index, level, samples, pd.DataFrame(rows), verdict=verdict,
                                       achieved={row["slice"]: round(row["achieved_degradation"], 4) for row in rows},
                                       fallback=sorted(fallbacks))
        return verdict

    def export_datasets(self) -> None:
        """Write every slice's sweep samples as ``dataset-<slice>.csv`` in the MicroOpt format."""
        export_samples(journaled_table(self.run), self.run.path, run_provenance(self.run), formats=("csv",))
