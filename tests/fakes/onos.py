"""Contract fake of the ONOS 2.7.0 northbound REST API (``/onos/v1``), from ONOS's published REST models.

Served: ``GET /devices``, ``GET /devices/{id}/ports``, ``GET|POST /flows/{deviceId}``,
``GET|DELETE /flows/{deviceId}/{flowId}``, ``GET|DELETE /flows/application/{appId}``, ``GET|POST /meters/{deviceId}``,
``GET|DELETE /meters/{deviceId}/{meterId}``, with HTTP basic authentication. Request bodies are held to the models'
required members and types (``tests/onos_api.json``, read from ONOS 2.7.0's swagger definitions) and checked the way
ONOS's codecs decode them (known criterion, instruction and band types with their mandatory fields); answers carry
every member the models require. As in ONOS, a flow's id depends on its application, selector and priority, not on
its treatment (posting it again changes it); meter ids are decimal in Location headers and URLs, hexadecimal in
JSON. A new flow or meter answers 201 with its URL in Location and is PENDING_ADD until first read, then ADDED.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
from typing import Any

from onos_contract import model_problems

from fakes.http import HttpError, JsonServer, Request, Response

CRITERIA = {"ETH_TYPE": "ethType", "IPV4_DST": "ip", "IPV4_SRC": "ip", "IN_PORT": "port", "IP_PROTO": "protocol"}
INSTRUCTIONS = {"OUTPUT": "port", "QUEUE": "queueId", "METER": "meterId"}
BANDS = ("DROP", "REMARK", "NONE", "MARK_YELLOW", "MARK_RED")
UNITS = ("KB_PER_SEC", "PKTS_PER_SEC", "BYTES_PER_SEC")

class FakeOnos(JsonServer):
    """ONOS with the given devices: ``{device_id: {port_number: port_name}}``."""

    def __init__(self, devices: dict[str, dict[str, str]], user: str = "onos", password: str = "rocks") -> None:
        super().__init__()
        self.devices = devices
        self.credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.flows: dict[str, dict[str, dict[str, Any]]] = {device: {} for device in devices}
        self.meters: dict[str, dict[int, dict[str, Any]]] = {device: {} for device in devices}
        self.meter_ids = itertools.count(1)
        self.apps: dict[str, int] = {}
        base = "/onos/v1"
        self.route("GET", f"{base}/devices", self._devices)
        self.route("GET", f"{base}/devices/(?P<device>[^/]+)/ports", self._ports)
        self.route("GET", f"{base}/flows/(?P<device>[^/]+)", self._device_flows)
        self.route("POST", f"{base}/flows/(?P<device>[^/]+)", self._add_flow)
        self.route("GET", f"{base}/flows/(?P<device>[^/]+)/(?P<flow>[0-9]+)", self._flow)
        self.route("DELETE", f"{base}/flows/(?P<device>[^/]+)/(?P<flow>[0-9]+)", self._delete_flow)
        self.route("GET", f"{base}/flows/application/(?P<app>[^/]+)", self._app_flows)
        self.route("DELETE", f"{base}/flows/application/(?P<app>[^/]+)", self._delete_app_flows)
        self.route("GET", f"{base}/meters/(?P<device>[^/]+)", self._device_meters)
        self.route("POST", f"{base}/meters/(?P<device>[^/]+)", self._add_meter)
        self.route("GET", f"{base}/meters/(?P<device>[^/]+)/(?P<meter>[0-9]+)", self._meter)
        self.route("DELETE", f"{base}/meters/(?P<device>[^/]+)/(?P<meter>[0-9]+)", self._delete_meter)

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

    def _app_flows(self, request: Request) -> Response:
        assert request.match is not None
        app = request.match["app"]
        return Response(200, {"flows": [self._read(flow) for flows in self.flows.values() for flow in flows.values()
                                        if flow["appId"] == app]})

    def _delete_app_flows(self, request: Request) -> Response:
        assert request.match is not None
        for flows in self.flows.values():
            for flow_id in [key for key, flow in flows.items() if flow["appId"] == request.match["app"]]:
                del flows[flow_id]
        return Response(204)

    def _device_meters(self, request: Request) -> Response:
        device = self._device(request)
        return Response(200, {"meters": [self._read_meter(meter) for meter in self.meters[device].values()]})

    def _meter(self, request: Request) -> Response:
        device = self._device(request)
        assert request.match is not None
        meter = self.meters[device].get(int(request.match["meter"]))
        if meter is None:
            raise HttpError(404, f"Meter is not found for {int(request.match['meter']):x}")
        return Response(200, {"meters": [self._read_meter(meter)]})

    def _delete_meter(self, request: Request) -> Response:
        device = self._device(request)
        assert request.match is not None
        self.meters[device].pop(int(request.match["meter"]), None)
        return Response(204)

    def _add_meter(self, request: Request) -> Response:
        """MetersWebResource.createMeter: the MeterPost body, decoded by MeterRequestCodec and MeterBandCodec."""
        device = self._device(request)
        body = request.body
        problems = model_problems("MeterPost", body)
        if problems:
            raise HttpError(400, "; ".join(problems))
        if body["deviceId"] != device:
            raise HttpError(400, "Invalid deviceId in meter creation request")
        if body["unit"] not in UNITS:
            raise HttpError(400, f"The requested unit {body['unit']} is not defined for meter.")
        for band in body["bands"]:
            if band["type"] not in BANDS:
                raise HttpError(400, f"The requested type {band['type']} is not defined for band.")
        meter_id = next(self.meter_ids)
        self.meters[device][meter_id] = {
            "id": f"{meter_id:x}", "appId": "org.onosproject.rest", "deviceId": device, "unit": body["unit"],
            "burst": body["burst"], "state": "PENDING_ADD", "life": 0, "refCount": 0, "packets": 0, "bytes": 0,
            "bands": [{"type": band["type"], "rate": band["rate"], "burstSize": band["burstSize"], "prec": band["prec"],
                       "packets": 0, "bytes": 0} for band in body["bands"]]}
        return Response(201, headers={"Location": f"{self.url}/onos/v1/meters/{device}/{meter_id}"})

    @staticmethod
    def _read_meter(meter: dict[str, Any]) -> dict[str, Any]:
        shown = dict(meter)
        meter["state"] = "ADDED"
        return shown

    def _add_flow(self, request: Request) -> Response:
        device = self._device(request)
        body = request.body
        if not isinstance(body, dict):
            raise HttpError(400, "flow rule JSON is not an object")
        problems = model_problems("FlowsPost", {"deviceId": device, **body})  # createFlow sets a missing deviceId
        if problems:
            raise HttpError(400, "; ".join(problems))
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
        # DecodeInstructionCodecHelper reads a METER's meterId as a number; EncodeInstructionCodecHelper writes hex
        instructions = [{"type": "METER", "meterId": f"{int(i['meterId']):x}"} if i["type"] == "METER" else i
                        for i in instructions]
        app = request.query.get("appId", ["org.onosproject.rest"])[0]
        app_number = self.apps.setdefault(app, len(self.apps) + 1)
        # DefaultFlowRule.computeFlowId: application << 48 | hash(device, selector, priority, table)
        flow_id = str(app_number << 48 | hash((device, json.dumps(criteria, sort_keys=True), body["priority"]))
                      & 0xFFFFFFFF)
        self.flows[device][flow_id] = {
            "id": flow_id, "tableId": 0, "appId": app,
            "groupId": 0, "priority": body["priority"], "timeout": body.get("timeout", 0),
            "isPermanent": bool(body.get("isPermanent")), "deviceId": device, "state": "PENDING_ADD",
            "life": 0, "packets": 0, "bytes": 0, "liveType": "UNKNOWN", "lastSeen": 0,
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
