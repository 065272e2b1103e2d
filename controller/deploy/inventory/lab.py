"""A lab's inventory (the format of ``inventory/lab.example.yml``): the parts slicebed's Python reads, validated.

The same file drives the lab playbooks, so ``all.vars`` may hold keys only the playbooks read; slicebed
validates the keys it reads itself: the slices, the ports and credential variables it uses, and the
``lab_backend`` section that chooses how the controller drives the lab (strict: every key is known).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from controller.deploy.inventory.document import host_entries, read_inventory
from controller.deploy.inventory.documentation import refuse_documentation_addresses
from controller.deploy.inventory.tiers import Tier
from core.errors import InputError
from core.validation import StrictModel, validate

BACKEND_SECTION = "lab_backend"
KUBECONFIG_SUFFIX = ".kubeconfig"
Component = Literal["kubernetes", "ovs_transport", "netem", "open5gs", "ran", "onos", "monitoring"]
COMPONENTS: tuple[Component, ...] = get_args(Component)
"""site.yml's components, in its order: each one's install play carries its name as a tag, its uninstall play
``<name>_uninstall``."""


class SshSettings(StrictModel):
    """How the backend logs in to the nodes: the same environment variables as the inventory's Ansible."""

    user_env: str = "SLICEBED_LAB_SSH_USER"
    key_env: str = "SLICEBED_LAB_SSH_KEY"
    passphrase_env: str | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    port: int = Field(22, ge=1, le=65535)
    become: bool = True


class KubernetesSettings(StrictModel):
    kubeconfig: Path | None = Field(None, description="default: the kubeconfig `testbed up` hands off next to the "
                                    "inventory (<inventory name>.kubeconfig)")
    context: str | None = None
    namespace: str = "slicebed"
    selector: str = Field("app.kubernetes.io/component=gnb,slicebed.io/slice={slice}",
                          description="label selector of a slice's gNB pod; {slice} is the slice name")
    container: str = "gnb"


class OvsSettings(StrictModel):
    """Where the slices' bandwidth is set: a port of the transport bridge on one tier's host."""

    tier: Tier = "regional"
    port: str = Field(min_length=1, description="the port the slices' downlink leaves by (onos_meter: ONOS finds it "
                      "by name; ovs_queue: it holds the linux-htb queues, a real NIC)")
    vsctl: list[str] = Field(default_factory=lambda: ["ovs-vsctl", "--timeout=10"])


class LabBackendSettings(StrictModel):
    """The ``lab_backend`` section of a lab inventory's all.vars."""

    cpu: Literal["cgroup", "pod_resize"] = "cgroup"
    bandwidth: Literal["ovs_queue", "onos_meter"] = "onos_meter"
    ssh: SshSettings = SshSettings()
    cgroup: str = Field("slicebed/gnb-{slice}", description="the gNB's cgroup under the cpu hierarchy")
    kubernetes: KubernetesSettings = KubernetesSettings()
    ovs: OvsSettings
    onos_url: str | None = Field(None, description="default: http://<sdn_controller host>:8181")
    prometheus_url: str | None = Field(None, description="default: http://<monitoring_server host>:<port>")
    app_server_tier: Tier = Field("central", description="where the slicebed app servers run (as on the local "
                                  "testbed)")
    app_server_port: int = Field(9464, ge=1, le=65535, description="control port of slice 0's app server; "
                                 "slice i's is this + i")


class PlaybookSection(BaseModel):
    """A part of the inventory shared with the playbooks: keys slicebed does not read are theirs, and kept."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)


class LabSlice(PlaybookSection):
    name: str = Field(min_length=1)
    gnb_n3_ip: ipaddress.IPv4Address | None = Field(None, description="the gNB's N3 address (ONOS steers by it)")


class LabVars(PlaybookSection):
    """A lab inventory's ``all.vars``, as far as slicebed reads them."""

    testbed_mode: Literal["lab"]
    testbed_components: list[Component] = Field(default_factory=lambda: list(COMPONENTS), min_length=1,
                                                description="what `testbed up` installs and `down` removes (default: "
                                                "all; the lab in a box lists those that need no cluster)")
    underlay_cidr: ipaddress.IPv4Network | None = Field(None, description="the nodes' network (the playbooks find "
                                                        "each node's interface in it)")
    slices: list[LabSlice] = Field(min_length=1)
    prometheus_port: int = Field(9090, ge=1, le=65535)
    onos_user_env: str = "SLICEBED_ONOS_USER"
    onos_password_env: str = "SLICEBED_ONOS_PASSWORD"
    lab_backend: LabBackendSettings | None = None


@dataclass(frozen=True)
class LabInventory:
    """A validated lab inventory: its variables, the hosts of each group and every host's address."""

    path: Path
    variables: LabVars
    groups: dict[str, list[str]]
    addresses: dict[str, str]

    @property
    def slices(self) -> list[str]:
        return [entry.name for entry in self.variables.slices]

    @property
    def settings(self) -> LabBackendSettings:
        """The ``lab_backend`` section; an :class:`InputError` line if the inventory has none."""
        if self.variables.lab_backend is None:
            raise InputError(f"{self.path}: all.vars.{BACKEND_SECTION} is missing; it chooses the lab actuators "
                             "(see docs/lab-python.md)")
        return self.variables.lab_backend

    @property
    def kubeconfig(self) -> Path:
        """The cluster's admin kubeconfig as `testbed up` hands it off: next to the inventory, with its name
        (``inventory/mylab.yml`` -> ``inventory/mylab.kubeconfig``; the kubernetes role's kubernetes_kubeconfig_out)."""
        return self.path.with_suffix(KUBECONFIG_SUFFIX)

    def gnb_n3_ip(self, slice_name: str) -> str | None:
        found = next(entry.gnb_n3_ip for entry in self.variables.slices if entry.name == slice_name)
        return str(found) if found is not None else None

    def first_host(self, group: str) -> str:
        """The address of the first host of ``group``."""
        hosts = self.groups.get(group)
        if not hosts:
            raise InputError(f"{self.path}: group {group} has no hosts")
        return self.addresses[hosts[0]]


def open_lab_inventory(path: str | Path) -> LabInventory:
    """The lab inventory something will run against: loaded, and refused in one line while it still holds the
    example's documentation addresses (nothing is run against those)."""
    inventory = load_lab_inventory(path)
    refuse_documentation_addresses(inventory.path, {"all.vars.underlay_cidr": inventory.variables.underlay_cidr,
                                                    **inventory.addresses})
    return inventory


def load_lab_inventory(path: str | Path) -> LabInventory:
    """Read and validate a lab inventory; raise InputError (one line) on any mistake."""
    path = Path(path)
    top = read_inventory(path)
    variables = validate(LabVars, top.get("vars") or {}, path, at="all.vars")
    groups: dict[str, list[str]] = {}
    addresses: dict[str, str] = {}  # role groups list names only: the tier groups carry ansible_host
    for entry in host_entries(top, path):
        groups.setdefault(entry.group, []).append(entry.name)
        address = entry.variables.get("ansible_host") if isinstance(entry.variables, dict) else None
        if address or entry.name not in addresses:
            addresses[entry.name] = str(address or entry.name)
    return LabInventory(path, variables, groups, addresses)
