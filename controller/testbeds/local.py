"""The ``local`` testbed: the eMBB data plane in network namespaces on this host (docs/local-data-plane.md).

``slicebed testbed up`` builds it; this backend only drives it: the RAN emulator's CPU through its
cgroup, the slice's transport bandwidth through its OpenFlow 1.3 meter (both read back), the active
users through the app server's control endpoint, and per-second QoS samples read from Prometheus,
which scrapes the UE sinks and the app server.
"""

from __future__ import annotations

from pathlib import Path

from collectors.prometheus import PrometheusReader
from controller.actuators.base import BandwidthActuator, CpuActuator, Interval
from controller.actuators.cgroup import CgroupCpuActuator
from controller.actuators.ovs import OvsMeterActuator
from controller.deploy.inventory import DEFAULT_INVENTORY, LocalInventory, load_inventory
from controller.testbeds.actuated import ActuatedTestbed
from controller.testbeds.base import Allocation, TestbedUnavailable
from controller.testbeds.qos_meter import PrometheusQosMeter, QosMeter
from core.commands import LocalRunner
from core.errors import InputError

DEFAULT_CPU_SCALE = 0.125
"""Host cores per nominal core: the paper's 500-4000 millicores become 1/16 to 1/2 core of this 2-core host."""
RAN_HOST = "edge"


def program_url(inventory: LocalInventory, host: str, slice_name: str) -> str:
    """Base URL of a slice's data-plane program on ``host`` (management address, port = base + slice index)."""
    index = [s.name for s in inventory.settings.slices].index(slice_name)
    return f"http://{inventory.hosts[host].mgmt_address}:{inventory.settings.exporter_port + index}"


def exporter_url(inventory: LocalInventory) -> str:
    """Base URL of the allocation exporter in the root namespace."""
    return f"http://{inventory.settings.mgmt_gateway}:{inventory.settings.exporter_port}"


class LocalTestbed(ActuatedTestbed):
    """Drives a deployed local testbed; it also tells the slicebed exporter each allocation (for Prometheus)."""

    name = "local"

    def __init__(self, inventory: LocalInventory, cpu: dict[str, CpuActuator], bandwidth: dict[str, BandwidthActuator],
                 meter: QosMeter, timeout_s: float = 5.0) -> None:
        super().__init__(inventory.path, cpu, bandwidth, meter, timeout_s)
        self.inventory = inventory

    def publish_allocation(self, slice_name: str, applied: Allocation) -> None:
        """Tell the slicebed exporter the allocation in effect (it publishes it to Prometheus)."""
        self.post(f"{exporter_url(self.inventory)}/allocation", {"slice": slice_name,
                                                                 "cpu_millicores": applied.cpu_millicores,
                                                                 "bandwidth_mbps": applied.bandwidth_mbps})

    def app_server_url(self, slice_name: str) -> str:
        return program_url(self.inventory, "app", slice_name)


def open_local_testbed(inventory_path: Path | None, bounds: dict[str, tuple[Interval, Interval]],
                       cpu_scale: float = DEFAULT_CPU_SCALE) -> LocalTestbed:
    """The local backend for the slices in ``bounds`` (each: CPU and bandwidth bounds) on a deployed testbed."""
    inventory = load_inventory(inventory_path or DEFAULT_INVENTORY)
    deployed = [s.name for s in inventory.settings.slices]
    missing = [name for name in bounds if name not in deployed]
    if missing:
        raise InputError(f"{inventory.path}: slice(s) {', '.join(missing)} are not deployed on the local testbed "
                         f"(it has {', '.join(deployed)}); add them to the inventory's slices")
    if len(bounds) > 1:
        raise InputError(f"the local testbed has one RAN cgroup, so it runs one slice at a time; "
                         f"got {', '.join(bounds)}")
    if not inventory.switch_socket.exists():
        raise TestbedUnavailable(f"the local testbed is not up ({inventory.switch_socket} is missing); "
                                 f"run `slicebed testbed up --inventory {inventory.path}` first")
    runner = LocalRunner()
    cpu: dict[str, CpuActuator] = {
        name: CgroupCpuActuator(runner, inventory.cgroup_name(RAN_HOST), limits[0], cpu_scale)
        for name, limits in bounds.items()}
    bandwidth: dict[str, BandwidthActuator] = {
        name: OvsMeterActuator(runner, inventory.switch_target, deployed.index(name) + 1, limits[1])
        for name, limits in bounds.items()}
    reader = PrometheusReader(f"http://127.0.0.1:{inventory.settings.prometheus_port}")
    return LocalTestbed(inventory, cpu, bandwidth, PrometheusQosMeter(reader))
