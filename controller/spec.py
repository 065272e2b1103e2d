"""Experiment specifications: YAML files validated by pydantic models.

Unknown keys and out-of-range values are errors that name the file, the key and what is allowed.
Relative paths in a spec are resolved against the spec file's directory.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from collectors.dataset import DEFAULT_SETTLE_S
from controller import traffic
from controller.optimizer_settings import DEFAULT_ETA, ExactSettings, GridSettings, MicroOptSettings
from core.errors import InputError
from core.slice_types import HIGHER_IS_BETTER, QosKind
from core.validation import StrictModel, resolve_paths, validate
from core.yamlfile import read_yaml_mapping

SLICE_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class SampledTraffic(StrictModel):
    """Traffic whose per-second series is drawn from its distribution."""

    @abstractmethod
    def distribution(self) -> traffic.TrafficDistribution:
        """The users/s distribution the optimizer weighs by eq. (1)."""

    def series(self, seconds: int, rng: np.random.Generator) -> np.ndarray:
        """A users/s value for each of ``seconds`` seconds."""
        return self.distribution().sample(seconds, rng)


class ConstantTraffic(SampledTraffic):
    """The same number of users every second."""

    kind: Literal["constant"]
    users: float = Field(gt=0, le=1000, description="users/s")

    def distribution(self) -> traffic.TrafficDistribution:
        return traffic.constant(self.users)

    @property
    def label(self) -> str:
        return f"constant {self.users:g}"


class TruncatedNormalTraffic(SampledTraffic):
    """Users/s drawn from a normal distribution truncated to [low, high]."""

    kind: Literal["truncated_normal"]
    mean: float = Field(gt=0, le=1000)
    std: float = Field(gt=0, le=1000)
    low: float = Field(gt=0, le=1000)
    high: float = Field(gt=0, le=1000)
    points: int = Field(21, ge=2, le=201, description="support points of the discretized distribution")
    whole_users: bool = Field(True, description="users come in whole numbers, as on a testbed (false: the "
                              "paper's continuous users/s, discretized into `points` bins)")

    @model_validator(mode="after")
    def _interval(self) -> TruncatedNormalTraffic:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        try:
            self.distribution()
        except InputError as exc:  # e.g. no probability mass in [low, high]
            raise ValueError(str(exc)) from None
        return self

    def distribution(self) -> traffic.TrafficDistribution:
        return traffic.truncated_normal(self.mean, self.std, self.low, self.high, self.points, self.whole_users)

    @property
    def label(self) -> str:
        return f"N({self.mean:g}, {self.std:g}) in [{self.low:g}, {self.high:g}]"


class TraceTraffic(StrictModel):
    """A recorded per-second users/s trace, inline or from a one-column file."""

    kind: Literal["trace"]
    values: list[Annotated[float, Field(gt=0, le=1000)]] | None = Field(None, min_length=1)
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TraceTraffic:
        if (self.values is None) == (self.file is None):
            raise ValueError("give exactly one of 'values' or 'file'")
        return self

    def recorded(self) -> np.ndarray:
        """The users/s values of the trace, in order."""
        if self.values is not None:
            return np.asarray(self.values, dtype=float)
        assert self.file is not None
        try:
            with warnings.catch_warnings():  # an empty file draws a UserWarning; it is refused as an empty trace
                warnings.simplefilter("ignore")
                values = np.loadtxt(self.file, dtype=float, ndmin=1, comments="#")
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.file}: not a one-column users/s trace ({exc})") from None
        return values

    def distribution(self) -> traffic.TrafficDistribution:
        return traffic.trace(self.recorded())

    def series(self, seconds: int, rng: np.random.Generator) -> np.ndarray:
        """The trace itself, repeated as needed to fill ``seconds``."""
        return np.resize(self.recorded(), seconds)

    @property
    def label(self) -> str:
        return f"trace {self.file.name}" if self.file else f"trace ({len(self.values or [])} s)"


TrafficSpec = Annotated[ConstantTraffic | TruncatedNormalTraffic | TraceTraffic, Field(discriminator="kind")]


def _range(high: float) -> Any:
    return Field(gt=0, le=high)


class Bounds(StrictModel):
    """Allowed allocation per resource, as [min, max]."""

    cpu_millicores: tuple[Annotated[float, _range(1e6)], Annotated[float, _range(1e6)]] = (500.0, 4500.0)
    bandwidth_mbps: tuple[Annotated[float, _range(1e5)], Annotated[float, _range(1e5)]] = (5.0, 50.0)

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        for name in ("cpu_millicores", "bandwidth_mbps"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: min {low} is above max {high}")
        return self

    @property
    def lower(self) -> tuple[float, float]:
        return (self.cpu_millicores[0], self.bandwidth_mbps[0])

    @property
    def upper(self) -> tuple[float, float]:
        return (self.cpu_millicores[1], self.bandwidth_mbps[1])


class SliceSpec(StrictModel):
    """A slice: traffic levels to optimize and validate, QoS thresholds, resource bounds."""

    name: str = Field(pattern=SLICE_NAME)
    traffic: list[TrafficSpec] = Field(min_length=1, description="traffic levels, each validated in turn")
    qos: QosKind = Field("throughput_mbps", description="what the slice is judged by: per-user throughput (eMBB), "
                                                         "p95 one-way delay in ms (URLLC, lower is better) or "
                                                         "delivery ratio (mMTC)")
    q_thresh: float = Field(gt=0, le=10_000, description="QoS threshold in the unit of `qos` (Mbps per user, ms, "
                                                        "or a ratio)")
    beta_thresh: float = Field(gt=0, lt=1, description="allowed expected degradation")
    bounds: Bounds = Bounds()
    model: Path | None = Field(None, description="initial slice model directory (warm start)")

    @property
    def higher_is_better(self) -> bool:
        """The QoS direction: False for a delay, whose degradation is q >= q_thresh."""
        return HIGHER_IS_BETTER[self.qos]


class ResourceVector(StrictModel):
    cpu_millicores: float = Field(gt=0)
    bandwidth_mbps: float = Field(gt=0)

    def as_tuple(self) -> tuple[float, float]:
        return (self.cpu_millicores, self.bandwidth_mbps)


class ResourcesSpec(StrictModel):
    """Cost weights eta and the capacities R the slices share (absent: unlimited)."""

    eta: ResourceVector = ResourceVector(cpu_millicores=DEFAULT_ETA[0], bandwidth_mbps=DEFAULT_ETA[1])
    capacity: ResourceVector | None = None


SweepDesign = Literal["grid", "sobol", "lhs"]


class TargetedSweepSpec(StrictModel):
    """The sweep that follows a level which exceeded beta_thresh with evidence (active learning).

    Its points hold the user counts that weigh most in the level's eq. (1) and lie around the allocation that
    failed, and where the model's predicted degradation is closest to beta_thresh and least certain.
    """

    around: int = Field(3, ge=0, le=64, description="points around the allocation that failed")
    frontier: int = Field(3, ge=0, le=64, description="points where the predicted degradation is closest to "
                          "beta_thresh and least certain")
    users: int = Field(2, ge=1, le=16, description="user counts of the level swept (those weighing most in eq. 1)")
    radius: float = Field(0.15, gt=0, le=1, description="neighbourhood of the failed allocation, as a share of "
                          "each resource's bounds")
    candidates: int = Field(256, ge=16, le=65_536, description="space-filling candidates scored for the frontier")


class SweepSpec(StrictModel):
    """The first round's measurement design over users x CPU x bandwidth, each point held ``dwell_s`` seconds.

    ``design: grid`` measures every combination of the listed values; ``sobol`` and ``lhs`` (scipy.stats.qmc)
    place ``points`` space-filling points per user count within [min, max] of the listed CPU and bandwidth.
    ``users`` defaults to the user counts the traffic levels validate, and must cover them.
    """

    design: SweepDesign = "grid"
    users: list[Annotated[int, Field(ge=1, le=1000)]] | None = Field(None, min_length=1)
    cpu_millicores: list[Annotated[float, Field(gt=0, le=1e6)]] = Field(min_length=1)
    bandwidth_mbps: list[Annotated[float, Field(gt=0, le=1e5)]] = Field(min_length=1)
    points: int | None = Field(None, ge=1, le=4096, description="sobol/lhs: points per user count")
    dwell_s: int = Field(ge=1, le=3600)
    repetitions: int = Field(1, ge=1, le=100)
    shuffle: bool = False
    targeted: TargetedSweepSpec = TargetedSweepSpec()

    @model_validator(mode="after")
    def _design_fits(self) -> SweepSpec:
        if self.design == "grid":
            if self.points is not None:
                raise ValueError("points: only for the space-filling designs (sobol, lhs); a grid measures "
                                 "every combination of the listed values")
            return self
        if self.points is None:
            raise ValueError(f"design {self.design} needs 'points' (space-filling points per user count)")
        if self.design == "sobol" and self.points & (self.points - 1):
            raise ValueError(f"points ({self.points}): a Sobol design keeps its balance only with a power of 2")
        for axis in ("cpu_millicores", "bandwidth_mbps"):
            values = getattr(self, axis)
            if len(values) != 2 or values[0] >= values[1]:
                raise ValueError(f"{axis}: design {self.design} takes a range [min, max], got {values}")
        return self

    @property
    def points_per_round(self) -> int:
        """Points of the first round's design, per user count."""
        per_user = (self.points or 0) if self.design != "grid" else (
            len(self.cpu_millicores) * len(self.bandwidth_mbps))
        return per_user * self.repetitions


class TrainingSpec(StrictModel):
    """Retraining of the slice model after each sweep (``analysis.training``; architecture defaults apply)."""

    arch: Literal["ensemble", "paper"] = Field("ensemble", description="the monotone deep ensemble, or the paper's "
                                               "network")
    epochs: int | None = Field(None, ge=1, le=100_000, description="default: the architecture's (paper 3,000; "
                               "ensemble 1,000 full-batch steps)")
    batch_size: int = Field(4096, ge=2, le=1_000_000, description="paper architecture: rows per mini-batch")
    validation_fraction: float = Field(0.2, ge=0, lt=1)
    warm_start: bool = True
    settle_s: float = Field(DEFAULT_SETTLE_S, ge=0, le=3600,
                            description="drop this many seconds after each grid change (sweeps and datasets)")
    width: int | None = Field(None, ge=1, le=4096, description="default: the architecture's (paper 16, ensemble 32)")
    depth: int | None = Field(None, ge=1, le=64, description="default: the architecture's (paper 3, ensemble 2)")
    head_width: int = Field(16, ge=1, le=4096, description="paper architecture: units of each head")
    members: int = Field(5, ge=1, le=64, description="ensemble architecture: members")
    calibrate: bool = Field(True, description="fit a factor on sigma by grouped cross-validation once the data hold "
                            "enough allocations (until then the model is trained uncalibrated, and the run says so)")
    datasets: list[Path] = Field(default_factory=list, description="extra MicroOpt CSVs trained on too")


OptimizerMethod = Literal["exact", "microopt", "microopt-alg1", "microopt-0sigma", "microopt-2sigma", "grid", "peak",
                          "atlas", "atlas+", "cadrl", "cadrl+"]


class OptimizerSpec(StrictModel):
    method: OptimizerMethod = "exact"
    beta_margin: float = Field(0.0, ge=0, lt=1, description="the loop optimizes against beta_thresh - beta_margin, "
                               "so a validation window's sampling spread stays under beta_thresh")
    exact: ExactSettings = ExactSettings()
    microopt: MicroOptSettings = MicroOptSettings()
    grid: GridSettings = GridSettings()

    def settings(self) -> ExactSettings | MicroOptSettings | GridSettings | None:
        """The settings this spec gives ``method`` (the exact solver's, MicroOpt's and grid's); None: the
        method's defaults."""
        given: dict[str, ExactSettings | MicroOptSettings | GridSettings] = {
            "exact": self.exact, "microopt": self.microopt, "grid": self.grid}
        return given.get(self.method)


class GuardSpec(StrictModel):
    """Live safety during validation: fall back to the safe (peak) allocation when the running degradation
    exceeds beta_thresh by ``margin`` with evidence."""

    enabled: bool = True
    margin: float = Field(0.2, ge=0, lt=1, description="excess over beta_thresh the guard tests for")
    alpha: float = Field(0.01, gt=0, lt=0.5, description="the guard's error rate over a whole window (split "
                         "evenly over its per-second looks)")
    min_seconds: int = Field(5, ge=1, le=3600, description="seconds measured before the guard may act")
    recovery_s: int = Field(3, ge=0, le=3600, description="seconds measured on the safe allocation once every "
                            "slice has fallen back (kept as fallback seconds, not judged) before the window ends")


class ValidationSpec(StrictModel):
    """How each applied allocation is validated and judged."""

    window_s: int = Field(120, ge=1, le=86_400, description="seconds each applied allocation is validated")
    settle_s: int = Field(0, ge=0, le=3600, description="seconds held after applying an allocation, not counted")
    hold_s: int = Field(1, ge=1, le=3600, description="seconds each user count drawn from the level is held")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="a level fails with evidence when the one-sided test of "
                         "'degradation <= beta_thresh' rejects at this level")
    tolerance: float | None = Field(None, gt=0, le=1, description="a level passes only when expected and measured "
                                    "degradation also agree within this (None: not required)")
    guard: GuardSpec = GuardSpec()


class ReplaySpec(StrictModel):
    """The replay digital twin: QoS drawn from a slice model or from a dataset's grid points."""

    source: Literal["model", "dataset"] = "dataset"
    model: Path | None = None
    dataset: Path | None = None
    settle_s: float = Field(DEFAULT_SETTLE_S, ge=0, le=3600, description="dataset seconds dropped after grid changes")

    @model_validator(mode="after")
    def _source_given(self) -> ReplaySpec:
        if self.source == "model" and self.model is None:
            raise ValueError("source 'model' needs 'model: DIR'")
        if self.source == "dataset" and self.dataset is None:
            raise ValueError("source 'dataset' needs 'dataset: CSV'")
        return self


class TestbedSpec(StrictModel):
    backend: Literal["replay", "local", "lab"] = "replay"
    replay: ReplaySpec | None = None
    inventory: Path | None = None


class ExperimentSpec(StrictModel):
    """A closed-loop experiment: sweep, retrain, optimize, apply and validate, ``rounds`` times."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    seed: int = Field(0, ge=0)
    rounds: int = Field(1, ge=1, le=100)
    testbed: TestbedSpec = TestbedSpec()
    slices: list[SliceSpec] = Field(min_length=1, max_length=64)
    resources: ResourcesSpec = ResourcesSpec()
    sweep: SweepSpec
    training: TrainingSpec = TrainingSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    validation: ValidationSpec = ValidationSpec()

    @model_validator(mode="after")
    def _capacity_covers_lower_bounds(self) -> ExperimentSpec:
        capacity = self.resources.capacity
        if capacity is None:
            return self
        for index, resource in enumerate(("cpu_millicores", "bandwidth_mbps")):
            needed = sum(s.bounds.lower[index] for s in self.slices)
            if needed > capacity.as_tuple()[index]:
                raise ValueError(f"resources.capacity.{resource} ({capacity.as_tuple()[index]:g}) is below the sum "
                                 f"of the slices' minimum allocations ({needed:g})")
        return self

    @model_validator(mode="after")
    def _settling_leaves_samples(self) -> ExperimentSpec:
        if self.training.settle_s >= self.sweep.dwell_s:
            raise ValueError(f"training.settle_s ({self.training.settle_s:g}) must be below sweep.dwell_s "
                             f"({self.sweep.dwell_s}), or every sweep sample is dropped")
        return self

    @model_validator(mode="after")
    def _sweep_within_bounds(self) -> ExperimentSpec:
        for slice_spec in self.slices:
            for index, axis in enumerate(("cpu_millicores", "bandwidth_mbps")):
                low, high = slice_spec.bounds.lower[index], slice_spec.bounds.upper[index]
                outside = [value for value in getattr(self.sweep, axis) if not low <= value <= high]
                if outside:
                    raise ValueError(f"sweep.{axis} value {outside[0]:g} is outside slice {slice_spec.name}'s "
                                     f"bounds [{low:g}, {high:g}]")
        return self

    @model_validator(mode="after")
    def _margin_below_thresholds(self) -> ExperimentSpec:
        margin = self.optimizer.beta_margin
        for slice_spec in self.slices:
            if margin >= slice_spec.beta_thresh:
                raise ValueError(f"optimizer.beta_margin ({margin:g}) must be below slice {slice_spec.name}'s "
                                 f"beta_thresh ({slice_spec.beta_thresh:g})")
        return self

    def validated_users(self) -> list[int]:
        """The whole user counts the traffic levels put on a testbed during validation (any slice, any level)."""
        counts = {
            max(1, int(np.rint(users)))
            for slice_spec in self.slices for profile in slice_spec.traffic
            for users, probability in zip(profile.distribution().support, profile.distribution().probabilities,
                                          strict=True) if probability > 0
        }
        return sorted(counts)

    def sweep_users(self) -> list[int]:
        """The user counts the first round sweeps: ``sweep.users``, else the levels' user counts."""
        return list(self.sweep.users) if self.sweep.users is not None else self.validated_users()

    @field_validator("slices")
    @classmethod
    def _unique_names(cls, slices: list[SliceSpec]) -> list[SliceSpec]:
        reject_duplicate_names(slices)
        levels = {len(s.traffic) for s in slices}
        if len(levels) > 1:
            raise ValueError("every slice needs the same number of traffic levels (they are solved together)")
        return slices


def reject_duplicate_names(slices: Sequence[Any]) -> None:
    """Raise ValueError (a pydantic validation message) if two slices share a name."""
    names = [s.name for s in slices]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate slice name(s): {', '.join(duplicates)}")


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read, validate and resolve an experiment spec.

    Raises:
        InputError: the file is missing or unreadable, is not YAML, or does not validate; the message
            names the file, the key and the problem.
    """
    path = Path(path)
    document = read_yaml_mapping(path)
    spec = resolve_paths(validate(ExperimentSpec, document, path), path.parent)
    for index, slice_spec in enumerate(spec.slices):
        for level, profile in enumerate(slice_spec.traffic):
            if isinstance(profile, TraceTraffic) and profile.file is not None:
                try:  # read trace files now, not after the first sweep
                    profile.distribution()
                except InputError as exc:
                    raise InputError(f"{path}: slices[{index}].traffic[{level}]: {exc}") from None
    missing = sorted(set(spec.validated_users()) - set(spec.sweep_users()))
    if missing:  # checked after the trace files are read (a level's user counts may come from one)
        raise InputError(f"{path}: sweep.users {spec.sweep.users} misses {', '.join(map(str, missing))} user(s), "
                         "which the traffic levels validate; add them (or omit sweep.users: the levels' user counts)")
    return spec


def spec_document(spec: ExperimentSpec) -> dict[str, Any]:
    """The resolved spec as plain data (written into the run directory)."""
    return spec.model_dump(mode="json")
