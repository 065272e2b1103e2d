"""slicebed's ONOS REST calls against ONOS 2.7.0's published REST models (issue 16, item 7).

``tests/onos_api.json`` holds, for each model slicebed sends or reads (MeterPost, Meters, FlowsPost,
FlowEntries), its required members and their JSON types, read from ONOS's swagger definitions at tag 2.7.0
(``web/api/src/main/resources/definitions``). The requests slicebed builds (the lab meter actuator's, the onos
role's) must satisfy them, and so must what the fake ONOS answers, so that the fake cannot drift from ONOS.
"""

from __future__ import annotations

import json

import pytest
import requests
from fakes.onos import FakeOnos
from onos_contract import API, model_problems

from controller.actuators.base import Interval
from controller.actuators.onos import OnosClient, OnosMeterActuator, SliceFlow, meter_id, meter_request, metered_flow

DEVICE = "of:0000000000000002"


def test_the_contract_names_its_upstream_source_and_covers_every_route_slicebed_uses() -> None:
    source = API["source"]
    assert source["tag"] == "2.7.0" and len(source["commit"]) == 40
    assert "web/api/src/main/resources/definitions" in source["path"]
    assert set(API["routes"].values()) <= set(API["models"])
    assert {"POST /meters/{deviceId}", "GET /meters/{deviceId}/{meterId}", "POST /flows/{deviceId}",
            "GET /flows/{deviceId}"} <= set(API["routes"])
    meter = API["models"]["MeterPost"]
    assert meter["required"] == ["deviceId", "unit", "burst", "bands"]
    assert meter["items"]["bands"]["required"] == ["type", "rate", "burstSize", "prec"]


def test_slicebed_requests_satisfy_the_models() -> None:
    assert model_problems("MeterPost", meter_request(DEVICE, 20000)) == []
    assert model_problems("FlowsPost", {"deviceId": DEVICE,
                                        **metered_flow(SliceFlow("10.60.0.110/32", "sb-vx-edge"), 3, "2")}) == []


@pytest.mark.parametrize(("body", "problem"), [
    ({**meter_request(DEVICE, 20000), "bands": [{"type": "DROP", "rate": 20000, "burstSize": 5000}]},
     "bands[0]: prec is required"),
    ({**meter_request(DEVICE, 20000), "bands": [{"type": "DROP", "rate": "20000", "burstSize": 5000, "prec": 0}]},
     "rate must be a JSON integer"),
    ({"deviceId": DEVICE, "bands": []}, "unit is required"),
])
def test_the_model_check_catches_what_onos_2_7_requires(body: dict, problem: str) -> None:
    assert any(problem in found for found in model_problems("MeterPost", body)), model_problems("MeterPost", body)


def test_onos_fake_answers_satisfy_the_models_and_refuse_what_breaks_them() -> None:
    with FakeOnos({DEVICE: {"1": "sb-vx-central", "2": "sb-vx-edge"}}) as onos:
        client = OnosClient(onos.url, "onos", "rocks")
        actuator = OnosMeterActuator(client, SliceFlow("10.60.0.110/32", "sb-vx-edge"), Interval(1, 100))
        actuator.set_bandwidth(20)
        session = requests.Session()
        session.auth = ("onos", "rocks")
        for route, url in [("GET /meters/{deviceId}", f"/meters/{DEVICE}"),
                           ("GET /flows/{deviceId}", f"/flows/{DEVICE}")]:
            answer = session.get(f"{onos.url}/onos/v1{url}", timeout=5).json()
            assert model_problems(API["routes"][route], answer) == [], (route, answer)
        _flow, meter = actuator.installed()
        assert meter is not None
        one = session.get(f"{onos.url}/onos/v1/meters/{DEVICE}/{meter}", timeout=5).json()
        assert model_problems(API["routes"]["GET /meters/{deviceId}/{meterId}"], one) == []
        assert meter_id(one["meters"][0]["id"]) == meter  # hexadecimal in JSON, decimal in the URL
        refused = session.post(f"{onos.url}/onos/v1/meters/{DEVICE}", timeout=5,
                               data=json.dumps({"deviceId": DEVICE, "unit": "KB_PER_SEC", "burst": True,
                                                "bands": [{"type": "DROP", "rate": 1000, "burstSize": 250}]}))
        assert refused.status_code == 400 and "prec is required" in refused.json()["message"]
        client.close()
