"""The lab in a box (issue 16): `slicebed testbed up|down --inventory` run playbooks/site.yml for real, over SSH,
against three namespace nodes (tests/lab_box.py) with the components that need no cluster: the OvS transport in lab
mode, the delay between every pair of tiers, the traffic programs in host form and monitoring; between them
`testbed check` and a short closed loop through the lab backend (users, CPU and bandwidth over SSH, QoS from the
box's Prometheus).

One box and one `testbed up` for the module; the tests run in file order, the last one brings the box down.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from helpers import REPO, needs_root, run_slicebed
from lab_box import (
    BOX_TESTBED_PREFIX,
    TRAFFIC,
    UNDERLAY_INTERFACE,
    BoxNode,
    LabBox,
    gnb_stand_in,
    lab_box,
    namespace_pids,
    underlay_queue,
)

from controller.deploy.inventory.lab import open_lab_inventory
from controller.testbeds.lab_check import ECHO_WINDOW_S
from core.retry import Attempts

pytestmark = [pytest.mark.slow, needs_root]

BRIDGE = f"{BOX_TESTBED_PREFIX}tr"
VXLAN_PEERS = {"edge": {"regional"}, "regional": {"edge", "central"}, "central": {"regional"}}
"""The example inventory's latency links edge-regional and regional-central: one VXLAN port per link end."""
ROUND_TRIP_MS = {("edge", "regional"): 10.0, ("regional", "central"): 20.0, ("edge", "central"): 30.0}
"""Twice the one-way delay of each pair in the example (edge-central: the sum along the links, 15 ms)."""


@dataclass
class DeployedBox:
    """The box after `testbed up`: the box, the runs directory and what the first `up` printed (--json)."""

    box: LabBox
    runs: Path
    first_up: dict
    down_done: bool = field(default=False)

    def testbed(self, action: str) -> dict:
        """`slicebed testbed ACTION --inventory BOX --json`; its summary, the command having succeeded."""
        done = run_slicebed("testbed", action, "--inventory", str(self.box.inventory), "--json", runs=self.runs,
                            timeout_s=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def box_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedBox]:
    """The box with `slicebed testbed up --inventory BOX` done once; brought down at the end if no test did. The
    runs (Ansible's logs) outlive the box, in pytest's temporary directory."""
    with lab_box() as box:
        deployed = DeployedBox(box, tmp_path_factory.mktemp("lab-box-runs"), {})
        try:
            deployed.first_up = deployed.testbed("up")
            yield deployed
        finally:
            if not deployed.down_done:
                run_slicebed("testbed", "down", "--inventory", str(box.inventory), runs=deployed.runs)


def ovs(node: BoxNode, *argv: str) -> str:
    """An Open vSwitch client against the node's own daemons (its run directory)."""
    return node.local.output(["env", f"OVS_RUNDIR={node.ovs_rundir}", *argv])


def connect_ms(source: BoxNode, target: BoxNode, count: int = 7) -> float:
    """Median time of a TCP connect from ``source`` to ``target``'s sshd: one round trip (SYN, SYN-ACK), each
    direction delayed on its receiving side. (Plain ping timestamps on receive and misses receive-side delay.)"""
    script = ("import socket, sys, time\nfor _ in range(int(sys.argv[2])):\n    t = time.perf_counter()\n"
              "    socket.create_connection((sys.argv[1], 22), 5).close()\n"
              "    print((time.perf_counter() - t) * 1000)\n")
    output = source.local.output(["python3", "-c", script, target.address, str(count)], timeout_s=60)
    return statistics.median(float(line) for line in output.split())


def test_up_installs_the_components_that_need_no_cluster(box_up: DeployedBox) -> None:
    summary = box_up.first_up
    assert summary["failed"] == 0 and summary["changed"] > 0 and not summary["dry_run"], summary


def test_a_second_up_changes_nothing(box_up: DeployedBox) -> None:
    again = box_up.testbed("up")
    assert again["failed"] == 0 and again["ok"] > 0, again
    assert again["changed"] == 0, again


def test_transport_is_a_vxlan_overlay_along_the_links_with_no_flows_of_its_own(box_up: DeployedBox) -> None:
    """Item 1: in lab mode the role creates the bridge and a VXLAN port per link end, and no meters and no flow
    table (ONOS owns them; the local-only tasks fail on lab slices, which have no dscp)."""
    for node in box_up.box.nodes:
        ports = set(ovs(node, "ovs-vsctl", "--timeout=10", "list-ports", BRIDGE).split())
        assert ports == {f"{BOX_TESTBED_PREFIX}vx-{peer}" for peer in VXLAN_PEERS[node.tier]}, (node.name, ports)
        for peer in VXLAN_PEERS[node.tier]:
            port = f"{BOX_TESTBED_PREFIX}vx-{peer}"
            assert ovs(node, "ovs-vsctl", "get", "interface", port, "type").strip() == "vxlan"
            remote = ovs(node, "ovs-vsctl", "get", "interface", port, "options:remote_ip").strip().strip('"')
            assert remote == box_up.box.node(peer).address, (node.name, port, remote)
        assert ovs(node, "ovs-vsctl", "get", "bridge", BRIDGE, "fail_mode").strip() == "secure"
        flows = ovs(node, "ovs-ofctl", "-O", "OpenFlow13", "--no-names", "dump-flows", BRIDGE).splitlines()
        assert [line for line in flows if "actions=" in line] == [], (node.name, flows)
        meters = ovs(node, "ovs-ofctl", "-O", "OpenFlow13", "dump-meters", BRIDGE)
        assert "meter=" not in meters, (node.name, meters)


def test_every_pair_of_tiers_is_delayed(box_up: DeployedBox) -> None:
    """Item 11: edge-central, which no latency link joins, is delayed too (the sum along the links)."""
    measured = {pair: connect_ms(box_up.box.node(pair[0]), box_up.box.node(pair[1])) for pair in ROUND_TRIP_MS}
    for pair, expected in ROUND_TRIP_MS.items():
        assert 0.8 * expected <= measured[pair] <= expected + 20, (pair, expected, measured)


def test_prometheus_on_the_monitoring_server_scrapes_every_node_exporter(box_up: DeployedBox) -> None:
    central = box_up.box.node("central")
    expected = {f"{node.address}:9100" for node in box_up.box.nodes}
    up = scrape_health(box_up.box, 'up{job="node"}', len(expected))
    assert up == dict.fromkeys(expected, "1"), up
    for node in box_up.box.nodes:  # Prometheus only where monitoring_server is
        listening = node.local.output(["ss", "-Hltn", "sport = :9090"])
        assert (node is central) == bool(listening.strip()), (node.name, listening)


def test_status_sees_every_node_and_prometheus(box_up: DeployedBox) -> None:
    status = box_up.testbed("status")
    assert status["up"] is True and status["prometheus"]["ready"] is True, status
    assert status["nodes_answering_ssh"] == dict.fromkeys((node.name for node in box_up.box.nodes), True), status


def test_traffic_programs_run_on_their_nodes_and_prometheus_scrapes_them(box_up: DeployedBox) -> None:
    """Item 12, host form: each slice's app server on the app server tier's node (central), its UE sink on the edge
    node, under PID files; Prometheus scrapes every one of them (the list site.yml computes once)."""
    box = box_up.box
    inventory = open_lab_inventory(box.inventory)
    expected = {"central": {f"app_server-{name}" for name in inventory.slices},
                "edge": {f"ue_sink-{name}" for name in inventory.slices}, "regional": set()}
    targets = set()
    for node in box.nodes:
        started = {path.stem: int(path.read_text()) for path in (node.traffic_dir / "run").glob("*.pid")}
        assert set(started) == expected[node.tier], (node.name, started)
        assert set(started.values()) <= set(namespace_pids(node.netns)), (node.name, started)
        targets |= {f"{node.address}:{port}" for port in listening_ports(node, started.values())}
    assert len(targets) == 2 * len(inventory.slices), targets  # each program's metrics port
    up = scrape_health(box, 'up{job="slicebed-traffic"}', len(targets))
    assert up == dict.fromkeys(targets, "1"), (up, targets)


def test_check_measures_attach_path_and_delay_and_finds_the_slice_without_a_cap(box_up: DeployedBox) -> None:
    """`testbed check --inventory BOX` over SSH and the box's Prometheus: every UE sink attached, the app servers echo
    the hellos (the N3/N6 row), each link delayed as configured; eMBB is capped by its queue on central's underlay
    at its bandwidth_mbps and passes, URLLC has nothing capping it in the box (no ONOS): the check says so and fails."""
    box = box_up.box
    cap = open_lab_inventory(box.inventory).variables.slices[0].bandwidth_mbps
    assert cap is not None
    with underlay_queue(box, "embb", cap):
        time.sleep(ECHO_WINDOW_S)  # the window of hellos the check reads starts with the queue in place
        done = run_slicebed("testbed", "check", "--inventory", str(box.inventory), "--json", runs=box_up.runs,
                            environment=box.ssh_environment, timeout_s=300)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr
    rows = {(row["kind"], row["subject"]): row for row in json.loads(done.stdout)["measurements"]}
    failed = {key for key, row in rows.items() if abs(row["measured"] - row["configured"]) > row["tolerance"]}
    assert failed == {("bandwidth", "urllc: throughput cap")}, [rows[key] for key in failed]
    assert {kind for kind, _ in rows} == {"attach", "path", "delay", "bandwidth"}, rows


def test_a_short_closed_loop_through_the_lab_backend(box_up: DeployedBox, tmp_path: Path) -> None:
    """The lab backend against the box: users through the app server's control port, the CPU allocation into the
    gNB cgroup on edge and the bandwidth into the queue on central, both over SSH, QoS from the box's Prometheus.
    What the loop applied is what the kernel holds, and the sink measured what the allocation let through."""
    box = box_up.box
    spec = yaml.safe_load((REPO / "experiments" / "demo-lab.yaml").read_text())
    spec.update(name="box-loop", rounds=1)
    spec["testbed"]["inventory"] = str(box.inventory)
    embb = spec["slices"][0]
    embb.update(q_thresh=3.0, traffic=[{"kind": "constant", "users": 3}],
                bounds={"cpu_millicores": [10, 400], "bandwidth_mbps": [2, 16]})
    spec["sweep"] = {"users": [1, 3], "cpu_millicores": [10, 400], "bandwidth_mbps": [2, 16], "dwell_s": 6}
    spec["training"].update(epochs=200, settle_s=2)
    spec["validation"].update(window_s=8, settle_s=2)
    path = tmp_path / "box-loop.yaml"
    path.write_text(yaml.safe_dump(spec))
    with gnb_stand_in(box, "embb") as cpu, underlay_queue(box, "embb", 16) as queue:
        loop = run_slicebed("loop", "run", str(path), runs=box_up.runs, environment=box.ssh_environment)
        held = (cpu.read_cpu(), queue.read_bandwidth())
    assert loop.returncode in (0, 1), loop.stdout[-2000:] + loop.stderr  # 1: the level failed in its one round
    run = next(p for p in box_up.runs.iterdir() if "box-loop" in p.name)
    frame = pd.read_csv(run / "dataset-embb.csv")
    assert set(frame["n_users"]) == {1.0, 3.0} and set(frame["bw"]) == {2.0, 16.0}, frame
    assert set(frame["cpu"]) == {10.0, 400.0}, frame
    settled = frame.groupby(["n_users", "cpu", "bw"])["total_bandwidth_usage"].median()
    rate = TRAFFIC["user_rate_mbps"]
    assert settled[(3.0, 400.0, 2.0)] < 2.0 * 1.25, settled  # the queue caps the stream
    assert settled[(3.0, 400.0, 16.0)] > 3 * rate * 0.8, settled  # 16 Mbps carries 3 users
    assert settled[(3.0, 10.0, 16.0)] < settled[(3.0, 400.0, 16.0)] * 0.8, settled  # the sink starves in 10 millicores
    validated = pd.read_parquet(sorted((run / "validation").glob("*.parquet"))[-1])
    last = validated[validated["slice"] == "embb"].iloc[-1]  # the allocation in effect at the end (guard included)
    assert held == pytest.approx((last["cpu"], last["bw"]), rel=1e-3), (held, last)


def test_down_removes_every_bridge_rule_process_and_file_the_roles_made(box_up: DeployedBox) -> None:
    """Last: `testbed down` runs the uninstall plays for real. Left in each node: its sshd, lo and the underlay with
    its default qdisc; in its state directory only logs and Prometheus's data (the roles keep data)."""
    summary = box_up.testbed("down")
    box_up.down_done = True
    assert summary["failed"] == 0 and summary["changed"] > 0, summary
    for node in box_up.box.nodes:
        assert set(node.programs()) == {"sshd"}, (node.name, node.programs())
        links = node.local.output(["ip", "-o", "link", "show"])
        assert sorted(line.split(": ")[1].split("@")[0] for line in links.splitlines()) == ["lo", UNDERLAY_INTERFACE]
        qdiscs = node.local.output(["tc", "qdisc", "show", "dev", UNDERLAY_INTERFACE])
        assert "htb" not in qdiscs and "netem" not in qdiscs, (node.name, qdiscs)
        rules = node.local.output(["iptables", "-t", "mangle", "-S"])
        assert "NFQUEUE" not in rules, (node.name, rules)
        left = {path.relative_to(node.state_dir).parts[0] for path in node.state_dir.rglob("*") if path.is_file()}
        assert left <= {"logs", "prometheus"}, (node.name, left)
        assert not list(node.state_dir.rglob("*.pid")) and not node.ovs_rundir.exists(), node.name



def listening_ports(node: BoxNode, pids: Iterable[int]) -> set[int]:
    """The TCP ports the processes ``pids`` listen on in the node's namespace."""
    wanted = {f"pid={pid}," for pid in pids}
    listing = node.local.output(["ss", "-Hltnp"]).splitlines()
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in listing if any(pid in line for pid in wanted)}


def scrape_health(box: LabBox, query: str, expected: int) -> dict[str, str]:
    """``instance -> value`` of an ``up`` query on the box's Prometheus, once it has ``expected`` targets up (or
    after 10 s)."""
    url = f"http://{box.node('central').address}:9090/api/v1/query"
    up: dict[str, str] = {}
    for _ in Attempts(20, 0.5):
        result = requests.get(url, params={"query": query}, timeout=5).json()["data"]["result"]
        up = {sample["metric"]["instance"]: sample["value"][1] for sample in result}
        if list(up.values()).count("1") >= expected:
            break
    return up
