"""The ``lab`` testbed: real nodes from a lab inventory (the format of ``inventory/lab.example.yml``).

Per slice, the actuators are chosen by the inventory's ``lab_backend`` section (all.vars):
CPU by the gNB's cgroup over SSH (``cgroup``: ``cpu.max`` on v2) or by in-place pod resize
(``pod_resize``); bandwidth by the slice's OvS queue over SSH (``ovs_queue``) or the same queue with ONOS
steering the slice's traffic into it (``onos_queue``). Queue ids are discovered from OVSDB, the ONOS
device and port by name. Traffic goes through the slicebed app server's control endpoint, QoS comes
from Prometheus (the metric names of docs/design/local-testbed.md), exactly as on the local testbed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from collectors.prometheus import PrometheusReader
from controller.actuators.base import ActuatorError, BandwidthActuator, CpuActuator, Interval
from controller.actuators.cgroup import CgroupCpuActuator
from controller.actuators.kubernetes import PodResizeCpuActuator, open_api
from controller.actuators.onos import OnosClient, OnosQueueSteeringActuator, Steering
from controller.actuators.ovs import OvsQueueActuator
from controller.actuators.ssh import SshRunner, SshTarget
from controller.spec import StrictModel
from controller.testbeds.base import Allocation
from controller.testbeds.local import LocalTestbed, PrometheusQosMeter, QosMeter
from core.commands import CommandRunner
from core.errors import InputError
from core.yamlfile import read_yaml

SECTION = "lab_backend"


class SshSettings(StrictModel):
    """How the backend logs in to the nodes: the same environment variables as the inventory's Ansible."""

    user_env: str = "SLICEBED_LAB_SSH_USER"
    key_env: str = "SLICEBED_LAB_SSH_KEY"
    passphrase_env: str | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    port: int = Field(22, ge=1, le=65535)
    become: bool = True


class KubernetesSettings(StrictModel):
    kubeconfig: Path = Path("~/.kube/config")
    context: str | None = None
    namespace: str = "slicebed"
    selector: str = Field("app.kubernetes.io/component=gnb,slicebed.io/slice={slice}",
                          description="label selector of a slice's gNB pod; {slice} is the slice name")
    container: str = "gnb"


class OvsSettings(StrictModel):
    """Where the slices' queues are: a port of the transport bridge on one tier's host."""

    tier: Literal["edge", "regional", "central"] = "regional"
    port: str = Field(min_length=1, description="the port carrying the queues (the uplink towards the edge)")
    vsctl: list[str] = Field(default_factory=lambda: ["ovs-vsctl", "--timeout=10"])


class LabBackendSettings(StrictModel):
    """The ``lab_backend`` section of a lab inventory's all.vars."""

    cpu: Literal["cgroup", "pod_resize"] = "cgroup"
    bandwidth: Literal["ovs_queue", "onos_queue"] = "ovs_queue"
    ssh: SshSettings = SshSettings()
    cgroup: str = Field("slicebed/gnb-{slice}", description="the gNB's cgroup under the cpu hierarchy")
    kubernetes: KubernetesSettings = KubernetesSettings()
    ovs: OvsSettings
    onos_url: str | None = Field(None, description="default: http://<sdn_controller host>:8181")
    prometheus_url: str | None = Field(None, description="default: http://<monitoring_server host>:<port>")
    app_server_tier: Literal["edge", "regional", "central"] = Field("central", description="where the slicebed "
                                                                     "app servers run (as on the local testbed)")
    app_server_port: int = Field(9464, ge=1, le=65535, description="control port of slice 0's app server; "
                                 "slice i's is this + i")


class LabInventory:
    """The parts of a lab inventory the backend needs: slices, hosts by group, the backend settings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        document = read_yaml(path)
        try:
            self.variables: dict[str, Any] = dict(document["all"]["vars"])
            self.groups: dict[str, Any] = dict(document["all"]["children"])
        except (TypeError, KeyError):
            raise InputError(f"{path}: not an inventory with all.vars and all.children") from None
        if SECTION not in self.variables:
            raise InputError(f"{path}: all.vars.{SECTION} is missing; it chooses the lab actuators (see "
                             "docs/lab-python.md)")
        try:
            self.settings = LabBackendSettings.model_validate(self.variables[SECTION])
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InputError(f"{path}: all.vars.{SECTION}.{where}: {first['msg']}") from None
        slices = self.variables.get("slices") or []
        if not isinstance(slices, list) or not all(isinstance(entry, dict) and entry.get("name") for entry in slices):
            raise InputError(f"{path}: all.vars.slices must be a list of mappings, each with a name")
        self.slices = [str(entry["name"]) for entry in slices]
        self.gnb_n3_ips = {entry["name"]: entry.get("gnb_n3_ip") for entry in self.variables.get("slices", [])}
        self.addresses: dict[str, str] = {}  # role groups list names only: the tier groups carry ansible_host
        for group in self.groups.values():
            for name, entry in ((group or {}).get("hosts") or {}).items():
                if (entry or {}).get("ansible_host") or name not in self.addresses:
                    self.addresses[name] = str((entry or {}).get("ansible_host", name))

    def first_host(self, group: str) -> str:
        """The address of the first host of ``group``."""
        hosts = list((self.groups.get(group) or {}).get("hosts") or {})
        if not hosts:
            raise InputError(f"{self.path}: group {group} has no hosts")
        return self.addresses[hosts[0]]


class LabTestbed(LocalTestbed):
    """Drives a deployed lab: the actuators the inventory chooses, users through the app servers' control
    endpoints, per-second QoS from Prometheus (collection and traffic shutdown as on the local testbed)."""

    name = "lab"

    def __init__(self, inventory: LabInventory, cpu: dict[str, CpuActuator], bandwidth: dict[str, BandwidthActuator],
                 meter: QosMeter, closers: list[Callable[[], None]] | None = None, timeout_s: float = 5.0) -> None:
        super().__init__(inventory, cpu, bandwidth, meter, timeout_s)  # type: ignore[arg-type]
        self.lab = inventory
        self.closers = closers or []

    def publish_allocation(self, slice_name: str, applied: Allocation) -> None:
        """Nothing to publish: labs run no slicebed allocation exporter (the run records what was applied)."""

    def app_server_url(self, slice_name: str) -> str:
        settings = self.lab.settings
        port = settings.app_server_port + self.lab.slices.index(slice_name)
        return f"http://{self.lab.first_host(settings.app_server_tier)}:{port}"

    def close(self) -> None:
        try:
            super().close()
        finally:
            for closer in self.closers:
                closer()


RunnerFactory = Callable[[str], CommandRunner]


class SshRunners:
    """One SSH runner per node address, logging in as the inventory's Ansible does (user and key from env)."""

    def __init__(self, settings: SshSettings) -> None:
        key = os.environ.get(settings.key_env)
        if not key:
            raise InputError(f"set {settings.key_env} to the SSH private key of the lab nodes")
        self.settings = settings
        self.user = os.environ.get(settings.user_env, "ubuntu")
        self.key = Path(key).expanduser()
        self.runners: dict[str, SshRunner] = {}

    def __call__(self, host: str) -> CommandRunner:
        if host not in self.runners:
            settings = self.settings
            self.runners[host] = SshRunner(SshTarget(
                host=host, user=self.user, key_file=self.key, known_hosts=settings.known_hosts.expanduser(),
                port=settings.port, passphrase_env=settings.passphrase_env, become=settings.become))
        return self.runners[host]

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()


def open_lab_testbed(inventory_path: Path | None, bounds: dict[str, tuple[Interval, Interval]],
                     runner_for: RunnerFactory | None = None, meter: QosMeter | None = None) -> LabTestbed:
    """The lab backend for the slices in ``bounds`` (each: CPU and bandwidth bounds) on a deployed lab.

    ``runner_for`` maps a node address to its command runner (default: SSH as configured); ``meter``
    reads QoS (default: Prometheus on the monitoring server).
    """
    if inventory_path is None:
        raise InputError("the lab testbed needs 'testbed.inventory: FILE' (a lab inventory) in the spec")
    inventory = LabInventory(inventory_path)
    settings = inventory.settings
    missing = [name for name in bounds if name not in inventory.slices]
    if missing:
        raise InputError(f"{inventory_path}: slice(s) {', '.join(missing)} are not in the inventory's slices "
                         f"({', '.join(inventory.slices) or 'none'})")
    closers: list[Callable[[], None]] = []
    if runner_for is None:
        ssh = SshRunners(settings.ssh)
        closers.append(ssh.close)
        runner_for = ssh
    try:
        cpu = {name: _cpu_actuator(inventory, name, limits[0], runner_for) for name, limits in bounds.items()}
        onos = None
        if settings.bandwidth == "onos_queue":
            onos = OnosClient.from_env(settings.onos_url or f"http://{inventory.first_host('sdn_controller')}:8181",
                                       inventory.variables.get("onos_user_env", "SLICEBED_ONOS_USER"),
                                       inventory.variables.get("onos_password_env", "SLICEBED_ONOS_PASSWORD"))
            closers.append(onos.close)
        bandwidth = {name: _bandwidth_actuator(inventory, name, limits[1], runner_for, onos)
                     for name, limits in bounds.items()}
    except (InputError, ActuatorError):
        for closer in closers:
            closer()
        raise
    if meter is None:
        url = settings.prometheus_url or (f"http://{inventory.first_host('monitoring_server')}:"
                                          f"{inventory.variables.get('prometheus_port', 9090)}")
        reader = PrometheusReader(url)
        closers.append(reader.close)
        meter = PrometheusQosMeter(reader)
    return LabTestbed(inventory, cpu, bandwidth, meter, closers)


def _cpu_actuator(inventory: LabInventory, slice_name: str, bounds: Interval, runner_for: RunnerFactory) -> CpuActuator:
    settings = inventory.settings
    if settings.cpu == "pod_resize":
        kubernetes = settings.kubernetes
        return PodResizeCpuActuator(open_api(kubernetes.kubeconfig.expanduser(), kubernetes.context),
                                    kubernetes.namespace, kubernetes.selector.replace("{slice}", slice_name),
                                    kubernetes.container, bounds)
    cgroup = settings.cgroup.replace("{slice}", slice_name)
    actuator = CgroupCpuActuator(runner_for(inventory.first_host("edge")), cgroup, bounds)
    if not actuator.exists():
        raise ActuatorError(f"{actuator.runner.node}: the gNB cgroup {actuator.path} does not exist; is the "
                            f"slice's gNB running (or all.vars.{SECTION}.cgroup wrong)?")
    return actuator


def _bandwidth_actuator(inventory: LabInventory, slice_name: str, bounds: Interval, runner_for: RunnerFactory,
                        onos: OnosClient | None) -> BandwidthActuator:
    ovs = inventory.settings.ovs
    queue = OvsQueueActuator(runner_for(inventory.first_host(ovs.tier)), ovs.vsctl, ovs.port, slice_name, bounds)
    if onos is None:
        return queue
    gnb_n3_ip = inventory.gnb_n3_ips.get(slice_name)
    if not gnb_n3_ip:
        raise InputError(f"{inventory.path}: slice {slice_name} has no gnb_n3_ip (ONOS steers its GTP-U by it)")
    steering = OnosQueueSteeringActuator(onos, Steering(f"{gnb_n3_ip}/32", ovs.port, queue.queue_id), queue)
    steering.install()
    return steering
