"""A slice's transport bandwidth as an OpenFlow meter installed through ONOS (REST ``/onos/v1/meters``, ``/flows``).

Per slice, ONOS holds a meter (one DROP band, KB_PER_SEC) and a flow with an IPv4 selector (the slice's gNB N3
address, the GTP-U downlink's outer destination) and a METER + OUTPUT treatment. The switch and output port are
discovered from ONOS by the port's name (``/onos/v1/devices``, ``.../ports``): nothing is pasted. Field names follow
ONOS 2.7.0's REST models and codecs (``tests/onos_api.json`` holds the models' members with their source).
Credentials come from environment variables and never appear in messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import requests

from controller.actuators.base import ActuatorError, BandwidthActuator, Interval
from controller.actuators.ovs import METER_BURST_FRACTION
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

    def meter(self, device_id: str, meter: int) -> dict[str, Any] | None:
        """Meter ``meter`` of the device (``GET /meters/{deviceId}/{meterId}``, decimal id), or None once it is gone."""
        answer = self._call("GET", f"/meters/{device_id}/{meter}", missing_ok=True)
        entries = answer.json().get("meters", []) if answer.status_code == 200 else []
        return entries[0] if entries else None

    def add_meter(self, device_id: str, request: dict[str, Any]) -> int:
        """Submit a meter request (``POST /meters/{deviceId}``); returns the new meter's id (from the Location header,
        ``.../meters/{deviceId}/{decimal id}``, MetersWebResource.createMeter in ONOS 2.7.0)."""
        answer = self._call("POST", f"/meters/{device_id}", json={**request, "deviceId": device_id})
        location = answer.headers.get("Location", "").rstrip("/")
        created = location.rsplit("/", 1)[-1]
        if not created.isdigit():
            raise ActuatorError(f"ONOS at {self.url}: meter accepted but no meter id in Location {location!r}")
        return int(created)

    def delete_meter(self, device_id: str, meter: int) -> None:
        self._call("DELETE", f"/meters/{device_id}/{meter}", missing_ok=True)

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
class SliceFlow:
    """Which traffic a slice's meter polices, and the switch port it leaves by."""

    destination: str
    """IPv4 prefix of the slice's downlink on the transport: its gNB's N3 address (GTP-U outer header), /32."""
    port_name: str
    priority: int = 40000


def meter_request(device_id: str, kbps: int) -> dict[str, Any]:
    """The ONOS meter request (``MeterPost``): one DROP band at ``kbps`` with a burst of ``METER_BURST_FRACTION``
    of a second (as the local testbed's meters). ``prec`` only matters to REMARK bands; the model requires it."""
    return {"deviceId": device_id, "unit": "KB_PER_SEC", "burst": True,
            "bands": [{"type": "DROP", "rate": kbps, "burstSize": max(1, round(kbps * METER_BURST_FRACTION)),
                       "prec": 0}]}


def metered_flow(flow: SliceFlow, meter_id: int, output_port: str) -> dict[str, Any]:
    """The ONOS flow rule (``FlowsPost``) that sends traffic to ``flow.destination`` through meter ``meter_id``.

    ONOS derives a flow's id from its application, device, selector, priority and table, not its treatment
    (``DefaultFlowRule.computeFlowId``, ONOS 2.7.0): posting this again with another meter changes the same flow.
    """
    return {
        "priority": flow.priority, "isPermanent": True, "timeout": 0,
        "selector": {"criteria": [{"type": "ETH_TYPE", "ethType": "0x0800"},
                                  {"type": "IPV4_DST", "ip": flow.destination}]},
        "treatment": {"instructions": [{"type": "METER", "meterId": meter_id},
                                       {"type": "OUTPUT", "port": output_port}]},
    }


class OnosMeterActuator(BandwidthActuator):
    """A slice's transport bandwidth: an OpenFlow 1.3 meter installed through ONOS, with a flow that sends the slice's
    downlink through it out of its port (OvS tunnel ports have no QoS of their own; meters work on any port).

    ONOS 2.7 cannot change a meter's bands (no ``PUT /meters``): a new rate is a new meter, the flow moved onto it,
    then the old meter withdrawn. The rate is read back from ONOS's meter.
    """

    def __init__(self, client: OnosClient, flow: SliceFlow, bounds: Interval) -> None:
        self.client = client
        self.flow = flow
        self.bounds = bounds
        self.device_id, self.output_port = client.find_port(flow.port_name)

    def installed(self) -> tuple[dict[str, Any] | None, int | None]:
        """slicebed's flow for this slice on the switch (or None) and the id of the meter it sends traffic to."""
        selector = _canonical(metered_flow(self.flow, 0, self.output_port)["selector"]["criteria"])
        flow = next((entry for entry in self.client.flows(self.device_id) if entry.get("appId") == APP_ID
                     and entry.get("priority") == self.flow.priority
                     and _canonical(entry.get("selector", {}).get("criteria", [])) == selector), None)
        meters = [item for item in (flow or {}).get("treatment", {}).get("instructions", [])
                  if item.get("type") == "METER"]
        return flow, (meter_id(meters[0]["meterId"]) if meters else None)

    def set_bandwidth(self, mbps: float) -> float:
        self.bounds.check(f"slice {self.flow.destination} meter: bandwidth_mbps", mbps)
        kbps = round(mbps * 1000)
        _flow, old_meter = self.installed()
        new_meter = self.client.add_meter(self.device_id, meter_request(self.device_id, kbps))
        self.client.add_flow(self.device_id, metered_flow(self.flow, new_meter, self.output_port))
        if old_meter is not None and old_meter != new_meter:
            self.client.delete_meter(self.device_id, old_meter)
        effective = self.read_bandwidth()
        if round(effective * 1000) != kbps:
            raise ActuatorError(f"ONOS: meter {new_meter} on {self.device_id} has {effective * 1000:g} kbps, "
                                f"slicebed asked for {kbps}")
        return effective

    def read_bandwidth(self) -> float:
        """The drop band's rate of the meter the slice's flow sends its traffic to, in Mbps."""
        flow, meter = self.installed()
        if flow is None or meter is None:
            raise ActuatorError(f"ONOS: no metered flow for {self.flow.destination} on {self.device_id}; "
                                "set_bandwidth() installs it")
        if flow.get("state") not in INSTALLED_STATES:
            raise ActuatorError(f"ONOS: the flow for {self.flow.destination} on {self.device_id} is "
                                f"{flow.get('state')}")
        entry = self.client.meter(self.device_id, meter)
        bands = [band for band in (entry or {}).get("bands", []) if band.get("type") == "DROP"]
        if entry is None or entry.get("unit") != "KB_PER_SEC" or len(bands) != 1:
            raise ActuatorError(f"ONOS: meter {meter} on {self.device_id} is not the one-band KB_PER_SEC meter "
                                f"slicebed installs ({'missing' if entry is None else entry.get('unit')})")
        return float(bands[0]["rate"]) / 1000

    def remove(self) -> None:
        """Delete the slice's flow and its meter (nothing happens if they are not installed)."""
        flow, meter = self.installed()
        if flow is not None:
            self.client.delete_flow(self.device_id, str(flow["id"]))
        if meter is not None:
            self.client.delete_meter(self.device_id, meter)


def meter_id(encoded: object) -> int:
    """A meter id as ONOS writes it: hexadecimal in JSON (``MeterId.toString``: ``Long.toHexString``), e.g. "a"."""
    return int(str(encoded), 16)


KEY_FIELDS = {"ETH_TYPE": "ethType", "IPV4_DST": "ip", "OUTPUT": "port", "METER": "meterId"}


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
