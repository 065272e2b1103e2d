"""The closed loop: sweep traffic and resources, retrain the slice model, optimize, apply, validate.

Each round:

1. **Sweep** every (users, CPU, bandwidth) point of the spec for ``dwell_s`` seconds through the
   campaign's sweep runner and journal: one Parquet part per point, journaled once durable, so a crash
   loses at most the point in progress and a point counts once (its id names its round).
2. **Retrain** each slice's model on all samples so far (plus the spec's extra datasets), warm-starting
   from the previous round's model.
3. **Optimize** each traffic level with the spec's method.
4. **Apply** the allocations and **validate** them over ``validation.window_s`` seconds of traffic drawn
   from the level's profile, recording the achieved degradation (eq. 1) against beta_thresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from analysis.evaluation import FitMetrics
from analysis.slice_model import PaperConfig, SliceModel, load_model
from analysis.training import TrainingConfig, TrainingResult, save_training, train
from collectors.dataset import drop_settling, load_qos_csvs
from controller.campaign.export import export_samples, journaled_table, run_provenance
from controller.campaign.plan import Point, Sweep, plan_grid
from controller.campaign.runner import SweepRunner
from controller.optimizers import solve
from controller.optimizers.base import Solution
from controller.problem import Problem, SliceProblem
from controller.spec import ExperimentSpec
from controller.testbeds.base import Allocation, Testbed
from core.errors import InputError
from core.runstore import Run

RESULTS_TABLE = "results"
VALIDATION_TABLE = "validation"


@dataclass
class SliceRound:
    """What one round produced for one slice: its model and training metrics."""

    model: SliceModel
    train_metrics: FitMetrics
    validation_metrics: FitMetrics | None
    history: list[dict[str, float]]


@dataclass
class LoopInputs:
    """What a spec names besides its testbed: initial slice models and extra training data."""

    models: dict[str, SliceModel | None]
    extra_data: pd.DataFrame | None

    @classmethod
    def load(cls, spec: ExperimentSpec) -> LoopInputs:
        """Read them all (raising :class:`InputError` on a bad one) before any run directory exists."""
        return cls(
            models={s.name: load_model(s.model) if s.model is not None else None for s in spec.slices},
            extra_data=_with_holdout(load_qos_csvs(spec.training.datasets, settle_s=spec.training.settle_s),
                                     spec.training.validation_fraction, np.random.default_rng(spec.seed))
            if spec.training.datasets else None,
        )


class ClosedLoop:
    """Runs an :class:`ExperimentSpec` on a testbed, recording everything in ``run``."""

    def __init__(self, spec: ExperimentSpec, inputs: LoopInputs, testbed: Testbed, run: Run, progress: Progress,
                 device: torch.device | str = "cpu") -> None:
        self.spec = spec
        self.testbed = testbed
        self.run = run
        self.progress = progress
        self.device = device
        self.rng = np.random.default_rng(spec.seed)
        self.models = dict(inputs.models)
        self.extra_data = inputs.extra_data
        self.final_rounds: dict[str, SliceRound] = {}
        self.incomplete_points: dict[str, str] = {}
        """Sweep point id -> why it could not be measured (left out of training)."""
        safe = {s.name: Allocation(*s.bounds.upper) for s in spec.slices}
        self.sweeper = SweepRunner(Sweep(spec.name, safe, spec.sweep.dwell_s), run, testbed, progress,
                                   resume=f"slicebed loop run {run.path / 'spec.yaml'}", annotate=self._holdout)

    def execute(self) -> pd.DataFrame:
        """Run every round; returns the results table (one row per round, level and slice)."""
        results = []
        for round_index in range(1, self.spec.rounds + 1):
            self.run.log_event("round_started", round=round_index)
            self.sweep(round_index)
            samples = journaled_table(self.run)
            self.export_datasets(samples)
            rounds = {s.name: self.retrain(round_index, s.name, samples) for s in self.spec.slices}
            self.final_rounds = rounds
            for level in range(len(self.spec.slices[0].traffic)):
                solution = self.optimize(level)
                results.append(self.validate(round_index, level, solution))
            self.run.log_event("round_finished", round=round_index,
                               validation_mae={name: r.validation_metrics.mae if r.validation_metrics else None
                                               for name, r in rounds.items()})
        return pd.concat(results, ignore_index=True)

    def sweep(self, round_index: int) -> None:
        """Hold every sweep point of the round for ``dwell_s`` seconds and journal its samples, point by point.

        A point the testbed could not measure (an actuator fault, a hole in the samples) is logged and left out
        of training; a lost testbed or a full disk stops the loop with the measured points kept.
        """
        sweep = self.spec.sweep
        points = plan_grid(sweep.users, sweep.bandwidth_mbps, sweep.cpu_millicores, sweep.repetitions,
                           shuffle_seed=[self.spec.seed, round_index] if sweep.shuffle else None,
                           round_index=round_index)
        outcome = self.sweeper.execute(points, f"round {round_index}: sweep")
        if outcome.incomplete:
            self.run.log_event("sweep_incomplete", round=round_index, points=outcome.incomplete)
            self.incomplete_points.update(outcome.incomplete)
        self.run.log_event("sweep_finished", round=round_index, points=outcome.total, completed=outcome.completed)

    def _holdout(self, samples: pd.DataFrame, point: Point) -> pd.DataFrame:
        """Flag each sample as validation data with probability ``validation_fraction`` (seeded per point)."""
        rng = np.random.default_rng([self.spec.seed, point.round or 0, point.index])
        return samples.assign(holdout=rng.random(len(samples)) < self.spec.training.validation_fraction)

    def export_datasets(self, samples: pd.DataFrame) -> None:
        """Write every slice's sweep samples so far as ``dataset-<slice>.csv`` in the MicroOpt format."""
        export_samples(samples, self.run.path, run_provenance(self.run), formats=("csv",))

    def retrain(self, round_index: int, slice_name: str, samples: pd.DataFrame) -> SliceRound:
        """Train the slice model on everything measured so far and checkpoint it."""
        training = self.spec.training
        samples = samples[samples["slice"] == slice_name].copy()
        samples["block"] = samples.groupby(["round", "point"]).ngroup()  # one block per held sweep point
        frame = drop_settling(samples, training.settle_s) if training.settle_s else samples
        if self.extra_data is not None:
            frame = pd.concat([self.extra_data, frame], ignore_index=True)
        if len(frame) < 10:
            raise InputError(f"slice {slice_name}: only {len(frame)} samples to train on; lengthen the sweep")
        config = TrainingConfig(
            epochs=training.epochs,
            batch_size=training.batch_size,
            validation_fraction=training.validation_fraction,
            seed=self.spec.seed + round_index,
            model=PaperConfig(training.width, training.depth, training.head_width),
            folds=0,
            calibrate=False,
        )
        warm = self.models[slice_name] if training.warm_start else None
        task = self.progress.add_task(f"round {round_index}: train {slice_name}", total=config.epochs)

        def show(step: int, total: int, _loss: float) -> None:
            self.progress.update(task, completed=step, total=total)

        result: TrainingResult = train(frame, config, device=self.device, warm_start=warm, progress=show,
                                       holdout=frame["holdout"].to_numpy())
        self.models[slice_name] = result.model
        directory = self.run.models_dir / f"round-{round_index}" / slice_name
        save_training(result, directory, extra={"round": round_index, "slice": slice_name})
        self.run.log_event("model_trained", round=round_index, slice=slice_name, samples=len(frame),
                           warm_start=warm is not None, seconds=round(result.seconds, 2),
                           validation=result.validation_metrics.as_dict() if result.validation_metrics else None)
        return SliceRound(result.model, result.train_metrics, result.validation_metrics, result.history)

    def problem(self, level: int) -> Problem:
        """The allocation problem of traffic level ``level`` over all slices, on the current models."""
        slices = []
        for slice_spec in self.spec.slices:
            model = self.models[slice_spec.name]
            assert model is not None, "retrain() runs before problem()"
            slices.append(SliceProblem(
                name=slice_spec.name,
                model=model,
                traffic=slice_spec.traffic[level].distribution(),
                q_thresh=slice_spec.q_thresh,
                beta_thresh=slice_spec.beta_thresh,
                lower=slice_spec.bounds.lower,
                upper=slice_spec.bounds.upper,
            ))
        capacity = self.spec.resources.capacity
        return Problem(tuple(slices), eta=self.spec.resources.eta.as_tuple(),
                       capacity=capacity.as_tuple() if capacity else None)

    def optimize(self, level: int) -> Solution:
        """Solve traffic level ``level`` with the spec's method."""
        method = self.spec.optimizer.method
        return solve(self.problem(level), method, self.spec.optimizer.settings(), device=self.device)

    def validate(self, round_index: int, level: int, solution: Solution) -> pd.DataFrame:
        """Apply ``solution``, drive the level's traffic for the validation window, record degradation."""
        window = self.spec.validation.window_s
        series = {
            s.name: np.maximum(1, np.rint(s.traffic[level].series(window, self.rng))).astype(int)
            for s in self.spec.slices
        }
        if not solution.feasible:
            self.run.log_event("infeasible_allocation_applied", round=round_index, level=level,
                               note="no allocation met every constraint; applying the least-violating one")
        for index, slice_spec in enumerate(self.spec.slices):
            allocation = Allocation(*solution.allocation[index])
            allocation.check_within(slice_spec.bounds.lower, slice_spec.bounds.upper, slice_spec.name)
            self.testbed.apply(slice_spec.name, allocation)
        task = self.progress.add_task(f"round {round_index}: validate level {level + 1}", total=window)
        frames = []
        for second in range(window):
            for slice_spec in self.spec.slices:
                self.testbed.set_traffic(slice_spec.name, int(series[slice_spec.name][second]))
            frames.append(self.testbed.collect(1))
            self.progress.advance(task)
        samples = pd.concat(frames, ignore_index=True)
        samples["round"], samples["level"] = round_index, level
        self.run.append_samples(samples, VALIDATION_TABLE)
        rows = []
        eta = np.asarray(self.spec.resources.eta.as_tuple())
        for index, slice_spec in enumerate(self.spec.slices):
            measured = samples[samples["slice"] == slice_spec.name]
            rows.append({
                "round": round_index,
                "level": level,
                "slice": slice_spec.name,
                "traffic": slice_spec.traffic[level].label,
                "traffic_mean": float(measured["n_users"].mean()),
                "method": self.spec.optimizer.method,
                "cpu_millicores": float(solution.allocation[index, 0]),
                "bandwidth_mbps": float(solution.allocation[index, 1]),
                "normalized": float(solution.allocation[index] @ eta),
                "feasible": solution.feasible,
                "solve_seconds": solution.seconds,
                "q_thresh": slice_spec.q_thresh,
                "beta_thresh": slice_spec.beta_thresh,
                "expected_degradation": float(solution.expected_degradation[index]),
                "achieved_degradation": achieved_degradation(measured, slice_spec.q_thresh),
                "mean_qos": float(measured["qos"].mean()),
                "seconds": len(measured),
            })
        table = pd.DataFrame(rows)
        self.run.append_samples(table, RESULTS_TABLE)
        self.run.log_event("level_validated", round=round_index, level=level,
                           achieved={row["slice"]: round(row["achieved_degradation"], 4) for row in rows})
        return table


def _with_holdout(frame: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """``frame`` with a ``holdout`` column: each row is a validation row with probability ``fraction``."""
    return frame.assign(holdout=rng.random(len(frame)) < fraction)


def achieved_degradation(samples: pd.DataFrame, q_thresh: float) -> float:
    """Eq. (1) on measurements: the users-weighted share of seconds whose per-user QoS was <= q_thresh."""
    users = samples["n_users"].to_numpy(dtype=float)
    if users.sum() == 0:
        return float("nan")
    below = samples["qos"].to_numpy() <= q_thresh
    return float((users * below).sum() / users.sum())
