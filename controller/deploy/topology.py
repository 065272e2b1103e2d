"""The lab topology `slicebed provision` builds on an OpenStack cloud: a YAML file validated by pydantic.

Tier sizes default to SlicePilot's infrastructures (edge 16 vCPU / 16 GiB, regional ("distributed")
32 / 32, central 64 / 64); any of them may be set. Relative paths are relative to the topology file.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from controller.deploy.inventory.tiers import Tier
from core.errors import InputError
from core.validation import StrictModel, resolve_paths, validate
from core.yamlfile import read_yaml_mapping

SLICEPILOT_SIZES = {"edge": (16, 16), "regional": (32, 32), "central": (64, 64)}
"""(vCPU, GiB RAM) per tier, from the SlicePilot evaluation's infrastructure capacities."""

PATH_FIELDS = ("ssh_public_key", "inventory_template")


class TierSpec(StrictModel):
    """VMs of one tier: how many and how big (a named flavor wins over the size)."""

    count: int = Field(1, ge=0, le=64)
    vcpus: int | None = Field(None, ge=1, le=1024, description="default: SlicePilot's size for the tier")
    ram_gib: int | None = Field(None, ge=1, le=8192, description="default: SlicePilot's size for the tier")
    disk_gib: int = Field(40, ge=1, le=65536)
    flavor: str | None = Field(None, min_length=1, description="a flavor name; else the smallest that fits")


class Tiers(StrictModel):
    edge: TierSpec = TierSpec()
    regional: TierSpec = TierSpec()
    central: TierSpec = TierSpec()

    def size(self, tier: Tier) -> tuple[int, int]:
        """(vCPU, GiB RAM) wanted for ``tier``."""
        spec: TierSpec = getattr(self, tier)
        default_cpus, default_ram = SLICEPILOT_SIZES[tier]
        return spec.vcpus or default_cpus, spec.ram_gib or default_ram


class IngressRule(StrictModel):
    """Traffic let in from outside the deployment (everything between its own VMs is always allowed)."""

    protocol: Literal["tcp", "udp", "icmp"]
    ports: tuple[int, int] | None = Field(None, description="[first, last]; none for icmp")
    cidr: IPv4Network = IPv4Network("0.0.0.0/0")

    @model_validator(mode="after")
    def _ports(self) -> IngressRule:
        if self.protocol == "icmp" and self.ports is not None:
            raise ValueError("icmp rules take no ports")
        if self.ports is not None and not 1 <= self.ports[0] <= self.ports[1] <= 65535:
            raise ValueError(f"ports must be [first, last] within 1..65535, got {list(self.ports)}")
        return self


class UnderlaySpec(StrictModel):
    """The network every VM is on: carries the VXLAN overlay, Kubernetes and management traffic."""

    cidr: IPv4Network = IPv4Network("10.20.0.0/24")
    dns: list[IPv4Address] = Field(default_factory=list)


class RoleHosts(StrictModel):
    """Which tier's first VM plays each role of the inventory."""

    kube_control_plane: Tier = "central"
    sdn_controller: Tier = "central"
    monitoring_server: Tier = "central"


class Topology(StrictModel):
    """Everything `slicebed provision` creates, all named ``slicebed-<name>-...`` and tagged with the name."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$", description="the deployment id")
    image: str = Field(min_length=1, description="image name or id (Ubuntu 22.04 / 24.04)")
    ssh_public_key: Path = Field(description="public key installed as the VMs' key pair")
    underlay: UnderlaySpec = UnderlaySpec()
    external_network: str | None = Field(None, description="provider network: a router to it and a floating IP "
                                         "per VM (the inventory then uses the floating IPs)")
    ingress: list[IngressRule] = Field(default_factory=lambda: [
        IngressRule(protocol="tcp", ports=(22, 22)), IngressRule(protocol="icmp")])
    tiers: Tiers = Tiers()
    roles: RoleHosts = RoleHosts()
    inventory_template: Path = Field(description="inventory whose all.vars (slices, latency, ...) are copied")

    @model_validator(mode="after")
    def _roles_have_hosts(self) -> Topology:
        for role, tier in self.roles.model_dump().items():
            if getattr(self.tiers, tier).count == 0:
                raise ValueError(f"roles.{role} is on tier {tier}, which has count 0")
        return self

    def networks(self) -> dict[str, IPv4Network]:
        """Every network the topology names, by key (``underlay.cidr``, ``ingress[i].cidr``)."""
        return {"underlay.cidr": self.underlay.cidr,
                **{f"ingress[{index}].cidr": rule.cidr for index, rule in enumerate(self.ingress)}}

    @property
    def tag(self) -> str:
        """The tag (Neutron, Nova) that marks a resource as this deployment's."""
        return f"slicebed-deployment={self.name}"

    @property
    def prefix(self) -> str:
        return f"slicebed-{self.name}"


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file; relative paths become relative to its directory.

    Raises:
        InputError: missing file, bad YAML, or a key that does not validate (one line naming file and key).
    """
    path = Path(path)
    document = read_yaml_mapping(path)
    topology = resolve_paths(validate(Topology, document, path), path.parent)
    for name in PATH_FIELDS:
        if not getattr(topology, name).is_file():
            raise InputError(f"{path}: {name}: {getattr(topology, name)} does not exist")
    return topology
