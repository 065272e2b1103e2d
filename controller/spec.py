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
from controller.optimizer_settings import DEFAULT_ETA, GridSettings, MicroOptSettings
from core.errors import InputError
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
    q_thresh: float = Field(gt=0, le=10_000, description="QoS threshold, Mbps per user")
    beta_thresh: float = Field(gt=0, lt=1, description="allowed expected degradation")
    bounds: Bounds = Bounds()
    model: Path | None = Field(None, description="initial slice model directory (warm start)")


class ResourceVector(StrictModel):
    cpu_millicores: float = Field(gt=0)
    bandwidth_mbps: float = Field(gt=0)

    def as_tuple(self) -> tuple[float, float]:
        return (self.cpu_millicores, self.bandwidth_mbps)


class ResourcesSpec(StrictModel):
    """Cost weights eta and the capacities R the slices share (absent: unlimited)."""

    eta: ResourceVector = ResourceVector(cpu_millicores=DEFAULT_ETA[0], bandwidth_mbps=DEFAULT_ETA[1])
    capacity: ResourceVector | None = None


class SweepSpec(StrictModel):
    """The measurement grid of a round: users x CPU x bandwidth, held ``dwell_s`` seconds each."""

    users: list[Annotated[int, Field(ge=1, le=1000)]] = Field(min_length=1)
    cpu_millicores: list[Annotated[float, Field(gt=0, le=1e6)]] = Field(min_length=1)
    bandwidth_mbps: list[Annotated[float, Field(gt=0, le=1e5)]] = Field(min_length=1)
    dwell_s: int = Field(ge=1, le=3600)
    repetitions: int = Field(1, ge=1, le=100)
    shuffle: bool = False

    @property
    def points(self) -> int:
        return len(self.users) * len(self.cpu_millicores) * len(self.bandwidth_mbps) * self.repetitions


class TrainingSpec(StrictModel):
    """Retraining of the slice model after each sweep."""

    epochs: int = Field(3000, ge=1, le=100_000, description="the paper's 3,000 by default")
    batch_size: int = Field(4096, ge=2, le=1_000_000)
    validation_fraction: float = Field(0.2, ge=0, lt=1)
    warm_start: bool = True
    settle_s: float = Field(DEFAULT_SETTLE_S, ge=0, le=3600,
                            description="drop this many seconds after each grid change (sweeps and datasets)")
    width: int = Field(16, ge=1, le=4096)
    depth: int = Field(3, ge=1, le=64)
    head_width: int = Field(16, ge=1, le=4096)
    datasets: list[Path] = Field(default_factory=list, description="extra MicroOpt CSVs trained on too")


OptimizerMethod = Literal["microopt", "microopt-0sigma", "microopt-2sigma", "grid", "peak", "atlas", "atlas+",
                          "cadrl", "cadrl+"]


class OptimizerSpec(StrictModel):
    method: OptimizerMethod = "microopt"
    microopt: MicroOptSettings = MicroOptSettings()
    grid: GridSettings = GridSettings()

    def settings(self) -> MicroOptSettings | GridSettings | None:
        """The settings this spec gives ``method`` (MicroOpt's and grid's); None: the method's defaults."""
        return {"microopt": self.microopt, "grid": self.grid}.get(self.method)


class ValidationSpec(StrictModel):
    window_s: int = Field(120, ge=1, le=86_400, description="seconds each applied allocation is validated")


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
    return spec


def spec_document(spec: ExperimentSpec) -> dict[str, Any]:
    """The resolved spec as plain data (written into the run directory)."""
    return spec.model_dump(mode="json")
