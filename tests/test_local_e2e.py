"""End to end on the local testbed: `slicebed testbed up`, real traffic, a short closed loop, `down`.

Asserts the outcomes the local testbed exists for: throughput follows the OvS meter's cap, a lower CPU
quota lowers the RAN emulator's throughput, what Prometheus reports matches what the UE sinks counted, a
campaign loses and duplicates nothing through a Prometheus outage, and `down` leaves nothing behind. The
testbed gets its own prefix, management subnet and ports (copied from inventory/local.yml), so it never
collides with another testbed on the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from dashboard_queries import DASHBOARDS, expressions, load
from helpers import REPO, assert_one_error_line, run_cli, run_slicebed, slicebed_argv, venv_environment, write_file
from local_testbed import DeployedTestbed, deployed_local_testbed, write_local_inventory

from collectors.prometheus import PrometheusReader
from controller.actuators.base import Interval
from controller.campaign.export import journaled_table
from controller.campaign.journal import completed_points, incomplete_points
from controller.campaign.plan import plan_points
from controller.campaign.spec import load_campaign_spec
from controller.deploy.check import DELAY_TOLERANCE, DELAY_TOLERANCE_MS, check_testbed
from controller.deploy.inventory import load_inventory
from controller.deploy.inventory.programs import PROGRAMS
from controller.deploy.local_deployment import LocalDeployment
from controller.deploy.state import current_placement
from controller.loop.journal import LoopJournal
from controller.loop.session import create_loop_run
from controller.monitor.snapshot import DEFAULT_RATE_WINDOW_S
from controller.profile.runner import DEMAND_COLUMNS, prepare_profile, run_profile
from controller.profile.spec import ProfileSpec
from controller.spec import load_spec
from controller.testbeds.base import Allocation, TestbedUnavailable
from controller.testbeds.local import LocalTestbed, exporter_url, open_local_testbed, program_url
from core.errors import InputError
from core.retry import Attempts
from core.runstore import RunStore
from core.slice_types import QosKind
from dataplane.sources import SourceSettings

PREFIX = "sbe2e-"
NEVER_UP = "sbnone-"  # a prefix no test brings up
SUBNET = "10.93.0"


def _inventory(directory: Path, prefix: str = PREFIX) -> Path:
    return write_local_inventory(directory, prefix, SUBNET, prometheus_port=19390)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, exclusive_testbed: None) -> Iterator[DeployedTestbed]:
    """An up testbed; brought down, and checked empty, at the end."""
    with deployed_local_testbed(tmp_path_factory.mktemp("e2e"), PREFIX, SUBNET, prometheus_port=19390) as up:
        yield up


@pytest.fixture(scope="module")
def testbed(deployed: DeployedTestbed) -> Iterator[LocalTestbed]:
    with open_local_testbed(deployed.inventory, {"embb": (Interval(500, 4000), Interval(5, 40))}) as backend:
        yield backend


def _settled_total(testbed: LocalTestbed, users: int, allocation: Allocation, seconds: int = 8) -> pd.DataFrame:
    testbed.apply("embb", allocation)
    testbed.set_traffic("embb", users)
    return testbed.collect(seconds).iloc[3:]  # the first seconds still carry the previous point


@pytest.mark.slow
def test_throughput_follows_the_bandwidth_cap(testbed: LocalTestbed) -> None:
    for cap in (5.0, 10.0):
        samples = _settled_total(testbed, 3, Allocation(4000, cap))  # 36 Mbps offered
        assert samples["total_bandwidth_usage"].mean() == pytest.approx(0.95 * cap, rel=0.1)
        assert (samples["bw"] == cap).all()


@pytest.mark.slow
def test_a_lower_cpu_quota_lowers_ran_throughput(testbed: LocalTestbed) -> None:
    high = _settled_total(testbed, 2, Allocation(4000, 40))["qos"].mean()
    low = _settled_total(testbed, 2, Allocation(500, 40))["qos"].mean()
    assert low < 0.5 * high, (low, high)
    cgroup = testbed.cpu["embb"]
    assert cgroup.read_cpu() == 500


@pytest.mark.slow
def test_exported_metrics_match_what_the_sinks_measured(testbed: LocalTestbed) -> None:
    testbed.apply("embb", Allocation(2000, 15))
    testbed.set_traffic("embb", 2)
    time.sleep(3)
    sink = program_url(testbed.inventory, "ue_sink", "embb")

    def sink_bytes() -> int:
        return sum(user["bytes"] for user in requests.get(f"{sink}/stats", timeout=5).json()["users"].values())

    before, started = sink_bytes(), time.monotonic()
    samples = testbed.collect(10)
    sink_mbps = (sink_bytes() - before) * 8 / (time.monotonic() - started) / 1e6
    assert samples["total_bandwidth_usage"].mean() == pytest.approx(sink_mbps, rel=0.1)
    assert (samples["n_users"] == 2).all()
    with PrometheusReader(f"http://127.0.0.1:{testbed.inventory.settings.prometheus_port}") as reader:
        allocation = reader.instant("slicebed_allocation_bandwidth_mbps")
        cpu = reader.instant("slicebed_allocation_cpu_millicores")
    assert allocation["value"].tolist() == [15.0] and cpu["value"].tolist() == [2000.0]


def _target_health(prometheus_port: int) -> dict[str, str]:
    """Every active scrape target's instance and health, from Prometheus's /api/v1/targets."""
    reply = requests.get(f"http://127.0.0.1:{prometheus_port}/api/v1/targets", params={"state": "active"}, timeout=5)
    return {target["labels"]["instance"]: target["health"] for target in reply.json()["data"]["activeTargets"]}


def _program_urls(testbed: LocalTestbed) -> list[str]:
    """The base URL of every data-plane program of every slice, and the allocation exporter's."""
    names = [s.name for s in testbed.inventory.settings.slices]
    return [*(program_url(testbed.inventory, program, name) for name in names for program in PROGRAMS),
            exporter_url(testbed.inventory)]


@pytest.mark.slow
def test_prometheus_scrapes_exactly_the_running_exporters_and_every_target_is_up(testbed: LocalTestbed) -> None:
    settings = testbed.inventory.settings
    expected = {f"127.0.0.1:{settings.node_exporter_port}", *(url.removeprefix("http://")
                                                             for url in _program_urls(testbed))}
    for _ in Attempts(15, 1):  # a target is "unknown" until its first scrape
        health = _target_health(settings.prometheus_port)
        if set(health.values()) == {"up"}:
            break
    assert health == dict.fromkeys(expected, "up")


def _stream_on_every_slice(slices: LocalTestbed) -> None:
    """Two users on each slice with room to spare; back once the per-user series exist (the sinks' first window)."""
    for name in THREE_SLICES:
        slices.apply(name, Allocation(4000, 12))
        slices.set_traffic(name, 2)
    time.sleep(3)


@pytest.mark.slow
def test_every_data_plane_program_passes_promtool_check_metrics(slices: LocalTestbed) -> None:
    _stream_on_every_slice(slices)
    expositions = {url: requests.get(f"{url}/metrics", timeout=5).text for url in _program_urls(slices)}
    for url, exposition in expositions.items():
        checked = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True,
                                 check=False, timeout=30)
        assert checked.returncode == 0, f"{url}: {checked.stdout}{checked.stderr}"
    sinks = "".join(expositions[program_url(slices.inventory, "ue_sink", name)] for name in THREE_SLICES)
    for series in ('slicebed_user_throughput_bps{slice="embb",user="',
                   'slicebed_user_delay_p95_seconds{slice="urllc",user="',
                   'slicebed_user_delivery_ratio{slice="mmtc",user="'):
        assert series in sinks


@pytest.mark.slow
def test_every_dashboard_query_returns_series_from_the_testbed(slices: LocalTestbed) -> None:
    _stream_on_every_slice(slices)
    time.sleep(10)  # rate() over 10 s windows needs two samples of each counter
    queries = [found for path in DASHBOARDS for found in expressions(load(path))]
    url = f"http://127.0.0.1:{slices.inventory.settings.prometheus_port}/api/v1/query"
    answers = {where: requests.get(url, params={"query": expr}, timeout=5).json()["data"]["result"]
               for where, expr in queries}
    assert [where for where, result in answers.items() if not result] == []
    (ran_cpu,) = [where for where, expr in queries if where.startswith("slicebed-shared") and "process_cpu" in expr]
    assert {series["metric"]["slice"] for series in answers[ran_cpu]} == set(THREE_SLICES)  # one RAN per slice


@pytest.mark.slow
def test_a_short_closed_loop_runs_and_its_dataset_trains_through_the_cli(deployed: DeployedTestbed,
                                                                        tmp_path: Path) -> None:
    inventory, runs = deployed.inventory, deployed.runs
    spec = yaml.safe_load((REPO / "experiments" / "demo-local.yaml").read_text())
    spec["name"], spec["testbed"]["inventory"] = "e2e-loop", str(inventory)
    spec["slices"][0]["traffic"] = [{"kind": "constant", "users": 2}]
    spec["rounds"] = 1
    spec["sweep"] = {"users": [1, 2], "cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40], "dwell_s": 6}
    spec["training"].update(epochs=200, settle_s=2)
    spec["validation"].update(window_s=8, settle_s=0)
    path = tmp_path / "e2e-loop.yaml"
    path.write_text(yaml.safe_dump(spec))
    loop = run_slicebed("loop", "run", str(path), "--testbed", "local", runs=runs)
    assert loop.returncode in (0, 1), loop.stderr  # 1: the level did not pass in its one round (said on stderr)
    run = next(p for p in runs.iterdir() if "e2e-loop" in p.name)
    dataset = run / "dataset-embb.csv"
    frame = pd.read_csv(dataset)
    assert list(frame.columns) == ["time", "total_bandwidth_usage", "cpu", "bw", "n_users", "qos"]
    assert set(frame["n_users"]) == {1.0, 2.0} and set(frame["bw"]) == {5.0, 40.0}
    trained = run_slicebed("model", "train", "--data", str(dataset), "--out", str(tmp_path / "model"), "--epochs", "50",
                           "--settle-s", "2", "--folds", "0", "--no-calibrate", runs=runs)  # 4 allocations: too few
    assert trained.returncode == 0, trained.stderr
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["train"]


@pytest.mark.slow
def test_the_guard_falls_back_on_the_testbed_and_the_next_round_closes_the_loop(deployed: DeployedTestbed,
                                                                              tmp_path: Path) -> None:
    """An optimistic model's answer (500 millicores, 5 Mbps for 2 users at 3 Mbps each, journaled as round 1's
    allocation) starves the slice: the guard puts the peak allocation on the cgroup and the meter, the level fails,
    and round 2 sweeps around it, retrains and validates a larger allocation that degrades less."""
    spec = yaml.safe_load((REPO / "experiments" / "demo-local.yaml").read_text())
    spec.update(name="e2e-guard", rounds=2)
    spec["testbed"]["inventory"] = str(deployed.inventory)
    spec["slices"][0]["traffic"] = [{"kind": "constant", "users": 2}]
    spec["sweep"] = {"cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40], "dwell_s": 6,
                     "targeted": {"around": 2, "frontier": 1}}
    spec["training"].update(epochs=200, settle_s=2)
    spec["validation"] = {"window_s": 15, "settle_s": 2, "guard": {"min_seconds": 4}}
    path = tmp_path / "e2e-guard.yaml"
    path.write_text(yaml.safe_dump(spec))
    loaded = load_spec(path)
    run = create_loop_run(RunStore(deployed.runs), loaded, "local", path)
    LoopJournal.read(run).record_allocation(1, 0, method="microopt", feasible=True, solve_seconds=0.0,
                                            allocations={"embb": [500.0, 5.0]}, expected={"embb": 0.1})

    resumed = run_slicebed("loop", "resume", run.id, runs=deployed.runs)
    assert resumed.returncode in (0, 1), resumed.stderr
    fallback = next(event for event in run.events() if event["event"] == "safety_fallback")
    assert fallback["round"] == 1 and fallback["allocation"] == [4000.0, 40.0]
    at = pd.Timestamp(fallback["time"]).to_pydatetime()
    with PrometheusReader(f"http://127.0.0.1:{deployed_port(deployed)}") as reader:  # what the testbed really had
        cpu = reader.range("slicebed_allocation_cpu_millicores", at, at + timedelta(seconds=3), 1)
        bandwidth = reader.range("slicebed_allocation_bandwidth_mbps", at, at + timedelta(seconds=3), 1)
    assert 4000.0 in set(cpu["value"]) and 40.0 in set(bandwidth["value"])

    results = run.read_samples("results")
    first, second = results.iloc[0], results.iloc[1]
    assert first["verdict"] == "fail" and bool(first["fallback"]) and first["achieved_degradation"] > 0.9
    planned = LoopJournal.read(run).plans[2]
    assert planned and {point.users for point in planned} == {2}
    assert set(run.read_samples()["point"]) >= {point.id for point in planned}
    assert (second["cpu_millicores"], second["bandwidth_mbps"]) != (500.0, 5.0)
    assert second["achieved_degradation"] < first["achieved_degradation"]


def deployed_port(deployed: DeployedTestbed) -> int:
    """The Prometheus port of the deployed testbed's inventory."""
    return int(yaml.safe_load(deployed.inventory.read_text())["all"]["vars"]["prometheus_port"])


THREE_SLICES = {name: (Interval(500, 4000), Interval(1, 40)) for name in ("embb", "urllc", "mmtc")}
QOS_BY_SLICE: dict[str, QosKind] = {"embb": "throughput_mbps", "urllc": "delay_p95_ms", "mmtc": "delivery_ratio"}


@pytest.fixture
def slices(deployed: DeployedTestbed) -> Iterator[LocalTestbed]:
    """The three slices of the shipped inventory, each with its own cgroup and meter."""
    with open_local_testbed(deployed.inventory, THREE_SLICES, QOS_BY_SLICE) as backend:
        yield backend


def _drive(testbed: LocalTestbed, users: dict[str, int], allocations: dict[str, Allocation],
           seconds: int = 8) -> pd.DataFrame:
    for name, allocation in allocations.items():
        testbed.apply(name, allocation)
        testbed.set_traffic(name, users[name])
    testbed.collect(3)  # the previous point's queues drain
    return testbed.collect(seconds)


@pytest.mark.slow
def test_every_slice_type_reports_its_own_qos_from_its_own_cgroup_and_meter(slices: LocalTestbed) -> None:
    generous = {name: Allocation(4000, 12) for name in THREE_SLICES}
    samples = _drive(slices, dict.fromkeys(THREE_SLICES, 2), generous)
    qos = samples.groupby("slice")["qos"].median()
    assert set(qos.index) == set(THREE_SLICES)
    assert 2.0 < qos["embb"] <= 12.5  # Mbps per user (12 offered, capped by 12 for two users)
    assert 5.0 <= qos["urllc"] < 1000  # ms: at least the edge-regional delay, less than a whole window
    assert 0.9 <= qos["mmtc"] <= 1.0  # delivery ratio with room to spare
    starved = _drive(slices, dict.fromkeys(THREE_SLICES, 2), {**generous, "mmtc": Allocation(4000, 1)})
    assert starved[starved["slice"] == "mmtc"]["qos"].median() < 0.9  # 2 x 500 devices need ~1.4 Mbps on the wire
    groups = {name: slices.cpu[name] for name in THREE_SLICES}
    assert {name: group.read_cpu() for name, group in groups.items()} == dict.fromkeys(THREE_SLICES, 4000)
    assert len({group.path for group in groups.values()}) == 3


@pytest.mark.slow
def test_one_slice_flooding_its_meter_does_not_move_the_others(slices: LocalTestbed) -> None:
    allocations = {"embb": Allocation(2000, 5), "urllc": Allocation(2000, 5), "mmtc": Allocation(2000, 5)}
    quiet = _drive(slices, {"embb": 0, "urllc": 2, "mmtc": 2}, allocations, seconds=10)
    flooded = _drive(slices, {"embb": 5, "urllc": 2, "mmtc": 2}, allocations, seconds=10)  # 60 Mbps into 5
    before = quiet.groupby("slice")["total_bandwidth_usage"].mean()
    after = flooded.groupby("slice")["total_bandwidth_usage"].mean()
    assert after["embb"] == pytest.approx(0.95 * 5, rel=0.15)  # the flood is held at its own meter
    for name in ("urllc", "mmtc"):
        assert after[name] == pytest.approx(before[name], rel=0.05), (name, before[name], after[name])


@pytest.mark.slow
def test_check_measures_each_slices_cpu_and_meter_and_the_shared_capacities(deployed: DeployedTestbed,
                                                                           slices: LocalTestbed) -> None:
    for name, cpu in (("embb", 2000), ("urllc", 1000), ("mmtc", 500)):
        slices.apply(name, Allocation(cpu, 8))
    testbed = LocalDeployment.open(deployed.inventory)
    measured = {m.subject: m for m in check_testbed(testbed)}
    expected = {"embb RAN cgroup", "urllc RAN cgroup", "mmtc RAN cgroup", "edge cgroup",
                "shared transport: central->edge meter 1000"}
    assert expected <= set(measured), sorted(measured)
    assert measured["embb RAN cgroup"].configured == pytest.approx(2000 * 0.125 / 1000)  # host cores
    assert measured["edge cgroup"].configured == pytest.approx(8000 * 0.125 / 1000)
    assert measured["shared transport: central->edge meter 1000"].configured == 60
    for measurement in measured.values():
        assert measurement.within_tolerance, measurement


# ---- slicebed profile on the same testbed ----

PROFILED, PROFILED_USERS = ("embb", "urllc"), (1, 4)


def _app_server_users(inventory: Path, slice_name: str) -> int:
    url = program_url(load_inventory(inventory), "app_server", slice_name)
    return int(requests.get(f"{url}/control", timeout=5).json()["users"])


@pytest.mark.slow
def test_profile_measures_every_vnf_and_the_ran_grows_with_users(deployed: DeployedTestbed, tmp_path: Path) -> None:
    spec = write_file(tmp_path / "profile.yaml", {
        "name": "e2e-profile", "inventory": str(deployed.inventory), "slices": list(PROFILED),
        "users": list(PROFILED_USERS), "dwell_s": 5, "settle_s": 2,
        "allocation": {"cpu_millicores": 4000, "bandwidth_mbps": 40}})
    done = run_slicebed("profile", str(spec), "--json", runs=deployed.runs)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    table = pd.read_csv(summary["csv"])
    assert tuple(table.columns) == DEMAND_COLUMNS
    assert len(table) == len(PROFILED) * len(PROFILED_USERS) * 4
    assert (table["memory_mb"] > 0).all(), table
    assert (table["host_cores"] >= 0).all()
    assert table["nominal_cores"].to_numpy() == pytest.approx(table["host_cores"].to_numpy() / 0.125, abs=1e-3)
    ran = table[table["vnf"] == "ran_emulator"].set_index(["slice", "users"])["host_cores"]
    for name in PROFILED:
        assert ran[(name, PROFILED_USERS[1])] > 1.3 * ran[(name, PROFILED_USERS[0])], ran
    embb = table[(table["slice"] == "embb") & (table["vnf"] == "upf")].set_index("users")["throughput_mbps"]
    assert embb[PROFILED_USERS[1]] > 1.5 * embb[PROFILED_USERS[0]]
    run = Path(summary["path"])
    assert (run / "plots" / "cores-vs-users.png").is_file() and "cores-vs-users" in (run / "report.md").read_text()
    assert json.loads((run / "metadata.json").read_text())["status"] == "completed"
    assert all(_app_server_users(deployed.inventory, name) == 0 for name in PROFILED)


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


def test_backend_on_a_testbed_that_is_not_up_says_how_to_bring_it_up(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, NEVER_UP)
    with pytest.raises(TestbedUnavailable, match=r"the local testbed is not up .* run `slicebed testbed up"):
        open_local_testbed(inventory, {"embb": (Interval(500, 4000), Interval(5, 40))})
    with pytest.raises(InputError, match="slice\\(s\\) voice are not deployed"):
        open_local_testbed(inventory, {"voice": (Interval(500, 4000), Interval(5, 40))})
    with pytest.raises(InputError, match=r"slice urllc is a urllc slice .* judged by delay_p95_ms; the experiment says "
                                         r"qos: throughput_mbps"):
        open_local_testbed(inventory, {"urllc": (Interval(500, 4000), Interval(5, 40))}, {"urllc": "throughput_mbps"})


@pytest.mark.parametrize(("argv", "fragments"), [
    (["voice", "upf", "edge"], ("unknown slice 'voice'", "the testbed's slices are embb, urllc, mmtc")),
    (["urllc", "ran", "edge"], ("unknown VNF 'ran'", "places its upf")),
    (["urllc", "upf", "cloud"], ("slice urllc: unknown tier 'cloud'", "the tiers are edge, regional, central")),
    (["urllc", "upf", "edge"], ("the local testbed sbnone- is not (fully) up", "slicebed testbed up --inventory")),
])
def test_place_bad_input_is_one_line_and_changes_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                         argv: list[str], fragments: tuple[str, ...]) -> None:
    inventory = _inventory(tmp_path, NEVER_UP)
    code, out, err = run_cli(["--runs-dir", str(tmp_path / "runs"), "testbed", "place", *argv, "--inventory",
                              str(inventory)], capfd)
    assert (code, out) == (2, "")
    assert_one_error_line(err, *fragments)
    assert not (tmp_path / "runs").exists()  # no run directory
    assert not load_inventory(inventory).state_dir.exists()  # no placement recorded, nothing started


@pytest.mark.slow
def test_loop_on_the_local_testbed_when_it_is_down_is_one_error_line(tmp_path: Path) -> None:
    spec = yaml.safe_load((REPO / "experiments" / "demo-local.yaml").read_text())
    spec["testbed"]["inventory"] = str(_inventory(tmp_path, NEVER_UP))
    path = tmp_path / "down.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_slicebed("loop", "run", str(path), "--testbed", "local", runs=tmp_path / "runs")
    assert result.returncode == 2
    assert_one_error_line(result.stderr, "slicebed: error: the local testbed is not up")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no half-made run


@pytest.mark.slow
def test_top_shows_each_slice_as_its_meter_and_its_cgroup_carry_it(deployed: DeployedTestbed, slices: LocalTestbed,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    allocations = {"embb": Allocation(4000, 10), "urllc": Allocation(2000, 8), "mmtc": Allocation(1000, 8)}
    for name, allocation in allocations.items():
        slices.apply(name, allocation)
        slices.set_traffic(name, 3 if name == "embb" else 2)  # embb: 36 Mbps offered, its 10 Mbps meter binds
    time.sleep(6)
    groups = {name: slices.cpu[name] for name in allocations}
    used_before, started = {name: g.group.usage_seconds(g.runner) for name, g in groups.items()}, time.monotonic()
    time.sleep(DEFAULT_RATE_WINDOW_S)
    nominal_millicores = {name: (g.group.usage_seconds(g.runner) - used_before[name]) / (time.monotonic() - started)
                          * 1e3 / g.scale for name, g in groups.items()}
    code, out, err = run_cli(["testbed", "top", "--inventory", str(deployed.inventory), "--json",
                              "--experiment", str(REPO / "experiments" / "demo-local-3slices.yaml")], capfd)
    assert (code, err) == (0, "")
    document = json.loads(out)
    shown = {entry["name"]: entry for entry in document["slices"]}
    assert set(shown) == set(allocations)
    for name, allocation in allocations.items():
        entry = shown[name]
        assert entry["type"] == name and entry["users"] == (3 if name == "embb" else 2)
        assert entry["upf_tier"] == "regional"  # the inventory's placement
        assert entry["allocation"] == {"cpu_millicores": allocation.cpu_millicores,
                                       "bandwidth_mbps": allocation.bandwidth_mbps}
        assert entry["qos"]["kind"] == QOS_BY_SLICE[name] and entry["threshold"] is not None
        assert entry["qos"]["per_user"] and entry["users_meeting_threshold"] is not None
        assert entry["ran_cpu_millicores"] == pytest.approx(nominal_millicores[name], rel=0.25, abs=50), name
    embb = shown["embb"]
    assert embb["meter_mbps"] == pytest.approx(0.95 * 10, rel=0.15)
    assert sum(embb["qos"]["per_user"].values()) == pytest.approx(embb["meter_mbps"], rel=0.15)
    assert document["shared"]["cpu_millicores"] == {"allocated": 7000, "capacity": 8000}
    assert document["shared"]["bandwidth_mbps"] == {"allocated": 26, "capacity": 60}


# ---- VNF placement: a slice's UPF (and its app server, the data network) between tiers ----

MOVED_USERS = 2


def _sink_packets(inventory: Path, slice_name: str) -> int:
    """Packets the slice's UE sink has received so far (every user)."""
    url = program_url(load_inventory(inventory), "ue_sink", slice_name)
    return sum(user["packets"] for user in requests.get(f"{url}/stats", timeout=5).json()["users"].values())


def _one_way_delay_ms(deployed: DeployedTestbed, slice_name: str, seconds: float) -> tuple[float, float]:
    """The median over ``seconds`` of the slice's per-second mean and p95 one-way delay (ms), from Prometheus."""
    time.sleep(seconds)
    end = datetime.now(UTC)
    start = end - timedelta(seconds=seconds)
    with PrometheusReader(f"http://127.0.0.1:{deployed_port(deployed)}") as reader:
        mean = reader.range(f'slicebed_user_delay_seconds{{slice="{slice_name}"}}', start, end, 1)["value"]
        p95 = reader.range(f'slicebed_user_delay_p95_seconds{{slice="{slice_name}"}}', start, end, 1)["value"]
    return float(mean.median()) * 1000, float(p95.median()) * 1000


@pytest.mark.slow
def test_prometheus_stopped_and_restarted_mid_campaign_loses_and_duplicates_nothing(deployed: DeployedTestbed,
                                                                                   tmp_path: Path) -> None:
    """A campaign on the testbed with its Prometheus stopped (by the PID in the testbed's pid file) while points are
    being measured and brought back by `slicebed testbed up` (idempotent): the campaign marks the points it could not
    measure incomplete or stops resumably, and resumes until the dataset holds every planned point exactly once."""
    spec_path = tmp_path / "local.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "local-outage", "seed": 1,
        "testbed": {"backend": "local", "inventory": str(deployed.inventory)},
        "slices": [{"name": "embb", "bounds": {"cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40]}}],
        "grid": {"users": [1, 2], "bandwidth_mbps": [10, 20], "cpu_millicores": [2000, 4000]},
        "dwell_s": 4, "settle_s": 3,
    }), encoding="utf-8")
    runs = tmp_path / "runs"
    campaign = subprocess.Popen(slicebed_argv("campaign", "run", str(spec_path), runs=runs), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=venv_environment(OMP_NUM_THREADS="1"))
    for _ in Attempts(300, 0.2):  # wait for two measured points
        listed = RunStore(runs).list()
        if campaign.poll() is not None or (listed and len(completed_points(listed[0])) >= 2):
            break
    assert campaign.poll() is None, f"the campaign ended before the outage: {campaign.communicate()}"
    pid_file = load_inventory(deployed.inventory).state_dir / "pids" / "prometheus.pid"
    os.kill(int(pid_file.read_text(encoding="utf-8").split()[0]), signal.SIGTERM)  # the testbed's Prometheus
    time.sleep(6)  # at least one point's window without Prometheus
    restarted = run_slicebed("testbed", "up", "--inventory", str(deployed.inventory), runs=tmp_path / "up-runs")
    assert restarted.returncode == 0, restarted.stderr
    _, err = campaign.communicate(timeout=600)
    run = RunStore(runs).list()[0]
    outage_visible = campaign.returncode in (1, 2) and ("incomplete" in err or "campaign resume" in err)
    assert outage_visible, (campaign.returncode, err)  # the outage is reported, never silently absorbed
    for _ in range(3):
        if run.metadata()["status"] == "completed":
            break
        resumed = run_slicebed("campaign", "resume", run.id, runs=runs)
        assert resumed.returncode in (0, 1), resumed.stderr
    assert run.metadata()["status"] == "completed" and not incomplete_points(run)
    samples = journaled_table(run)
    expected = {point.id for point in plan_points(load_campaign_spec(spec_path))}
    assert set(samples["point"]) == expected
    assert samples.groupby("point").size().eq(4).all()
    assert not samples.duplicated(["point", "time"]).any()


@pytest.mark.slow
def test_moving_a_upf_between_tiers_follows_the_latency_matrix_and_loses_under_a_second(
        deployed: DeployedTestbed, slices: LocalTestbed, capfd: pytest.CaptureFixture[str]) -> None:
    """URLLC's UPF regional -> edge -> central while 2 users stream (the module's last test: `down` then removes a
    testbed whose placement differs from the inventory's). benchmarks/bench_place.py prints the same figures."""
    inventory = load_inventory(deployed.inventory)
    slices.apply("urllc", Allocation(4000, 12))
    slices.set_traffic("urllc", MOVED_USERS)
    offered_pps = MOVED_USERS * 1000 / SourceSettings.interval_ms
    time.sleep(3)
    for target in ("edge", "central"):
        before, started = _sink_packets(deployed.inventory, "urllc"), time.monotonic()
        moved = run_slicebed("testbed", "place", "urllc", "upf", target, "--inventory", str(deployed.inventory),
                             "--json", runs=deployed.runs)
        assert moved.returncode == 0, moved.stderr
        time.sleep(2)
        received = _sink_packets(deployed.inventory, "urllc") - before
        lost_s = (offered_pps * (time.monotonic() - started) - received) / offered_pps
        assert lost_s <= 1.0, (target, lost_s, json.loads(moved.stdout))
        assert current_placement(inventory)["urllc"] == target
        assert slices.settings()["upf_tiers"]["urllc"] == target
        assert slices.settings()["unmetered_slices"] == (["urllc"] if target == "edge" else [])
        mean_ms, p95_ms = _one_way_delay_ms(deployed, "urllc", 8)
        code, out, err = run_cli(["testbed", "top", "--inventory", str(deployed.inventory), "--json"], capfd)
        assert (code, err) == (0, "")
        assert {entry["name"]: entry["upf_tier"] for entry in json.loads(out)["slices"]}["urllc"] == target
        expected = inventory.delay_ms("edge", target)
        assert mean_ms == pytest.approx(expected, abs=DELAY_TOLERANCE_MS + DELAY_TOLERANCE * expected), \
            (target, mean_ms, p95_ms)
    health = _target_health(inventory.settings.prometheus_port)
    assert {url.removeprefix("http://") for url in _program_urls(slices)} <= {
        instance for instance, state in health.items() if state == "up"}
