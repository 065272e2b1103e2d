"""What the local and lab testbeds share: real actuators, users driven through the slicebed app servers'
control endpoints, and QoS read back from a :class:`~controller.testbeds.qos_meter.QosMeter`.

A backend only says where its app servers listen and whether it publishes the allocation anywhere.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from controller.actuators.base import BandwidthActuator, CpuActuator
from controller.control_endpoint import EndpointError, call_endpoint
from controller.testbeds.base import SAMPLE_COLUMNS, Allocation, Testbed, TestbedUnavailable
from controller.testbeds.qos_meter import QosMeter
from core.errors import InputError


class ActuatedTestbed(Testbed):
    """Drives a deployed testbed: ``cpu`` and ``bandwidth`` actuators per slice, the users of each slice's app
    server, per-second QoS from ``meter``. ``inventory_path`` names the testbed in hints."""

    def __init__(self, inventory_path: Path, cpu: dict[str, CpuActuator], bandwidth: dict[str, BandwidthActuator],
                 meter: QosMeter, timeout_s: float = 5.0) -> None:
        self.inventory_path = inventory_path
        self.cpu = cpu
        self.bandwidth = bandwidth
        self.meter = meter
        self.timeout_s = timeout_s
        self.allocations: dict[str, Allocation] = {}
        self.users: dict[str, int] = {}
        self.session = requests.Session()

    @abstractmethod
    def app_server_url(self, slice_name: str) -> str:
        """Base URL of the slice's app server (its control endpoint drives the users)."""

    def publish_allocation(self, slice_name: str, applied: Allocation) -> None:
        """Make the allocation in effect visible to the monitoring; by default the run's records are enough."""

    def _known(self, slice_name: str) -> None:
        if slice_name not in self.cpu:
            raise InputError(f"{self.name} testbed: unknown slice {slice_name!r}; deployed: {', '.join(self.cpu)}")

    def post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON to one of the testbed's programs; its JSON answer."""
        try:
            return call_endpoint(url, body, timeout_s=self.timeout_s, session=self.session)
        except EndpointError as exc:
            raise TestbedUnavailable(f"{exc}; is the {self.name} testbed up? (`slicebed testbed up --inventory "
                                     f"{self.inventory_path}`)") from None

    def apply(self, slice_name: str, allocation: Allocation) -> Allocation:
        self._known(slice_name)
        applied = Allocation(self.cpu[slice_name].set_cpu(allocation.cpu_millicores),
                             self.bandwidth[slice_name].set_bandwidth(allocation.bandwidth_mbps))
        self.publish_allocation(slice_name, applied)
        self.allocations[slice_name] = applied
        return applied

    def set_traffic(self, slice_name: str, users: int) -> None:
        self._known(slice_name)
        if users < 0:
            raise InputError(f"slice {slice_name}: users must be >= 0, got {users}")
        if self.users.get(slice_name) != users:
            self.post(f"{self.app_server_url(slice_name)}/control", {"users": users})
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
        return measured[list(SAMPLE_COLUMNS)].reset_index(drop=True)

    def close(self) -> None:
        """Stop the traffic this backend started (the testbed itself stays up until `slicebed testbed down`)."""
        for slice_name, users in list(self.users.items()):
            if users:
                with contextlib.suppress(TestbedUnavailable):  # a testbed already down has no traffic left
                    self.set_traffic(slice_name, 0)
        self.session.close()
        self.meter.close()
