"""The ``local`` testbed: the eMBB data plane in network namespaces on this host (docs/local-data-plane.md).

``slicebed testbed up`` builds it; this backend only drives it: the RAN emulator's CPU through its
cgroup, the slice's transport bandwidth through its OpenFlow 1.3 meter (both read back), the active
users through the app server's control endpoint, and per-second QoS samples read from Prometheus,
which scrapes the UE sinks and the app server.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import requests

from collectors.prometheus import PrometheusReader
from controller.actuators.base import BandwidthActuator, CpuActuator, Interval
from controller.actuators.cgroup import CgroupCpuActuator
from controller.actuators.ovs import OvsMeterActuator
from controller.deploy.inventory import DEFAULT_INVENTORY, LocalInventory, load_inventory
from controller.testbeds.base import SAMPLE_COLUMNS, Allocation, Testbed
from core.commands import LocalRunner
from core.errors import InputError, SlicebedError

DEFAULT_CPU_SCALE = 0.125
"""Host cores per nominal core: the paper's 500-4000 millicores become 1/16 to 1/2 core of this 2-core host."""
RAN_HOST = "edge"
MEASURED_COLUMNS = ("time", "slice", "total_bandwidth_usage", "n_users")


class LocalTestbedUnavailable(SlicebedError):
    """The local testbed is not up, or one of its programs does not answer."""


def program_url(inventory: LocalInventory, host: str, slice_name: str) -> str:
    """Base URL of a slice's data-plane program on ``host`` (management address, port = base + slice index)."""
    index = [s.name for s in inventory.settings.slices].index(slice_name)
    return f"http://{inventory.hosts[host].mgmt_address}:{inventory.settings.exporter_port + index}"


def exporter_url(inventory: LocalInventory) -> str:
    """Base URL of the allocation exporter in the root namespace."""
    return f"http://{inventory.settings.mgmt_gateway}:{inventory.settings.exporter_port}"


def switch_target(inventory: LocalInventory) -> str:
    """What ovs-ofctl connects to: the transport bridge's management socket in the state directory."""
    return f"unix:{inventory.state_dir}/ovs/{inventory.bridge}.mgmt"


class QosMeter(Protocol):
    def measure(self, seconds: int) -> pd.DataFrame:
        """Wait ``seconds`` s; one row per slice per second: ``MEASURED_COLUMNS`` (throughput in Mbps)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class PrometheusQosMeter:
    """Per-second slice throughput and active users, read back from Prometheus after the interval."""

    THROUGHPUT = "sum by (slice) (slicebed_user_throughput_bps) / 1e6"
    USERS = "max by (slice) (slicebed_active_users)"

    def __init__(self, reader: PrometheusReader, settle_s: float = 0.3) -> None:
        self.reader = reader
        self.settle_s = settle_s

    def measure(self, seconds: int) -> pd.DataFrame:
        start = datetime.now(UTC)  # the sample at t covers the second before t
        first, last = start + timedelta(seconds=1), start + timedelta(seconds=seconds)
        time.sleep(max(0.0, (last - datetime.now(UTC)).total_seconds() + self.settle_s))
        throughput = self.reader.range(self.THROUGHPUT, first, last, 1.0)
        users = self.reader.range(self.USERS, first, last, 1.0)
        if users.empty:
            raise LocalTestbedUnavailable(f"Prometheus at {self.reader.url} has no slicebed_active_users samples; "
                                          "check its scrape targets (`slicebed testbed status`)")
        if throughput.empty:  # no user received anything (none active, or all starved): zero, not missing
            throughput = users.assign(value=0.0)
        merged = users.rename(columns={"value": "n_users"})[["time", "slice", "n_users"]].merge(
            throughput.rename(columns={"value": "total_bandwidth_usage"})[["time", "slice", "total_bandwidth_usage"]],
            on=["time", "slice"], how="left").fillna({"total_bandwidth_usage": 0.0})
        return merged[list(MEASURED_COLUMNS)]

    def close(self) -> None:
        self.reader.close()


class LocalTestbed(Testbed):
    """Drives a deployed local testbed: actuators, the app server's users, QoS from a :class:`QosMeter`."""

    name = "local"

    def __init__(self, inventory: LocalInventory, cpu: dict[str, CpuActuator], bandwidth: dict[str, BandwidthActuator],
                 meter: QosMeter, timeout_s: float = 5.0) -> None:
        self.inventory = inventory
        self.cpu = cpu
        self.bandwidth = bandwidth
        self.meter = meter
        self.timeout_s = timeout_s
        self.allocations: dict[str, Allocation] = {}
        self.users: dict[str, int] = {}
        self.session = requests.Session()

    def _known(self, slice_name: str) -> None:
        if slice_name not in self.cpu:
            raise InputError(f"{self.name} testbed: unknown slice {slice_name!r}; deployed: {', '.join(self.cpu)}")

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.session.post(url, json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise LocalTestbedUnavailable(f"{url} does not answer ({type(exc).__name__}); is the {self.name} testbed "
                                          f"up? (`slicebed testbed up --inventory {self.inventory.path}`)") from None
        if response.status_code != 200:
            raise LocalTestbedUnavailable(f"{url} refused {body}: HTTP {response.status_code} {response.text.strip()}")
        return response.json()

    def apply(self, slice_name: str, allocation: Allocation) -> Allocation:
        self._known(slice_name)
        applied = Allocation(self.cpu[slice_name].set_cpu(allocation.cpu_millicores),
                             self.bandwidth[slice_name].set_bandwidth(allocation.bandwidth_mbps))
        self.publish_allocation(slice_name, applied)
        self.allocations[slice_name] = applied
        return applied

    def publish_allocation(self, slice_name: str, applied: Allocation) -> None:
        """Tell the slicebed exporter the allocation in effect (it publishes it to Prometheus)."""
        self._post(f"{exporter_url(self.inventory)}/allocation", {"slice": slice_name,
                                                                  "cpu_millicores": applied.cpu_millicores,
                                                                  "bandwidth_mbps": applied.bandwidth_mbps})

    def app_server_url(self, slice_name: str) -> str:
        """Base URL of the slice's app server (its control endpoint drives the users)."""
        return program_url(self.inventory, "app", slice_name)

    def set_traffic(self, slice_name: str, users: int) -> None:
        self._known(slice_name)
        if users < 0:
            raise InputError(f"slice {slice_name}: users must be >= 0, got {users}")
        if self.users.get(slice_name) != users:
            self._post(f"{self.app_server_url(slice_name)}/control", {"users": users})
            self.users[slice_name] = users

    def collect(self, seconds: int) -> pd.DataFrame:
        for slice_name, users in self.users.items():
            if users and slice_name not in self.allocations:
                raise InputError(f"slice {slice_name}: traffic is running but no allocation was applied")
        measured = self.meter.measure(seconds)
        measured = measured[measured["slice"].isin(list(self.allocations)) & (measured["n_users"] > 0)].copy()
        measured["time"] = measured["time"].dt.tz_localize(None)
        measured["cpu"] = measured["slice"].map(lambda name: self.allocations[name].cpu_millicores)
        measured["bw"] = measured["slice"].map(lambda name: self.allocations[name].bandwidth_mbps)
        measured["qos"] = measured["total_bandwidth_usage"] / measured["n_users"]
        return measured[list(SAMPLE_COLUMNS)].reset_index(drop=True)

    def close(self) -> None:
        """Stop the traffic this backend started (the testbed itself stays up until `slicebed testbed down`)."""
        for slice_name, users in list(self.users.items()):
            if users:
                with contextlib.suppress(LocalTestbedUnavailable):  # a testbed already down has no traffic left
                    self.set_traffic(slice_name, 0)
        self.session.close()
        self.meter.close()


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
    switch = switch_target(inventory)
    if not Path(switch.removeprefix("unix:")).exists():
        raise LocalTestbedUnavailable(f"the local testbed is not up ({switch.removeprefix('unix:')} is missing); "
                                 f"run `slicebed testbed up --inventory {inventory.path}` first")
    runner = LocalRunner()
    cpu: dict[str, CpuActuator] = {
        name: CgroupCpuActuator(runner, inventory.cgroup_name(RAN_HOST), limits[0], cpu_scale)
        for name, limits in bounds.items()}
    bandwidth: dict[str, BandwidthActuator] = {
        name: OvsMeterActuator(runner, switch, deployed.index(name) + 1, limits[1]) for name, limits in bounds.items()}
    reader = PrometheusReader(f"http://127.0.0.1:{inventory.settings.prometheus_port}")
    return LocalTestbed(inventory, cpu, bandwidth, PrometheusQosMeter(reader))
