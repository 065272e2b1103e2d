"""The local actuators on real kernel objects: a cgroup, and an Open vSwitch bridge in the netdev datapath.

Every object carries this test run's prefix and is removed by name/PID at the end: the cgroup, the
namespaces and veths, the bridge, and the ovsdb-server / ovs-vswitchd started here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from controller.actuators.base import ActuatorError, Interval
from controller.actuators.cgroup import CgroupCpuActuator, attach
from controller.actuators.ovs import METER_BURST_FRACTION, SHARED_METER_ID, OvsMeterActuator, OvsQueueActuator
from core.commands import CommandError, LocalRunner
from core.errors import InputError

PREFIX = f"sbt{os.getpid() % 100000}"  # short: interface names are at most 15 characters
SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def sh(*argv: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          env={**os.environ, **env} if env else None).stdout


@pytest.fixture
def cgroup() -> Iterator[CgroupCpuActuator]:
    group = CgroupCpuActuator(LocalRunner(), f"{PREFIX}-cpu", Interval(500, 4000), scale=0.25)
    group.create()
    try:
        yield group
    finally:
        group.remove()


def test_cgroup_sets_the_quota_reads_it_back_and_rejects_out_of_bounds(cgroup: CgroupCpuActuator) -> None:
    assert cgroup.set_cpu(2000) == 2000
    if cgroup.group.hierarchy.version == 1:
        assert Path(cgroup.path, "cpu.cfs_quota_us").read_text().strip() == "50000"  # 2000 x 0.25 of a core
    else:
        assert Path(cgroup.path, "cpu.max").read_text().split() == ["50000", "100000"]
    assert cgroup.read_cpu() == 2000
    with pytest.raises(InputError, match=r"cpu_millicores 4500 is outside the allowed \[500, 4000\]"):
        cgroup.set_cpu(4500)
    assert cgroup.read_cpu() == 2000  # nothing was written


def test_cgroup_attach_moves_a_process_once(cgroup: CgroupCpuActuator) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert attach(LocalRunner(), cgroup.path.rsplit("/", 1)[1], child.pid)
        assert child.pid in cgroup.processes()
        assert not attach(LocalRunner(), cgroup.path.rsplit("/", 1)[1], child.pid)  # already there: no change
    finally:
        child.kill()
        child.wait()
    with pytest.raises(ActuatorError, match="does not exist"):
        attach(LocalRunner(), f"{PREFIX}-absent", 1)


def test_unlimited_cgroup_reads_as_infinite(cgroup: CgroupCpuActuator) -> None:
    assert math.isinf(cgroup.read_cpu())


@dataclass
class Switch:
    """A private ovsdb-server + ovs-vswitchd and a netdev bridge with two namespaces attached."""

    rundir: Path
    bridge: str
    namespaces: tuple[str, str]
    ports: tuple[str, str]

    @property
    def target(self) -> str:
        return f"unix:{self.rundir}/{self.bridge}.mgmt"

    @property
    def vsctl(self) -> list[str]:
        return ["ovs-vsctl", f"--db=unix:{self.rundir}/db.sock"]


@pytest.fixture
def switch(tmp_path: Path, exclusive_testbed: None) -> Iterator[Switch]:
    """A private Open vSwitch with two namespaces (measures rates: held while no other test session runs)."""
    if shutil.which("ovs-vswitchd") is None or not SCHEMA.exists():
        pytest.fail("Open vSwitch is not installed (apt-get install openvswitch-switch)")
    rundir = tmp_path / "ovs"
    rundir.mkdir()
    bridge, namespaces = f"{PREFIX}br", (f"{PREFIX}-a", f"{PREFIX}-b")
    ports = (f"{PREFIX}pa", f"{PREFIX}pb")
    pids: list[Path] = []
    ovs_env = {"OVS_RUNDIR": str(rundir), "OVS_DBDIR": str(rundir), "OVS_LOGDIR": str(rundir)}
    try:
        sh("ovsdb-tool", "create", str(rundir / "conf.db"), str(SCHEMA))
        sh("ovsdb-server", f"--remote=punix:{rundir}/db.sock", f"--pidfile={rundir}/ovsdb-server.pid", "--detach",
           f"--log-file={rundir}/ovsdb-server.log", f"--unixctl={rundir}/ovsdb-server.ctl", str(rundir / "conf.db"),
           env=ovs_env)
        pids.append(rundir / "ovsdb-server.pid")
        vsctl = ["ovs-vsctl", f"--db=unix:{rundir}/db.sock"]
        sh(*vsctl, "--no-wait", "init")
        sh("ovs-vswitchd", f"unix:{rundir}/db.sock", f"--pidfile={rundir}/ovs-vswitchd.pid", "--detach",
           f"--log-file={rundir}/ovs-vswitchd.log", f"--unixctl={rundir}/ovs-vswitchd.ctl", env=ovs_env)
        pids.append(rundir / "ovs-vswitchd.pid")
        sh(*vsctl, "add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev",
           "protocols=OpenFlow10,OpenFlow13")
        for index, (namespace, port) in enumerate(zip(namespaces, ports, strict=True)):
            sh("ip", "netns", "add", namespace)
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            sh("ip", "link", "set", port, "up")
            sh("ethtool", "-K", port, "tx", "off")
            sh("ip", "netns", "exec", namespace, "ethtool", "-K", "eth0", "tx", "off")
            sh("ip", "-n", namespace, "addr", "add", f"10.250.0.{index + 1}/24", "dev", "eth0")
            sh("ip", "-n", namespace, "link", "set", "eth0", "up")
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
            sh(*vsctl, "add-port", bridge, port)
        yield Switch(rundir, bridge, namespaces, ports)
    finally:
        if pids:  # the netdev bridge's own interface outlives ovs-vswitchd unless the bridge is deleted first
            subprocess.run(["ovs-vsctl", f"--db=unix:{rundir}/db.sock", "--timeout=10", "--if-exists", "del-br",
                            bridge], capture_output=True, check=False)
        for namespace in namespaces:  # deleting a namespace deletes its veth ends and their peers
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        for pid_file in reversed(pids):
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
        time.sleep(0.3)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        assert not Path("/sys/class/net", bridge).exists()


def test_meter_is_created_changed_read_back_and_bounds_checked(switch: Switch) -> None:
    meter = OvsMeterActuator(LocalRunner(), switch.target, 3, Interval(5, 40))
    with pytest.raises(ActuatorError, match="meter 3 does not exist"):
        meter.read_bandwidth()
    assert meter.set_bandwidth(12.5) == 12.5
    assert "rate=12500 burst_size=3125" in sh("ovs-ofctl", "-O", "OpenFlow13", "dump-meters", switch.target)
    assert meter.set_bandwidth(40) == 40
    assert meter.read_bandwidth() == 40
    with pytest.raises(InputError, match=r"bandwidth_mbps 4 is outside the allowed \[5, 40\]"):
        meter.set_bandwidth(4)
    assert meter.read_bandwidth() == 40


def test_testbed_playbook_meters_burst_like_the_actuator() -> None:
    """`testbed up` creates the meters (Ansible), the actuator changes them: both with the same burst."""
    defaults = yaml.safe_load((REPO / "playbooks" / "roles" / "ovs_transport" / "defaults" / "main.yml").read_text())
    assert defaults["ovs_transport_meter_burst_fraction"] == METER_BURST_FRACTION == 0.25
    assert defaults["ovs_transport_shared_meter"] == SHARED_METER_ID  # testbed check measures the role's meter


def test_meter_failure_names_the_switch() -> None:
    meter = OvsMeterActuator(LocalRunner(), f"unix:/nonexistent/{PREFIX}.mgmt", 1, Interval(5, 40))
    with pytest.raises(CommandError, match="ovs-ofctl"):
        meter.set_bandwidth(10)


def _iperf_mbps(switch: Switch, seconds: int, offered_mbps: int) -> float:
    """UDP goodput from namespace a to b, as the iperf3 server in b measured it."""
    server = subprocess.Popen(["ip", "netns", "exec", switch.namespaces[1], "iperf3", "-s", "-1", "-p", "5299"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        report = json.loads(sh("ip", "netns", "exec", switch.namespaces[0], "iperf3", "-c", "10.250.0.2", "-p", "5299",
                               "-u", "-b", f"{offered_mbps}M", "-l", "1200", "-t", str(seconds), "-J"))
    finally:
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return report["end"]["sum"]["bits_per_second"] * (1 - report["end"]["sum"]["lost_percent"] / 100) / 1e6


@pytest.mark.slow
def test_meter_caps_the_traffic_it_is_attached_to(switch: Switch) -> None:
    meter = OvsMeterActuator(LocalRunner(), switch.target, 1, Interval(5, 40))
    meter.set_bandwidth(10)
    sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", switch.target,
       "priority=100,ip,nw_dst=10.250.0.2,actions=meter:1,NORMAL")
    sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", switch.target, "priority=0,actions=NORMAL")
    capped = _iperf_mbps(switch, 4, offered_mbps=40)
    assert capped == pytest.approx(10, rel=0.15)
    meter.set_bandwidth(20)
    assert _iperf_mbps(switch, 4, offered_mbps=40) == pytest.approx(20, rel=0.15)


def test_queue_is_discovered_by_slice_tag_set_and_read_back_from_the_kernel(switch: Switch) -> None:
    port = switch.ports[0]
    sh(*switch.vsctl, "--", "set", "port", port, "qos=@q", "--", "--id=@q", "create", "qos", "type=linux-htb",
       "other-config:max-rate=100000000", "queues:0=@q0", "queues:4=@q4",
       "--", "--id=@q0", "create", "queue", "other-config:max-rate=50000000",
       "--", "--id=@q4", "create", "queue", "other-config:max-rate=20000000", "external_ids:slicebed-slice=embb")
    queue = OvsQueueActuator(LocalRunner(), switch.vsctl, port, "embb", Interval(5, 50))
    assert queue.queue_id == 4
    assert queue.read_bandwidth() == 20
    assert queue.set_bandwidth(32.5) == pytest.approx(32.5)
    assert "ceil 32500Kbit" in sh("tc", "class", "show", "dev", port, "classid", "1:5")
    with pytest.raises(InputError, match="outside the allowed"):
        queue.set_bandwidth(60)
    with pytest.raises(ActuatorError, match="no queue has external_ids:slicebed-slice=urllc"):
        OvsQueueActuator(LocalRunner(), switch.vsctl, port, "urllc", Interval(5, 50))
    with pytest.raises(ActuatorError, match="has no QoS"):
        OvsQueueActuator(LocalRunner(), switch.vsctl, switch.ports[1], "embb", Interval(5, 50))
