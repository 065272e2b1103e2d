"""Steer a slice's transport traffic into its OvS queue with ONOS flow rules (REST ``/onos/v1/flows``).

The queue's rate is set on the switch (an OvS queue actuator over SSH); ONOS installs, per slice, a flow
with an IPv4 selector (the slice's UE subnet) and a QUEUE + OUTPUT treatment. The switch and output port
are discovered from ONOS by the port's name (``/onos/v1/devices``, ``.../ports``), the queue id from OVSDB:
nothing is pasted. Credentials come from environment variables and never appear in messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import requests

from controller.actuators.base import ActuatorError, BandwidthActuator
from core.errors import InputError

APP_ID = "org.slicebed.steering"
INSTALLED_STATES = frozenset({"ADDED", "PENDING_ADD"})


class OnosClient:
    """The ONOS REST calls slicebed needs, with basic authentication and one-line errors."""

    def __init__(self, url: str, user: str, password: str, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")) or "@" in url.split("//", 1)[1].split("/", 1)[0]:
            raise InputError(f"ONOS URL {url!r} must be http(s)://HOST:PORT without credentials in it "
                             "(they come from the environment)")
        self.url = url.rstrip("/").removesuffix("/onos/v1") + "/onos/v1"
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.auth = (user, password)
        self._session.headers["Accept"] = "application/json"

    @classmethod
    def from_env(cls, url: str, user_env: str = "SLICEBED_ONOS_USER",
                 password_env: str = "SLICEBED_ONOS_PASSWORD", timeout_s: float = 10.0) -> OnosClient:
        """A client whose credentials are read from the environment variables ``user_env`` and ``password_env``."""
        values = {name: os.environ.get(name) for name in (user_env, password_env)}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise InputError(f"ONOS credentials: set the environment variable(s) {', '.join(missing)}")
        return cls(url, str(values[user_env]), str(values[password_env]), timeout_s)

    def close(self) -> None:
        self._session.close()

    def devices(self) -> list[dict[str, Any]]:
        return self._call("GET", "/devices").json()["devices"]

    def ports(self, device_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/devices/{device_id}/ports").json()["ports"]

    def find_port(self, port_name: str) -> tuple[str, str]:
        """The (device id, port number) of the one available port named ``port_name`` (its ``portName``)."""
        found = [(device["id"], str(port["port"])) for device in self.devices() if device.get("available")
                 for port in self.ports(device["id"]) if port.get("annotations", {}).get("portName") == port_name]
        if len(found) != 1:
            where = "no available device has" if not found else f"{len(found)} devices have"
            raise ActuatorError(f"ONOS at {self.url}: {where} a port named {port_name!r}")
        return found[0]

    def flows(self, device_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/flows/{device_id}").json()["flows"]

    def flow(self, device_id: str, flow_id: str) -> dict[str, Any] | None:
        """The flow entry, or None once it is gone."""
        flows = self._call("GET", f"/flows/{device_id}/{flow_id}", missing_ok=True)
        entries = flows.json().get("flows", []) if flows.status_code == 200 else []
        return entries[0] if entries else None

    def add_flow(self, device_id: str, flow: dict[str, Any], app_id: str = APP_ID) -> str:
        """Install ``flow`` on ``device_id``; returns the new flow id (from the Location header)."""
        answer = self._call("POST", f"/flows/{device_id}", json={**flow, "deviceId": device_id},
                            params={"appId": app_id})
        location = answer.headers.get("Location", "").rstrip("/")
        flow_id = location.rsplit("/", 1)[-1]
        if not flow_id.isdigit():
            raise ActuatorError(f"ONOS at {self.url}: flow accepted but no flow id in Location {location!r}")
        return flow_id

    def delete_flow(self, device_id: str, flow_id: str) -> None:
        self._call("DELETE", f"/flows/{device_id}/{flow_id}", missing_ok=True)

    def _call(self, method: str, path: str, missing_ok: bool = False, **kwargs: Any) -> requests.Response:
        try:
            answer = self._session.request(method, self.url + path, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise ActuatorError(f"ONOS at {self.url} did not answer {method} {path}: {type(exc).__name__}") from None
        if answer.status_code == 401:
            raise ActuatorError(f"ONOS at {self.url} refused the credentials (HTTP 401); check the user and "
                                "password environment variables")
        if answer.status_code >= 400 and not (missing_ok and answer.status_code == 404):
            raise ActuatorError(f"ONOS at {self.url}: {method} {path} failed with HTTP {answer.status_code}: "
                                f"{_message(answer)}")
        return answer


def _message(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("message", answer.text[:200]))
    except ValueError:
        return answer.text[:200].strip() or "no message"


@dataclass(frozen=True)
class Steering:
    """Which traffic goes into which queue, leaving by which switch port."""

    destination: str
    """IPv4 prefix of the slice's downlink on the transport: its gNB's N3 address (GTP-U outer header), /32."""
    port_name: str
    queue_id: int
    priority: int = 40000


def steering_flow(steering: Steering, output_port: str) -> dict[str, Any]:
    """The ONOS flow rule (FlowRule JSON) that puts traffic to ``steering.destination`` into its queue."""
    return {
        "priority": steering.priority, "isPermanent": True, "timeout": 0,
        "selector": {"criteria": [{"type": "ETH_TYPE", "ethType": "0x0800"},
                                  {"type": "IPV4_DST", "ip": steering.destination}]},
        "treatment": {"instructions": [{"type": "QUEUE", "queueId": steering.queue_id},
                                       {"type": "OUTPUT", "port": output_port}]},
    }


class OnosQueueSteeringActuator(BandwidthActuator):
    """A slice's bandwidth: the rate of its queue (``rate``), with ONOS steering its traffic into that queue."""

    def __init__(self, client: OnosClient, steering: Steering, rate: BandwidthActuator) -> None:
        self.client = client
        self.steering = steering
        self.rate = rate
        self.bounds = rate.bounds
        self.device_id, self.output_port = client.find_port(steering.port_name)
        self.flow_id: str | None = None

    def install(self) -> str:
        """Make sure the steering flow is installed (reusing an identical one); returns its flow id."""
        wanted = steering_flow(self.steering, self.output_port)
        if self.flow_id is None or self.client.flow(self.device_id, self.flow_id) is None:
            self.flow_id = next((flow["id"] for flow in self.client.flows(self.device_id)
                                 if flow.get("appId") == APP_ID and _same_rule(flow, wanted)), None)
        if self.flow_id is None:
            self.flow_id = self.client.add_flow(self.device_id, wanted)
        self._verify()
        return self.flow_id

    def remove(self) -> None:
        """Delete the steering flow (nothing happens if it is not installed)."""
        if self.flow_id is not None:
            self.client.delete_flow(self.device_id, self.flow_id)
            self.flow_id = None

    def set_bandwidth(self, mbps: float) -> float:
        self.bounds.check(f"slice subnet {self.steering.destination}: bandwidth_mbps", mbps)
        self.install()
        return self.rate.set_bandwidth(mbps)

    def read_bandwidth(self) -> float:
        self._verify()
        return self.rate.read_bandwidth()

    def _verify(self) -> None:
        """Read the flow back from ONOS: present, installed, and with the treatment slicebed asked for."""
        flow = self.client.flow(self.device_id, self.flow_id) if self.flow_id is not None else None
        if flow is None:
            raise ActuatorError(f"ONOS: no steering flow for {self.steering.destination} on {self.device_id}; "
                                "install() it first")
        if flow.get("state") not in INSTALLED_STATES:
            raise ActuatorError(f"ONOS: steering flow {self.flow_id} on {self.device_id} is {flow.get('state')}")
        if not _same_rule(flow, steering_flow(self.steering, self.output_port)):
            raise ActuatorError(f"ONOS: steering flow {self.flow_id} on {self.device_id} does not match the "
                                f"queue {self.steering.queue_id} / port {self.output_port} slicebed installed")


def _same_rule(flow: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether an ONOS flow entry has the selector, treatment and priority of ``wanted`` (as ONOS encodes them)."""
    return (flow.get("priority") == wanted["priority"]
            and _canonical(flow.get("selector", {}).get("criteria", []))
            == _canonical(wanted["selector"]["criteria"])
            and _canonical(flow.get("treatment", {}).get("instructions", []))
            == _canonical(wanted["treatment"]["instructions"]))


KEY_FIELDS = {"ETH_TYPE": "ethType", "IPV4_DST": "ip", "OUTPUT": "port", "QUEUE": "queueId"}


def _canonical(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Criteria or instructions as sorted (type, value) pairs: ONOS writes ethType 0x800 and ports as numbers."""
    pairs = []
    for item in items:
        kind = str(item.get("type"))
        value = item.get(KEY_FIELDS.get(kind, ""), item)
        if kind == "ETH_TYPE":
            value = int(value, 16) if isinstance(value, str) else int(value)
        pairs.append((kind, str(value).lower()))
    return sorted(pairs)
