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
Component = Literal["kubernetes", "ovs_transport", "netem", "open5gs", "ran", "onos", "traffic", "monitoring"]
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


class TrafficSettings(StrictModel):
    """The ``traffic`` section of a lab inventory's all.vars: where slicebed's app servers and UE sinks run and how
    they send (the lab_traffic role, playbooks/filter_plugins/lab_traffic.py; docs/lab-guide.md)."""

    form: Literal["pods", "hosts"] = Field("pods", description="pods: beside the Open5GS data networks and the UEs "
                                           "(manifests/); hosts: services on the tier hosts (lab_traffic role)")
    stream_port: int = Field(5000, ge=1, le=65535, description="slice i's app server stream port is this + i")
    sink_port: int = Field(6000, ge=1, le=65535, description="slice i's UE sink receives on this + i")
    sink_metrics_port: int = Field(9564, ge=1, le=65535, description="slice i's UE sink publishes on this + i (hosts)")
    packet_bytes: int = Field(1300, ge=14, le=1328, description="UDP payload; + IPv4 20 + UDP 8 must fit the UE MTU "
                              "the SMFs announce (1356)")
    user_rate_mbps: float = Field(12.0, gt=0, description="eMBB per-user rate of the app servers")
    ue_device: str | None = Field(None, description="host form: every sink's interface (default by the slice's ran: "
                                  "tun_srsue, oaitun_ue1; a slice's ue_device wins)")


class PlaybookSection(BaseModel):
    """A part of the inventory shared with the playbooks: keys slicebed does not read are theirs, and kept."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)


class LabSlice(PlaybookSection):
    name: str = Field(min_length=1)
    gnb_n3_ip: ipaddress.IPv4Address | None = Field(None, description="the gNB's N3 address (ONOS steers by it)")
    bandwidth_mbps: float | None = Field(None, gt=0, description="the slice's initial transport meter rate")


class LatencyLink(PlaybookSection):
    """One link of the latency matrix (the netem role reads the rest)."""

    a: Tier
    b: Tier
    delay_ms: float = Field(ge=0, le=1000)
    jitter_ms: float = Field(0, ge=0, le=1000)


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
    traffic: TrafficSettings = TrafficSettings()
    latency: list[LatencyLink] = Field(default_factory=list)


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

    @property
    def prometheus_url(self) -> str:
        """The lab's Prometheus: ``lab_backend.prometheus_url``, else the monitoring server's on ``prometheus_port``."""
        backend = self.variables.lab_backend
        if backend is not None and backend.prometheus_url:
            return backend.prometheus_url
        return f"http://{self.first_host('monitoring_server')}:{self.variables.prometheus_port}"

    def app_server_url(self, slice_name: str) -> str:
        """Base URL of the slice's app server control endpoint: slice i's on the app server tier's first host at
        ``lab_backend.app_server_port + i`` (the lab_traffic role's services, or the pods' NodePorts)."""
        settings = self.settings
        port = settings.app_server_port + self.slices.index(slice_name)
        return f"http://{self.first_host(settings.app_server_tier)}:{port}"

    def slice_entry(self, slice_name: str) -> LabSlice:
        return next(entry for entry in self.variables.slices if entry.name == slice_name)

    def gnb_n3_ip(self, slice_name: str) -> str | None:
        found = self.slice_entry(slice_name).gnb_n3_ip
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
