"""`slicebed profile` on a real local testbed (its own prefix, management subnet and Prometheus port): two slices
at two user counts, briefly; the RAN emulator's cores grow with the users, every VNF holds memory, and the traffic
is stopped at the end, also when the profile fails half-way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from helpers import run_slicebed, write_file
from local_testbed import DeployedTestbed, deployed_local_testbed

from controller.deploy.inventory import load_inventory
from controller.profile.runner import DEMAND_COLUMNS, prepare_profile, run_profile
from controller.profile.spec import ProfileSpec
from controller.testbeds.local import program_url

PREFIX, SUBNET, PROMETHEUS_PORT = "sbprf-", "10.95.0", 19490
SLICES, USERS = ("embb", "urllc"), (1, 4)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, exclusive_testbed: None) -> Iterator[DeployedTestbed]:
    with deployed_local_testbed(tmp_path_factory.mktemp("profile"), PREFIX, SUBNET, PROMETHEUS_PORT) as up:
        yield up


def _app_server_users(inventory: Path, slice_name: str) -> int:
    url = program_url(load_inventory(inventory), "app", slice_name)
    return int(requests.get(f"{url}/control", timeout=5).json()["users"])


@pytest.mark.slow
def test_profile_measures_every_vnf_and_the_ran_grows_with_users(deployed: DeployedTestbed, tmp_path: Path) -> None:
    spec = write_file(tmp_path / "profile.yaml", {
        "name": "e2e-profile", "inventory": str(deployed.inventory), "slices": list(SLICES), "users": list(USERS),
        "dwell_s": 5, "settle_s": 2, "allocation": {"cpu_millicores": 4000, "bandwidth_mbps": 40}})
    done = run_slicebed("profile", str(spec), "--json", runs=deployed.runs)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    table = pd.read_csv(summary["csv"])
    assert tuple(table.columns) == DEMAND_COLUMNS
    assert len(table) == len(SLICES) * len(USERS) * 4
    assert (table["memory_mb"] > 0).all(), table
    assert (table["host_cores"] >= 0).all()
    assert table["nominal_cores"].to_numpy() == pytest.approx(table["host_cores"].to_numpy() / 0.125, abs=1e-3)
    ran = table[table["vnf"] == "ran_emulator"].set_index(["slice", "users"])["host_cores"]
    for name in SLICES:
        assert ran[(name, USERS[1])] > 1.3 * ran[(name, USERS[0])], ran
    embb = table[(table["slice"] == "embb") & (table["vnf"] == "upf")].set_index("users")["throughput_mbps"]
    assert embb[USERS[1]] > 1.5 * embb[USERS[0]]
    run = Path(summary["path"])
    assert (run / "plots" / "cores-vs-users.png").is_file() and "cores-vs-users" in (run / "report.md").read_text()
    assert json.loads((run / "metadata.json").read_text())["status"] == "completed"
    assert all(_app_server_users(deployed.inventory, name) == 0 for name in SLICES)


class StopHere(Exception):
    """Raised by the test's step callback."""


@pytest.mark.slow
def test_a_profile_that_fails_half_way_stops_the_traffic(deployed: DeployedTestbed) -> None:
    spec = ProfileSpec(name="fails", slices=["urllc"], users=[2, 3], dwell_s=2, settle_s=0)
    target = prepare_profile(spec, deployed.inventory, Path("inline"))

    def fail(rows: pd.DataFrame) -> None:
        assert _app_server_users(deployed.inventory, "urllc") == 2  # the first step's users run
        raise StopHere

    with pytest.raises(StopHere):
        run_profile(target, fail)
    assert _app_server_users(deployed.inventory, "urllc") == 0
