"""The ``local`` testbed: the slices' data planes in network namespaces on this host (docs/local-data-plane.md).

``slicebed testbed up`` builds it; this backend only drives it: each slice's RAN emulator CPU through its
cgroup, its transport bandwidth through its OpenFlow 1.3 meter (both read back), the active users through the
app server's control endpoint, and per-second QoS samples (by slice type) read from Prometheus, which scrapes
the UE sinks and the app servers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collectors.prometheus import PrometheusReader
from controller.actuators.base import BandwidthActuator, CpuActuator, Interval
from controller.actuators.cgroup import CgroupCpuActuator
from controller.actuators.ovs import OvsMeterActuator
from controller.deploy.inventory import DEFAULT_INVENTORY, LocalInventory, load_inventory
from controller.deploy.inventory.local import RAN_HOST
from controller.deploy.inventory.programs import program_url
from controller.deploy.state import current_placement
from controller.testbeds.actuated import ActuatedTestbed
from controller.testbeds.base import Allocation, TestbedUnavailable
from controller.testbeds.qos_meter import PrometheusQosMeter, QosMeter
from core.commands import LocalRunner
from core.errors import InputError
from core.slice_types import QosKind


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

    def settings(self) -> dict[str, Any]:
        """The inventory and the scales from nominal units to this host, each slice's type and UPF tier, and the
        slices whose bandwidth allocation limits nothing (their UPF is on edge: no transport, no meter on the path)."""
        settings = self.inventory.settings
        placement = current_placement(self.inventory)
        return {"inventory": str(self.inventory.path), "cpu_scale": settings.cpu_scale,
                "rate_scale": settings.rate_scale, "slice_types": {s.name: s.type for s in settings.slices},
                "upf_tiers": placement,
                "unmetered_slices": sorted(name for name, where in placement.items() if where == RAN_HOST)}

    def app_server_url(self, slice_name: str) -> str:
        return program_url(self.inventory, "app_server", slice_name)  # where the slice's placement runs it now


def open_local_testbed(inventory_path: Path | None, bounds: dict[str, tuple[Interval, Interval]],
                       qos: dict[str, QosKind] | None = None) -> LocalTestbed:
    """The local backend for the slices in ``bounds`` (each: CPU and bandwidth bounds) on a deployed testbed.

    Each slice's CPU is its RAN emulator's cgroup (below the edge node's, whose quota is the shared capacity), its
    bandwidth its OpenFlow meter; nominal units map to the host by the inventory's ``cpu_scale`` and ``rate_scale``.
    ``qos`` (optional) is what the experiment judges each slice by; it must be the QoS of the slice's type.
    """
    inventory = load_inventory(inventory_path or DEFAULT_INVENTORY)
    slices = {s.name: s for s in inventory.settings.slices}
    missing = [name for name in bounds if name not in slices]
    if missing:
        raise InputError(f"{inventory.path}: slice(s) {', '.join(missing)} are not deployed on the local testbed "
                         f"(it has {', '.join(slices)}); add them to the inventory's slices")
    for name, wanted in (qos or {}).items():
        if name in slices and slices[name].qos != wanted:
            raise InputError(f"slice {name} is a {slices[name].type} slice on {inventory.path}, judged by "
                             f"{slices[name].qos}; the experiment says qos: {wanted}; make them agree")
    if not inventory.switch_socket.exists():
        raise TestbedUnavailable(f"the local testbed is not up ({inventory.switch_socket} is missing); "
                                 f"run `slicebed testbed up --inventory {inventory.path}` first")
    runner, settings = LocalRunner(), inventory.settings
    names = list(slices)
    cpu: dict[str, CpuActuator] = {
        name: CgroupCpuActuator(runner, inventory.slice_cgroup_name(name), limits[0], settings.cpu_scale)
        for name, limits in bounds.items()}
    bandwidth: dict[str, BandwidthActuator] = {
        name: OvsMeterActuator(runner, inventory.switch_target, names.index(name) + 1, limits[1], settings.rate_scale)
        for name, limits in bounds.items()}
    reader = PrometheusReader(f"http://127.0.0.1:{settings.prometheus_port}")
    meter = PrometheusQosMeter(reader, {name: slices[name].qos for name in bounds})
    return LocalTestbed(inventory, cpu, bandwidth, meter)
