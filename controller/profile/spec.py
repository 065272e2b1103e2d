"""A profile spec: which slices of the local testbed to drive, at which user counts, how long, with what allocation.

Example (``experiments/profile-local-3slices.yaml``)::

    name: profile-local-3slices
    slices: [embb, urllc, mmtc]       # slice names of the inventory; each is profiled alone
    users: [1, 2, 4, 8]               # increasing
    dwell_s: 8                        # measured seconds per step
    settle_s: 3                       # seconds after each change of users before measuring
    allocation: {cpu_millicores: 4000, bandwidth_mbps: 40}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from core.validation import StrictModel, resolve_paths, validate
from core.yamlfile import read_yaml_mapping

UserCount = Annotated[int, Field(gt=0, le=1000)]


class ProfileAllocation(StrictModel):
    """The allocation every profiled slice gets while it is driven (generous: the VNFs' demand, not the
    allocation, should decide their CPU)."""

    cpu_millicores: float = Field(4000, gt=0, le=256000, description="nominal millicores of the RAN's cgroup")
    bandwidth_mbps: float = Field(40, gt=0, le=10000, description="nominal Mbps of the slice's meter")


class ProfileSpec(StrictModel):
    """What `slicebed profile` measures; see the module docstring."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")
    description: str = ""
    inventory: Path | None = Field(None, description="local-testbed inventory, relative to the spec (default: "
                                                     "--inventory, else inventory/local.yml)")
    slices: list[str] = Field(min_length=1, description="slice names of the inventory, profiled one after another")
    users: list[UserCount] = Field(default=[1, 2, 4, 8], min_length=1, description="user counts, increasing")
    dwell_s: int = Field(8, ge=2, le=600, description="measured seconds per user count")
    settle_s: int = Field(3, ge=0, le=120, description="seconds after each change of users before measuring")
    allocation: ProfileAllocation = Field(default_factory=ProfileAllocation)

    @model_validator(mode="after")
    def _ordered(self) -> ProfileSpec:
        if any(later <= earlier for earlier, later in zip(self.users, self.users[1:], strict=False)):
            raise ValueError(f"users {self.users} must increase (each count once)")
        repeated = sorted({name for name in self.slices if self.slices.count(name) > 1})
        if repeated:
            raise ValueError(f"slices: {repeated[0]!r} appears twice; name each slice once")
        return self

    @property
    def steps(self) -> int:
        """How many (slice, users) steps the profile measures."""
        return len(self.slices) * len(self.users)


def load_profile_spec(path: Path) -> ProfileSpec:
    """Read, validate and resolve (paths relative to the file) a profile spec.

    Raises:
        InputError: unreadable, not YAML, or invalid; one line naming the file, the key and the problem.
    """
    return resolve_paths(validate(ProfileSpec, read_yaml_mapping(path), path), path.parent)
