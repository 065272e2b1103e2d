"""Placement specs: tiers, flavors, inter-tier latencies, the VNF chain and slice types, as YAML validated by pydantic.

Every key has a default, so an empty file (or no file) is the SlicePilot evaluation setting (Sec. V-A). The
numbers the paper's text lost are chosen here and listed in ``docs/placement.md`` ("Defaults"):

- costs per core-hour and GiB-hour (edge > regional > central, AWS-like ratios);
- per-VNF CPU and memory (OAI-like, 5.6 cores per slice on average so that 5/10/15 slices are 25/50/75 % of
  the 112 cores); URLLC's user plane is lighter (Fig. 5: its DU/CU/UPF use about a tenth of eMBB's CPU);
- the latency bounds (URLLC 10 ms, eMBB 20 ms, mMTC 50 ms) and mMTC's consolidated control plane;
- the inter-tier latencies of ``inventory/lab.example.yml`` (edge-regional 5 ms, regional-central 10 ms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.errors import InputError
from core.validation import StrictModel, resolve_paths, validate
from core.yamlfile import read_yaml, read_yaml_mapping

NAME = r"^[a-z][a-z0-9-]{0,23}$"


class TierSpec(StrictModel):
    """One cloud infrastructure (edge, regional, central): capacity, hourly prices, UPF latency to the data network."""

    name: str = Field(pattern=NAME)
    cpu_cores: float = Field(gt=0, le=100000)
    memory_gib: float = Field(gt=0, le=100000)
    cost_per_core_hour: float = Field(ge=0, le=1000, description="$/h for one reserved core")
    cost_per_gib_hour: float = Field(ge=0, le=1000, description="$/h for one reserved GiB")
    upf_latency_ms: float = Field(ge=0, le=1000, description="latency from a UPF on this tier to the data network")


class FlavorSpec(StrictModel):
    """A VM size; each VNF runs in the smallest flavor that holds its demand (its Kubernetes limits)."""

    name: str = Field(pattern=NAME)
    cpu_cores: float = Field(gt=0, le=1024)
    memory_gib: float = Field(gt=0, le=4096)


class LatencySpec(StrictModel):
    """One inter-tier link, in the format of the testbed inventory's ``latency`` list (symmetric)."""

    a: str
    b: str
    delay_ms: float = Field(ge=0, le=1000)
    jitter_ms: float = Field(default=0, ge=0, le=1000)
    loss_pct: float = Field(default=0, ge=0, le=100, description="read for compatibility; placement ignores it")

    @model_validator(mode="after")
    def _distinct(self) -> LatencySpec:
        if self.a == self.b:
            raise ValueError(f"a latency entry joins {self.a} to itself; name two different tiers")
        return self


class Demand(StrictModel):
    """CPU and memory of one VNF."""

    cpu_cores: float = Field(gt=0, le=100000)
    memory_gib: float = Field(gt=0, le=100000)


class VnfSpec(Demand):
    """One VNF of the chain every slice instantiates."""

    name: str = Field(pattern=NAME)
    plane: Literal["control", "user"]
    image: str = Field(min_length=1, description="container image the lab manifests run (pinned)")


class SliceTypeSpec(StrictModel):
    """A slice type's SLA (latency bound, consolidated VNFs), demand overrides and RL reward."""

    latency_bound_ms: float = Field(gt=0, le=10000, description="end-to-end user-plane latency bound")
    consolidate: list[str] = Field(default_factory=list, description="VNFs that must share one tier")
    demands: dict[str, Demand] = Field(default_factory=dict, description="per-VNF overrides of the chain's demand")
    sla_reward: float = Field(10, gt=0, le=1000, description="RL reward for a slice meeting its SLA (minus if not)")


class SliceRequest(StrictModel):
    """A slice to place, in arrival order."""

    name: str = Field(pattern=NAME)
    type: str


OAI = "docker.io/oaisoftwarealliance"


def _default_tiers() -> list[TierSpec]:
    return [TierSpec(name="edge", cpu_cores=16, memory_gib=16, cost_per_core_hour=0.10, cost_per_gib_hour=0.020,
                     upf_latency_ms=5),
            TierSpec(name="regional", cpu_cores=32, memory_gib=32, cost_per_core_hour=0.06, cost_per_gib_hour=0.012,
                     upf_latency_ms=7.5),
            TierSpec(name="central", cpu_cores=64, memory_gib=64, cost_per_core_hour=0.04, cost_per_gib_hour=0.008,
                     upf_latency_ms=10)]


def _default_flavors() -> list[FlavorSpec]:
    return [FlavorSpec(name="small", cpu_cores=1, memory_gib=1), FlavorSpec(name="medium", cpu_cores=2, memory_gib=2),
            FlavorSpec(name="large", cpu_cores=4, memory_gib=4)]


def _default_latency() -> list[LatencySpec]:
    return [LatencySpec(a="edge", b="regional", delay_ms=5, jitter_ms=1),
            LatencySpec(a="regional", b="central", delay_ms=10, jitter_ms=2)]


def _default_vnfs() -> list[VnfSpec]:
    control = [("nrf", "oai-nrf"), ("uua", "oai-udm"), ("amf", "oai-amf"), ("smf", "oai-smf")]
    vnfs = [VnfSpec(name=name, plane="control", cpu_cores=0.5, memory_gib=0.5, image=f"{OAI}/{image}:v2.1.0")
            for name, image in control]
    vnfs += [VnfSpec(name="upf", plane="user", cpu_cores=1.5, memory_gib=1, image=f"{OAI}/oai-upf:v2.1.0"),
             VnfSpec(name="cu", plane="user", cpu_cores=1, memory_gib=1, image=f"{OAI}/oai-gnb:2024.w32"),
             VnfSpec(name="du", plane="user", cpu_cores=1.5, memory_gib=1, image=f"{OAI}/oai-gnb:2024.w32")]
    return vnfs


def _default_types() -> dict[str, SliceTypeSpec]:
    light = Demand(cpu_cores=0.5, memory_gib=0.5)
    return {"urllc": SliceTypeSpec(latency_bound_ms=10, sla_reward=20,
                                   demands={"upf": light, "cu": light, "du": Demand(cpu_cores=1, memory_gib=0.5)}),
            "embb": SliceTypeSpec(latency_bound_ms=20, sla_reward=15),
            "mmtc": SliceTypeSpec(latency_bound_ms=50, sla_reward=10, consolidate=["nrf", "uua", "amf", "smf"])}


class PlacementSpec(StrictModel):
    """The whole placement problem but the requests' count: infrastructure, chain, slice types, optional slices."""

    tiers: list[TierSpec] = Field(default_factory=_default_tiers, min_length=1, max_length=16)
    flavors: list[FlavorSpec] = Field(default_factory=_default_flavors, min_length=1)
    latency: list[LatencySpec] | None = Field(None, description="inter-tier links (default: edge-regional 5 ms, "
                                              "regional-central 10 ms)")
    latency_inventory: Path | None = Field(None, description="read `all.vars.latency` of this Ansible inventory")
    radio_tier: str | None = Field(None, description="tier of the radio units (default: the first tier)")
    vnfs: list[VnfSpec] = Field(default_factory=_default_vnfs, min_length=1)
    user_plane_path: list[str] = Field(default=["du", "cu", "upf"], min_length=1,
                                       description="user-plane VNFs from the radio to the anchor UPF")
    slice_types: dict[str, SliceTypeSpec] = Field(default_factory=_default_types, min_length=1)
    slices: list[SliceRequest] = Field(default_factory=list, description="requests in arrival order")

    @model_validator(mode="after")
    def _names_resolve(self) -> PlacementSpec:
        tiers = [tier.name for tier in self.tiers]
        _unique("tiers", tiers)
        _unique("flavors", [flavor.name for flavor in self.flavors])
        vnfs = {vnf.name: vnf for vnf in self.vnfs}
        _unique("vnfs", [vnf.name for vnf in self.vnfs])
        _unique("slices", [request.name for request in self.slices])
        if self.latency is not None and self.latency_inventory is not None:
            raise ValueError("give either latency or latency_inventory, not both")
        for link in self.latency or []:
            for end in (link.a, link.b):
                if end not in tiers:
                    raise ValueError(f"latency: unknown tier {end!r}; tiers are {', '.join(tiers)}")
        if self.radio_tier is not None and self.radio_tier not in tiers:
            raise ValueError(f"radio_tier: unknown tier {self.radio_tier!r}; tiers are {', '.join(tiers)}")
        for name in self.user_plane_path:
            if vnfs.get(name) is None or vnfs[name].plane != "user":
                raise ValueError(f"user_plane_path: {name!r} is not a user-plane VNF of vnfs")
        _unique("user_plane_path", self.user_plane_path)
        for type_name, slice_type in self.slice_types.items():
            for name in [*slice_type.consolidate, *slice_type.demands]:
                if name not in vnfs:
                    raise ValueError(f"slice_types.{type_name}: unknown VNF {name!r}; VNFs are {', '.join(vnfs)}")
        for index, request in enumerate(self.slices):
            if request.type not in self.slice_types:
                raise ValueError(f"slices[{index}]: unknown slice type {request.type!r}; known types are "
                                 f"{', '.join(self.slice_types)}")
        return self

    def latency_links(self) -> list[LatencySpec]:
        """The inter-tier links: inline, from ``latency_inventory`` or the defaults."""
        if self.latency is not None:
            return self.latency
        if self.latency_inventory is None:
            return _default_latency()
        return inventory_latency(self.latency_inventory, [tier.name for tier in self.tiers])


def _unique(key: str, names: list[str]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{key}: {repeated[0]!r} appears twice; names must be unique")


def inventory_latency(path: Path, tiers: list[str]) -> list[LatencySpec]:
    """The ``all.vars.latency`` list of an Ansible inventory (``inventory/local.yml`` or a lab one)."""
    document = read_yaml(path)
    links = (((document or {}).get("all") or {}).get("vars") or {}).get("latency") if isinstance(document, dict) \
        else None
    if not isinstance(links, list) or not links:
        raise InputError(f"{path}: all.vars.latency: no latency list to read inter-tier latencies from")
    result = []
    for index, entry in enumerate(links):
        link = validate(LatencySpec, entry, path, at=f"all.vars.latency[{index}]")
        for end in (link.a, link.b):
            if end not in tiers:
                raise InputError(f"{path}: all.vars.latency[{index}]: unknown tier {end!r}; the placement spec's "
                                 f"tiers are {', '.join(tiers)}")
        result.append(link)
    return result


def load_placement_spec(path: str | Path | None) -> PlacementSpec:
    """Read and validate a placement spec (``None``: the defaults); one-line InputError on any mistake.

    The numeric checks that need the whole model (a VNF larger than every tier, a latency bound no placement
    meets, disconnected tiers) run when :func:`controller.placement.problem.build_problem` builds it.
    """
    if path is None:
        return PlacementSpec()
    path = Path(path)
    document = read_yaml_mapping(path)
    return resolve_paths(validate(PlacementSpec, document, path), path.parent)
