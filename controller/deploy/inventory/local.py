"""The local testbed's inventory (``inventory/local.yml``): an Ansible YAML inventory validated by pydantic.

Every mistake (unknown or missing hosts, bad addresses, duplicated ids, unknown keys) is one
:class:`~core.errors.InputError` line naming the file, the key and the fix.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from controller.deploy.inventory.document import host_entries, read_inventory
from controller.deploy.inventory.latency import LatencyMatrixError, tier_latency
from controller.deploy.inventory.tiers import TIERS, Tier
from core.errors import InputError
from core.packet_trace import load_trace
from core.slice_types import QOS_OF_TYPE, QosKind, SliceType
from core.validation import StrictModel, validate

ENDPOINTS = ("app", "ue")
LOCAL_HOSTS = (*TIERS, *ENDPOINTS)
DEFAULT_INVENTORY = Path("inventory/local.yml")
STATE_ROOT = Path("/run/slicebed")
MAC_PATTERN = r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"
DEFAULT_CPU_SCALE = 0.125
"""Host cores per nominal core: the paper's 500-4000 millicores become 1/16 to 1/2 core of a 2-core host."""
RAN_HOST: Tier = "edge"
"""The node whose cgroup (the shared CPU capacity) holds every slice's RAN emulator cgroup."""
MAX_SLICES = 64
"""Each slice has its own DSCP (0-63); each data-plane program has a block of this many ports (one per slice)."""
PLACEABLE_VNFS = ("upf",)
"""The VNFs a slice can place on a tier (the RAN emulator does not split CU and DU stages: it stays on edge)."""


class Route(StrictModel):
    to: str
    via: ipaddress.IPv4Address

    @field_validator("to")
    @classmethod
    def destination(cls, value: str) -> str:
        if value != "default":
            ipaddress.IPv4Network(value)
        return value


class HostVars(StrictModel):
    """Per-host variables of a namespace node."""

    node_id: int = Field(ge=1, le=250)
    mgmt_address: ipaddress.IPv4Address
    transport_address: ipaddress.IPv4Address | None = None
    transport_mac: str | None = Field(default=None, pattern=MAC_PATTERN)
    cpu_millicores: int | None = Field(default=None, ge=10, le=256000)
    routes: list[Route] = Field(default_factory=list)
    ansible_connection: str | None = None
    ansible_python_interpreter: str | None = None
    netns_name: str | None = None


class Placement(StrictModel):
    """Where a slice's VNFs run. The UPF's tier also runs the slice's app server (its data network, N6 local)."""

    upf: str = Field("regional", description="the tier of the UPF and the app server: edge, regional or central")


class SliceVars(StrictModel):
    """One slice: its own DSCP, meter, UPF, RAN emulator (in its own cgroup below the RAN node's), UE sinks."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,15}$")
    type: SliceType = Field("embb", description="traffic and QoS: embb (throughput), urllc (p95 delay), mmtc "
                                                "(delivery ratio)")
    dscp: int = Field(ge=0, le=63)
    bandwidth_mbps: float = Field(gt=0, le=10000, description="the meter's rate at `testbed up` (nominal Mbps)")
    trace: Path | None = Field(None, description="recorded packets the app server replays (CSV "
                                                 "interarrival_s,size_bytes or .pcap), relative to the inventory")
    placement: Placement = Field(default_factory=Placement, description="the tier of each placeable VNF")

    @model_validator(mode="after")
    def known_tiers(self) -> SliceVars:
        if self.placement.upf not in TIERS:
            raise ValueError(f"slice {self.name}: placement upf: unknown tier {self.placement.upf!r}; the tiers are "
                             f"{', '.join(TIERS)}")
        return self

    @property
    def upf_tier(self) -> Tier:
        """The tier the inventory places the UPF on (a running testbed records its own: ``testbed place``)."""
        return tier(self.placement.upf)

    @property
    def qos(self) -> QosKind:
        return QOS_OF_TYPE[self.type]


class Latency(StrictModel):
    a: Tier
    b: Tier
    delay_ms: float = Field(ge=0, le=1000)
    jitter_ms: float = Field(default=0, ge=0, le=1000)

    @model_validator(mode="after")
    def distinct(self) -> Latency:
        if self.a == self.b:
            raise ValueError(f"a latency entry joins {self.a} to itself; name two different tiers")
        if self.jitter_ms > self.delay_ms:
            raise ValueError(f"jitter_ms {self.jitter_ms:g} exceeds delay_ms {self.delay_ms:g}; lower it")
        return self


class Link(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,14}$")
    a: str
    a_address: ipaddress.IPv4Address
    b: str
    b_address: ipaddress.IPv4Address
    prefixlen: int = Field(ge=8, le=30)


class GlobalVars(StrictModel):
    """The inventory's ``all.vars``."""

    testbed_mode: Literal["local"] = "local"
    testbed_prefix: str = Field(default="sb-", pattern=r"^[a-z][a-z0-9]{0,6}-$")
    mgmt_subnet: ipaddress.IPv4Network
    mgmt_gateway: ipaddress.IPv4Address
    transport_subnet: ipaddress.IPv4Network
    slices: list[SliceVars] = Field(min_length=1, max_length=MAX_SLICES)
    latency: list[Latency] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    prometheus_port: int = Field(default=9090, ge=1, le=65535)
    node_exporter_port: int = Field(default=9100, ge=1, le=65535)
    scrape_interval_s: float = Field(default=1, gt=0, le=60)
    exporter_port: int = Field(default=9464, ge=1, le=65535 - 4 * MAX_SLICES,
                               description="the first data-plane program port (a block of 64 per kind of program)")
    transport_bandwidth_mbps: float = Field(
        default=100, gt=0, le=10000, description="the shared transport capacity towards edge (nominal Mbps): one "
                                                 "OpenFlow meter after the slices' own")
    cpu_scale: float = Field(default=DEFAULT_CPU_SCALE, gt=0, le=64, description="host cores per nominal core")
    rate_scale: float = Field(default=1.0, gt=0, le=64, description="host Mbit/s per nominal Mbps (meters)")

    @model_validator(mode="after")
    def consistent(self) -> GlobalVars:
        if self.mgmt_gateway not in self.mgmt_subnet:
            raise ValueError(f"mgmt_gateway {self.mgmt_gateway} is outside mgmt_subnet {self.mgmt_subnet}")
        if self.mgmt_subnet.overlaps(self.transport_subnet):
            raise ValueError("mgmt_subnet and transport_subnet overlap; give them disjoint ranges")
        if len({self.prometheus_port, self.node_exporter_port}) < 2:
            raise ValueError("prometheus_port and node_exporter_port are the same port; pick two")
        for key in ("name", "dscp"):
            values = [getattr(s, key) for s in self.slices]
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"two slices have {key} {repeated[0]}; each slice needs its own")
        try:
            tier_pairs(self.latency)
        except LatencyMatrixError as error:
            raise ValueError(str(error)) from None
        needed = math.fsum(s.bandwidth_mbps for s in self.slices)
        if needed > self.transport_bandwidth_mbps:
            raise ValueError(f"transport_bandwidth_mbps {self.transport_bandwidth_mbps:g} is below the sum of the "
                             f"slices' bandwidth_mbps ({needed:g}); raise it or lower the slices'")
        return self


def tier_pairs(latency: list[Latency]) -> list[dict[str, Any]]:
    """Every pair of tiers with its delay (:func:`~controller.deploy.inventory.latency.tier_latency`; the local
    testbed's hosts are named after their tiers); empty without a matrix."""
    return tier_latency([entry.model_dump() for entry in latency], {name: name for name in TIERS}) if latency else []


def tier(name: str) -> Tier:
    """``name`` as a tier; ValueError naming the tiers when it is none."""
    for known in TIERS:
        if name == known:
            return known
    raise ValueError(f"unknown tier {name!r}; the tiers are {', '.join(TIERS)}")


@dataclass(frozen=True)
class LocalInventory:
    """A validated local-testbed inventory and the names derived from it."""

    path: Path
    settings: GlobalVars
    hosts: dict[str, HostVars]

    @property
    def prefix(self) -> str:
        return self.settings.testbed_prefix

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.prefix.rstrip("-")

    @property
    def tier_delays(self) -> list[dict[str, Any]]:
        """Every pair of tiers with its one-way ``delay_ms`` and ``jitter_ms`` (pairs without a link of the matrix:
        the path sum, ``derived``); empty without a latency matrix."""
        return tier_pairs(self.settings.latency)

    def delay_ms(self, a: Tier, b: Tier) -> float:
        """The one-way delay between tiers ``a`` and ``b`` (0 on the same tier or without a matrix)."""
        return next((pair["delay_ms"] for pair in self.tier_delays if set(pair["tiers"]) == {a, b}), 0.0)

    def netns(self, host: str) -> str:
        return f"{self.prefix}{host}"

    @property
    def switch_netns(self) -> str:
        return f"{self.prefix}sw"

    @property
    def namespaces(self) -> list[str]:
        return [self.switch_netns, *(self.netns(host) for host in self.hosts)]

    @property
    def root_links(self) -> list[str]:
        return [f"{self.prefix}mgmt", *(f"{self.prefix}m{h.node_id}" for h in self.hosts.values())]

    @property
    def bridge(self) -> str:
        return f"{self.prefix}tr"

    @property
    def switch_socket(self) -> Path:
        """The transport bridge's OpenFlow management socket (the testbed runs its own ovs-vswitchd)."""
        return self.state_dir / "ovs" / f"{self.bridge}.mgmt"

    @property
    def switch_target(self) -> str:
        """What ovs-ofctl connects to for the transport bridge."""
        return f"unix:{self.switch_socket}"

    def cgroup_name(self, host: str) -> str:
        return f"{self.prefix}{host}"

    def slice_cgroup_name(self, slice_name: str) -> str:
        """The cgroup of one slice's RAN emulator, below the RAN node's (whose quota all slices share)."""
        return f"{self.cgroup_name(RAN_HOST)}/{slice_name}"


def load_inventory(path: str | Path) -> LocalInventory:
    """Read and validate a local-testbed inventory; raise InputError (one line) on any mistake."""
    path = Path(path)
    top = read_inventory(path)
    settings = validate(GlobalVars, top.get("vars") or {}, path, at="all.vars")
    found = {entry.name: entry for entry in host_entries(top, path)}
    unknown = sorted(set(found) - set(LOCAL_HOSTS))
    if unknown:
        raise InputError(f"{path}: unknown host {unknown[0]!r}; the local testbed's hosts are "
                         f"{', '.join(LOCAL_HOSTS)}")
    missing = [host for host in LOCAL_HOSTS if host not in found]
    if missing:
        raise InputError(f"{path}: host {missing[0]!r} is missing; the local testbed needs {', '.join(LOCAL_HOSTS)}")
    hosts = {name: validate(HostVars, entry.variables, path, at=entry.where) for name, entry in found.items()}
    _check_topology(path, settings, hosts)
    settings = settings.model_copy(update={"slices": [_resolve_trace(path, s) for s in settings.slices]})
    return LocalInventory(path=path, settings=settings, hosts=hosts)


def _resolve_trace(path: Path, slice_vars: SliceVars) -> SliceVars:
    """The slice with its trace path made absolute (relative to the inventory) and the trace checked."""
    if slice_vars.trace is None:
        return slice_vars
    trace = slice_vars.trace if slice_vars.trace.is_absolute() else (path.parent / slice_vars.trace).resolve()
    try:
        load_trace(trace)
    except InputError as exc:
        raise InputError(f"{path}: all.vars.slices {slice_vars.name}: trace {exc}") from None
    return slice_vars.model_copy(update={"trace": trace})


def _check_topology(path: Path, settings: GlobalVars, hosts: dict[str, HostVars]) -> None:
    """Cross-host rules: unique ids and addresses, addresses in their subnets, tiers on the transport."""
    seen_ids: dict[int, str] = {}
    for name, host in hosts.items():
        where = f"{path}: host {name}"
        if host.node_id in seen_ids:
            raise InputError(f"{where}: node_id {host.node_id} is also {seen_ids[host.node_id]}'s; make it unique")
        seen_ids[host.node_id] = name
        if host.mgmt_address not in settings.mgmt_subnet:
            raise InputError(f"{where}: mgmt_address {host.mgmt_address} is outside mgmt_subnet {settings.mgmt_subnet}")
        if name in TIERS:
            if host.transport_address is None or host.transport_mac is None:
                raise InputError(f"{where}: a tier needs transport_address and transport_mac")
            if host.transport_address not in settings.transport_subnet:
                raise InputError(f"{where}: transport_address {host.transport_address} is outside transport_subnet "
                                 f"{settings.transport_subnet}")
        elif host.transport_address is not None:
            raise InputError(f"{where}: only tiers ({', '.join(TIERS)}) sit on the transport; drop transport_address")
    for kind in ("mgmt_address", "transport_address", "transport_mac"):
        values = [getattr(h, kind) for h in hosts.values() if getattr(h, kind) is not None]
        if len(set(values)) < len(values):
            raise InputError(f"{path}: two hosts share a {kind}; give each its own")
    if any(h.mgmt_address == settings.mgmt_gateway for h in hosts.values()):
        raise InputError(f"{path}: a host uses mgmt_gateway {settings.mgmt_gateway} as its mgmt_address")
    for link in settings.links:
        for side in (link.a, link.b):
            if side not in hosts:
                raise InputError(f"{path}: all.vars.links {link.name}: unknown host {side!r}; use one of "
                                 f"{', '.join(LOCAL_HOSTS)}")
