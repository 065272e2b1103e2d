"""The ``lab`` testbed: real nodes from a lab inventory (the format of ``inventory/lab.example.yml``).

The inventory's ``lab_backend`` section chooses each slice's actuators (:mod:`.lab_actuators`); the
nodes are reached over SSH (:mod:`.ssh_pool`). Traffic goes through the slicebed app servers' control
endpoints and QoS comes from Prometheus (the metric names of docs/design/local-testbed.md), exactly as on
the local testbed (:mod:`.actuated`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from collectors.prometheus import PrometheusReader
from controller.actuators.base import ActuatorError, BandwidthActuator, CpuActuator, Interval
from controller.deploy.inventory.lab import LabInventory, open_lab_inventory
from controller.testbeds.actuated import ActuatedTestbed
from controller.testbeds.lab_actuators import RunnerFactory, bandwidth_actuator, cpu_actuator, onos_client
from controller.testbeds.qos_meter import PrometheusQosMeter, QosMeter
from controller.testbeds.ssh_pool import SshRunners
from core.errors import InputError


class LabTestbed(ActuatedTestbed):
    """Drives a deployed lab: the actuators the inventory chooses, users through the app servers' control
    endpoints, per-second QoS from Prometheus. ``closers`` release the SSH, ONOS and Prometheus sessions."""

    name = "lab"

    def __init__(self, inventory: LabInventory, cpu: dict[str, CpuActuator], bandwidth: dict[str, BandwidthActuator],
                 meter: QosMeter, closers: list[Callable[[], None]] | None = None, timeout_s: float = 5.0) -> None:
        super().__init__(inventory.path, cpu, bandwidth, meter, timeout_s)
        self.inventory = inventory
        self.closers = closers or []

    def app_server_url(self, slice_name: str) -> str:
        return self.inventory.app_server_url(slice_name)

    def close(self) -> None:
        try:
            super().close()
        finally:
            for closer in self.closers:
                closer()


def open_lab_testbed(inventory_path: Path | None, bounds: dict[str, tuple[Interval, Interval]],
                     runner_for: RunnerFactory | None = None, meter: QosMeter | None = None) -> LabTestbed:
    """The lab backend for the slices in ``bounds`` (each: CPU and bandwidth bounds) on a deployed lab.

    ``runner_for`` maps a node address to its command runner (default: SSH as configured); ``meter``
    reads QoS (default: Prometheus on the monitoring server).
    """
    if inventory_path is None:
        raise InputError("the lab testbed needs 'testbed.inventory: FILE' (a lab inventory) in the spec")
    inventory = open_lab_inventory(inventory_path)
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
        cpu = {name: cpu_actuator(inventory, name, limits[0], runner_for) for name, limits in bounds.items()}
        onos = onos_client(inventory) if settings.bandwidth == "onos_meter" else None
        if onos is not None:
            closers.append(onos.close)
        bandwidth = {name: bandwidth_actuator(inventory, name, limits[1], runner_for, onos)
                     for name, limits in bounds.items()}
    except (InputError, ActuatorError):
        for closer in closers:
            closer()
        raise
    if meter is None:
        reader = PrometheusReader(inventory.prometheus_url)
        closers.append(reader.close)
        meter = PrometheusQosMeter(reader)
    return LabTestbed(inventory, cpu, bandwidth, meter, closers)
