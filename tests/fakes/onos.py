"""Contract fake of the ONOS northbound REST API (``/onos/v1``), from ONOS's published REST definitions.

Served: ``GET /devices``, ``GET /devices/{id}/ports``, ``GET|POST /flows/{deviceId}``,
``GET|DELETE /flows/{deviceId}/{flowId}``, with HTTP basic authentication. Flow bodies are checked the way
ONOS's FlowRuleCodec, CriterionCodec and InstructionCodec decode them (priority and deviceId required,
isPermanent or a timeout, known criterion and instruction types with their mandatory fields); a new flow
answers 201 with its id in the Location header and is PENDING_ADD until first read, then ADDED.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
from typing import Any

from fakes.http import HttpError, JsonServer, Request, Response

CRITERIA = {"ETH_TYPE": "ethType", "IPV4_DST": "ip", "IPV4_SRC": "ip", "IN_PORT": "port", "IP_PROTO": "protocol"}
INSTRUCTIONS = {"OUTPUT": "port", "QUEUE": "queueId", "METER": "meterId"}


class FakeOnos(JsonServer):
    """ONOS with the given devices: ``{device_id: {port_number: port_name}}``."""

    def __init__(self, devices: dict[str, dict[str, str]], user: str = "onos", password: str = "rocks") -> None:
        super().__init__()
        self.devices = devices
        self.credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.flows: dict[str, dict[str, dict[str, Any]]] = {device: {} for device in devices}
        self.ids = itertools.count(0x10000000000001)
        base = "/onos/v1"
        self.route("GET", f"{base}/devices", self._devices)
        self.route("GET", f"{base}/devices/(?P<device>[^/]+)/ports", self._ports)
        self.route("GET", f"{base}/flows/(?P<device>[^/]+)", self._device_flows)
        self.route("POST", f"{base}/flows/(?P<device>[^/]+)", self._add_flow)
        self.route("GET", f"{base}/flows/(?P<device>[^/]+)/(?P<flow>[0-9]+)", self._flow)
        self.route("DELETE", f"{base}/flows/(?P<device>[^/]+)/(?P<flow>[0-9]+)", self._delete_flow)

    def authorize(self, request: Request) -> None:
        if request.headers.get("authorization") != f"Basic {self.credentials}":
            raise HttpError(401, "Unauthorized")

    def error_body(self, error: HttpError) -> Any:
        return {"code": error.status, "message": error.message}

    def _device(self, request: Request) -> str:
        assert request.match is not None
        device = request.match["device"]
        if device not in self.devices:
            raise HttpError(404, "Device is not found")
        return device

    def _devices(self, _request: Request) -> Response:
        return Response(200, {"devices": [
            {"id": device, "type": "SWITCH", "available": True, "role": "MASTER", "mfr": "Nicira, Inc.",
             "hw": "Open vSwitch", "sw": "3.1.0", "serial": "None", "driver": "ovs", "chassisId": device[3:],
             "annotations": {"protocol": "OF_13", "channelId": "10.20.0.21:47522"}} for device in self.devices]})

    def _ports(self, request: Request) -> Response:
        device = self._device(request)
        ports = [{"element": device, "port": number, "isEnabled": True, "type": "COPPER", "portSpeed": 10000,
                  "annotations": {"portName": name, "portMac": "00:00:00:00:00:01"}}
                 for number, name in self.devices[device].items()]
        return Response(200, {"id": device, "type": "SWITCH", "available": True, "ports": ports})

    def _device_flows(self, request: Request) -> Response:
        device = self._device(request)
        return Response(200, {"flows": [self._read(flow) for flow in self.flows[device].values()]})

    def _flow(self, request: Request) -> Response:
        device = self._device(request)
        assert request.match is not None
        flow = self.flows[device].get(request.match["flow"])
        return Response(200, {"flows": [self._read(flow)] if flow else []})

    def _delete_flow(self, request: Request) -> Response:
        device = self._device(request)
        assert request.match is not None
        self.flows[device].pop(request.match["flow"], None)
        return Response(204)

    def _add_flow(self, request: Request) -> Response:
        device = self._device(request)
        body = request.body
        if not isinstance(body, dict):
            raise HttpError(400, "flow rule JSON is not an object")
        if body.get("deviceId", device) != device:
            raise HttpError(400, "Invalid deviceId in flow creation request")
        if not isinstance(body.get("priority"), int):
            raise HttpError(400, "Priority cannot be null")
        if not body.get("isPermanent") and not isinstance(body.get("timeout"), int):
            raise HttpError(400, "Timeout cannot be null")
        criteria = body.get("selector", {}).get("criteria", [])
        for criterion in criteria:
            self._check(criterion, CRITERIA, "Criterion")
            if criterion["type"].startswith("IPV4_"):
                try:
                    ipaddress.IPv4Network(criterion["ip"])
                except ValueError:
                    raise HttpError(400, f"invalid IPv4 prefix {criterion['ip']!r}") from None
        if any(c["type"].startswith("IPV4_") for c in criteria) and not any(
                c["type"] == "ETH_TYPE" and str(c["ethType"]).lower() in ("0x800", "0x0800", "2048")
                for c in criteria):
            raise HttpError(400, "IPv4 criteria need an ETH_TYPE 0x0800 prerequisite")
        instructions = body.get("treatment", {}).get("instructions", [])
        for instruction in instructions:
            self._check(instruction, INSTRUCTIONS, "Instruction")
            if instruction["type"] == "OUTPUT" and str(instruction["port"]) not in self.devices[device]:
                raise HttpError(400, f"port {instruction['port']} does not exist on {device}")
        flow_id = str(next(self.ids))
        self.flows[device][flow_id] = {
            "id": flow_id, "tableId": 0, "appId": request.query.get("appId", ["org.onosproject.rest"])[0],
            "groupId": 0, "priority": body["priority"], "timeout": body.get("timeout", 0),
            "isPermanent": bool(body.get("isPermanent")), "deviceId": device, "state": "PENDING_ADD",
            "life": 0, "packets": 0, "bytes": 0, "lastSeen": 0,
            "treatment": {"instructions": instructions, "deferred": []}, "selector": {"criteria": criteria}}
        return Response(201, headers={"Location": f"{self.url}/onos/v1/flows/{device}/{flow_id}"})

    @staticmethod
    def _read(flow: dict[str, Any]) -> dict[str, Any]:
        """The flow as ONOS's codecs encode it (ethType as 0x800, output ports as numbers); a pending flow is
        installed by the time it is read again."""
        shown = dict(flow)
        shown["selector"] = {"criteria": [
            {**c, "ethType": f"0x{int(str(c['ethType']), 0):x}"} if c["type"] == "ETH_TYPE" else c
            for c in flow["selector"]["criteria"]]}
        shown["treatment"] = {"deferred": [], "instructions": [
            {**i, "port": int(i["port"])} if i["type"] == "OUTPUT" else i
            for i in flow["treatment"]["instructions"]]}
        flow["state"] = "ADDED"
        return shown

    @staticmethod
    def _check(item: Any, known: dict[str, str], kind: str) -> None:
        if not isinstance(item, dict) or item.get("type") not in known:
            raise HttpError(400, f"{kind} type {item.get('type') if isinstance(item, dict) else item!r} is unknown")
        if known[item["type"]] not in item:
            raise HttpError(400, f"{kind} {item['type']} needs '{known[item['type']]}'")
