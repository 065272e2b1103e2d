"""Sharing scenarios: YAML files validated by pydantic (slices, their trace sources, the schemes to compare)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from controller.sharing.multiplexer import Scheme
from controller.spec import SLICE_NAME, reject_duplicate_names
from core.validation import StrictModel, resolve_paths, validate
from core.yamlfile import read_yaml_mapping

PAPER_WINDOWS = (50, 100, 150, 200, 250)
PAPER_REMOVED_SHARES = (0.5, 0.67, 0.83)


class QuantizationSpec(StrictModel):
    """Per-slice quantization constants (paper Sec. VI-G): values round up to multiples of these."""

    users: int = Field(1, ge=1, le=1000)
    mcs: int = Field(1, ge=1, le=28)
    demand_prb: int = Field(1, ge=1, le=1000)


def _hours(hours: tuple[int, int]) -> tuple[int, int]:
    if not 0 <= hours[0] < hours[1] <= 24:
        raise ValueError(f"hours must be [start, end) within 0-24 with start < end, got {list(hours)}")
    return hours


class SyntheticSource(StrictModel):
    """Users arrive and leave (M/M/inf: Poisson arrivals at ``users_mean x profile / holding_s`` per second,
    geometric holding times) and the average MCS follows a mean-reverting AR(1) chain, each second."""

    kind: Literal["synthetic"]
    hours: tuple[int, int] = Field((17, 22), description="window of each day, [start, end) hours")
    users_mean: float = Field(gt=0, le=10_000, description="mean connected users at profile 1")
    holding_s: float = Field(120.0, ge=1, le=86_400, description="mean connection time")
    day_profile: list[Annotated[float, Field(gt=0, le=100)]] | None = Field(
        None, description="users multiplier per hour of the window (default: 1 throughout)")
    mcs_mean: float = Field(15.0, ge=0, le=28)
    mcs_std: float = Field(3.0, ge=0, le=14)
    mcs_memory_s: float = Field(60.0, gt=0, le=86_400, description="AR(1) time constant of the MCS")

    _check_hours = field_validator("hours")(_hours)

    @model_validator(mode="after")
    def _profile_length(self) -> SyntheticSource:
        span = self.hours[1] - self.hours[0]
        if self.day_profile is not None and len(self.day_profile) != span:
            raise ValueError(f"day_profile needs one value per hour of the window ({span}), got "
                             f"{len(self.day_profile)}")
        return self


class MadridSource(StrictModel):
    """The IMDEA Madrid LTE dataset's files for one cell: per-second users and the raw downlink DCIs."""

    kind: Literal["madrid"]
    users_csv: Path
    raw_parquet: Path
    first_day: date
    hours: tuple[int, int]
    timezone: str = "Europe/Madrid"
    fill_gaps_s: int = Field(0, ge=0, le=3600, description="repeat the last users value over gaps up to this "
                             "long (the paper's code fills every gap); longer gaps are errors")

    _check_hours = field_validator("hours")(_hours)


class CampaignSource(StrictModel):
    """A slicebed campaign run: the slice's users each second; one MCS for all of them (a testbed has no radio)."""

    kind: Literal["campaign"]
    run: Path
    slice: str
    mcs: float = Field(ge=0, le=28)


Source = Annotated[SyntheticSource | MadridSource | CampaignSource, Field(discriminator="kind")]


class SharingSliceSpec(StrictModel):
    """One slice: its constant per-user bitrate, availability target, quantization and trace."""

    name: str = Field(pattern=SLICE_NAME)
    bitrate_mbps: float = Field(gt=0, le=1000)
    availability: float = Field(gt=0, lt=1, description="delta: share of slots whose demand must be accepted")
    quantization: QuantizationSpec = QuantizationSpec()
    source: Source
    trial_segments: int = Field(4, ge=1, le=1000, description="days (or campaign points) of the trial phase")
    regular_segments: int = Field(1, ge=1, le=1000, description="the days (or points) after them: regular phase")


class SharingSpec(StrictModel):
    """A scenario: slices, slotting, the tests and the anomalies to evaluate."""

    name: str = Field(pattern=SLICE_NAME)
    slot_s: int = Field(10, ge=1, le=3600)
    demand_aggregation: Literal["max", "sample"] = "max"
    components: Literal["independent", "joint"] = Field(
        "independent", description="one chain per state component (users, MCS) or one joint chain")
    provisioning: Literal["replay", "total"] = Field(
        "replay", description="Sh/ShT capacity: smallest meeting every availability on a trial replay, or smallest "
        "fitting the total demand in a max(availability) share of trial slots (the paper's code)")
    alpha: float = Field(0.01, gt=0, lt=1, description="false-alarm rate of each test")
    windows: list[Annotated[int, Field(ge=2, le=100_000)]] = Field(list(PAPER_WINDOWS), min_length=1)
    removed_state_shares: list[Annotated[float, Field(gt=0, lt=1)]] = Field(list(PAPER_REMOVED_SHARES),
                                                                            min_length=1)
    anomalous_slices: list[str] | None = Field(None, description="slices made anomalous in turn (default: all)")
    seeds: list[int] = Field([0], min_length=1)
    tbs_table: Path | None = None
    slices: list[SharingSliceSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _slice_names(self) -> SharingSpec:
        reject_duplicate_names(self.slices)
        names = {s.name for s in self.slices}
        unknown = sorted(set(self.anomalous_slices or ()) - names)
        if unknown:
            raise ValueError(f"anomalous_slices names unknown slice(s) {', '.join(unknown)}")
        return self

    @property
    def schemes(self) -> list[Scheme]:
        """NoSh, Sh, then ShT for each window."""
        return [Scheme("nosh"), Scheme("sh"), *(Scheme("sht", window) for window in sorted(set(self.windows)))]

    @property
    def anomalous(self) -> list[str]:
        return self.anomalous_slices if self.anomalous_slices is not None else [s.name for s in self.slices]


def load_sharing_spec(path: Path) -> SharingSpec:
    """Read, validate and resolve (paths relative to the file) a sharing scenario.

    Raises:
        InputError: unreadable, not YAML, or invalid; one line naming the file, the key and the problem.
    """
    document = read_yaml_mapping(path)
    return resolve_paths(validate(SharingSpec, document, path), path.parent)
