"""Campaign specifications: a dataset-collection sweep over users x bandwidth x CPU, as validated YAML.

Example (the MicroOpt grid)::

    name: microopt-grid
    testbed: {backend: local}
    slices: [{name: embb, bounds: {cpu_millicores: [500, 4000], bandwidth_mbps: [5, 40]}}]
    grid:
      users: {start: 1, stop: 5, step: 1}
      bandwidth_mbps: {start: 5, stop: 40, step: 5}
      cpu_millicores: {start: 500, stop: 4000, step: 500}
    dwell_s: 70
    repetitions: 1
    order: {randomize: true, seed: 7}

An axis is a list of values or an inclusive ``{start, stop, step}`` range.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from controller.spec import Bounds, TestbedSpec, reject_duplicate_names
from core.validation import StrictModel, resolve_paths, validate
from core.yamlfile import read_yaml, require_mapping

MAX_POINTS = 100_000
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class AxisRange(StrictModel):
    """Inclusive ``start, start + step, ... <= stop``."""

    start: float = Field(gt=0, le=1e6)
    stop: float = Field(gt=0, le=1e6)
    step: float = Field(gt=0, le=1e6)

    @model_validator(mode="after")
    def _ordered(self) -> AxisRange:
        if self.start > self.stop:
            raise ValueError(f"start ({self.start:g}) is above stop ({self.stop:g})")
        if (self.stop - self.start) / self.step + 1 > MAX_POINTS:
            raise ValueError(f"more than {MAX_POINTS} values; raise step")
        return self

    def values(self) -> list[float]:
        count = math.floor((self.stop - self.start) / self.step + 1e-9) + 1
        return [round(self.start + index * self.step, 6) for index in range(count)]


Axis = list[Annotated[float, Field(gt=0, le=1e6)]] | AxisRange


def axis_values(axis: Axis) -> list[float]:
    """The values of an axis, in the order given."""
    return axis.values() if isinstance(axis, AxisRange) else list(axis)


class GridSpec(StrictModel):
    """The sweep grid; every combination is one campaign point."""

    users: Axis
    bandwidth_mbps: Axis
    cpu_millicores: Axis

    @field_validator("users", "bandwidth_mbps", "cpu_millicores")
    @classmethod
    def _distinct_values(cls, axis: Axis) -> Axis:
        values = axis_values(axis)
        if not values:
            raise ValueError("needs at least one value")
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            raise ValueError(f"duplicate value(s) {', '.join(f'{value:g}' for value in duplicates)}")
        return axis

    @field_validator("users")
    @classmethod
    def _whole_users(cls, axis: Axis) -> Axis:
        fractional = [value for value in axis_values(axis) if value != int(value)]
        if fractional:
            raise ValueError(f"users must be whole numbers, got {fractional[0]:g}")
        return axis


class OrderSpec(StrictModel):
    randomize: bool = False
    seed: int = Field(0, ge=0)


class CampaignSlice(StrictModel):
    """A slice the grid is applied to; ``bounds.upper`` is its safe (peak) allocation after an actuator fault."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    bounds: Bounds = Bounds()


class PrometheusSpec(StrictModel):
    """Prometheus series exported for each point's wall-clock window (a point without them is incomplete)."""

    url: str = Field(pattern=r"^https?://[^/\s]+")
    queries: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")],
                  Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    step_s: float = Field(1.0, gt=0, le=3600)
    timeout_s: float = Field(10.0, gt=0, le=600)
    retry_attempts: int = Field(6, ge=1, le=100)
    retry_budget_s: float = Field(30.0, gt=0, le=3600)


class CampaignSpec(StrictModel):
    """A dataset-collection campaign (see the module docstring)."""

    name: str = Field(pattern=NAME)
    description: str = ""
    seed: int = Field(0, ge=0)
    testbed: TestbedSpec = TestbedSpec()
    slices: list[CampaignSlice] = Field(min_length=1, max_length=64)
    grid: GridSpec
    dwell_s: int = Field(ge=1, le=86_400)
    settle_s: int = Field(0, ge=0, le=3600, description="seconds held before the dwell, not recorded")
    repetitions: int = Field(1, ge=1, le=1000)
    order: OrderSpec = OrderSpec()
    prometheus: PrometheusSpec | None = None

    @field_validator("slices")
    @classmethod
    def _unique_names(cls, slices: list[CampaignSlice]) -> list[CampaignSlice]:
        reject_duplicate_names(slices)
        return slices

    @model_validator(mode="after")
    def _grid_within_bounds(self) -> CampaignSpec:
        for slice_spec in self.slices:
            for axis, index in (("cpu_millicores", 0), ("bandwidth_mbps", 1)):
                low, high = slice_spec.bounds.lower[index], slice_spec.bounds.upper[index]
                outside = [value for value in axis_values(getattr(self.grid, axis)) if not low <= value <= high]
                if outside:
                    raise ValueError(f"grid.{axis} value {outside[0]:g} is outside slice {slice_spec.name}'s "
                                     f"bounds [{low:g}, {high:g}]")
        if self.points > MAX_POINTS:
            raise ValueError(f"the grid has {self.points} points (x repetitions); at most {MAX_POINTS}")
        return self

    @property
    def points(self) -> int:
        grid = self.grid
        return (len(axis_values(grid.users)) * len(axis_values(grid.bandwidth_mbps))
                * len(axis_values(grid.cpu_millicores)) * self.repetitions)


def load_campaign_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign spec; relative paths resolve against the file's directory.

    Raises:
        InputError: one line naming the file, the key and the problem.
    """
    path = Path(path)
    return campaign_from_document(read_yaml(path), path)


def campaign_from_document(document: Any, source: Path) -> CampaignSpec:
    """Validate parsed YAML (``source`` names it in errors and anchors relative paths)."""
    require_mapping(document, source)
    return resolve_paths(validate(CampaignSpec, document, source), source.parent)
