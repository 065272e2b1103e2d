"""The lab in a box (issue 16): `slicebed testbed up|down --inventory` run playbooks/site.yml for real, over SSH,
against three namespace nodes (tests/lab_box.py) with the components that need no cluster: the OvS transport in lab
mode, the delay between every pair of tiers and monitoring.

One box and one `testbed up` for the module; the tests run in file order, the last one brings the box down. More
components that need no cluster (the lab traffic server and UE sinks) join the box through ``BOX_COMPONENTS`` and
tests on ``box_up`` (its inventory, its SSH runners: ``LabBox.runner``, ``LabBox.ssh_environment`` for the lab
backend).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from helpers import needs_root, run_slicebed
from lab_box import BOX_TESTBED_PREFIX, UNDERLAY_INTERFACE, BoxNode, LabBox, lab_box

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
    url = f"http://{central.address}:9090/api/v1/query"
    expected = {f"{node.address}:9100" for node in box_up.box.nodes}
    up: dict[str, str] = {}
    for _ in Attempts(20, 0.5):
        result = requests.get(url, params={"query": 'up{job="node"}'}, timeout=5).json()["data"]["result"]
        up = {sample["metric"]["instance"]: sample["value"][1] for sample in result}
        if up == dict.fromkeys(expected, "1"):
            break
    assert up == dict.fromkeys(expected, "1"), up
    for node in box_up.box.nodes:  # Prometheus only where monitoring_server is
        listening = node.local.output(["ss", "-Hltn", "sport = :9090"])
        assert (node is central) == bool(listening.strip()), (node.name, listening)


def test_status_sees_every_node_and_prometheus(box_up: DeployedBox) -> None:
    status = box_up.testbed("status")
    assert status["up"] is True and status["prometheus"]["ready"] is True, status
    assert status["nodes_answering_ssh"] == dict.fromkeys((node.name for node in box_up.box.nodes), True), status


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

