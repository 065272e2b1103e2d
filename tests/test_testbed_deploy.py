"""The local testbed's deployment: inventory validation, preflight, and real up / second up / check / down.

The integration tests build real namespaces, Open vSwitch, NFQUEUE delay stages, cgroups and Prometheus with their
own prefix (``sbt<random>-``), management subnet and ports, so they never collide with another testbed.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, VENV_BIN, assert_one_error_line, needs_root, proc_stat, venv_environment
from local_testbed import LOCAL_INVENTORY, inventory_hosts, write_local_inventory

from controller.cli import main
from controller.deploy.ansible_driver import DeployError
from controller.deploy.check import Measurement, check_testbed, say_unmetered
from controller.deploy.inventory import load_inventory
from controller.deploy.inventory.programs import slice_programs
from controller.deploy.inventory.tiers import TIERS
from controller.deploy.local_deployment import LocalDeployment
from controller.deploy.preflight import has_netem, require_free_ports, require_root, require_tools
from controller.deploy.state import StateDir
from core.commands import LocalRunner
from core.errors import InputError

# ---- inventory validation (fast) ----

def test_shipped_inventory_is_valid() -> None:
    inventory = load_inventory(LOCAL_INVENTORY)
    assert set(inventory.hosts) == {"edge", "regional", "central", "app", "ue"}
    assert inventory.prefix == "sb-" and inventory.state_dir == Path("/run/slicebed/sb")
    assert inventory.namespaces[0] == "sb-sw" and inventory.bridge == "sb-tr"


def _add_host(document: dict) -> None:
    document["all"]["children"]["nodes"]["children"]["endpoints"]["hosts"]["camera"] = {
        "node_id": 9, "mgmt_address": "10.99.0.9"}


def _drop_ue(document: dict) -> None:
    del document["all"]["children"]["nodes"]["children"]["endpoints"]["hosts"]["ue"]


def _bad_ip(document: dict) -> None:
    inventory_hosts(document)["edge"]["mgmt_address"] = "10.99.0.300"


def _duplicate_id(document: dict) -> None:
    inventory_hosts(document)["ue"]["node_id"] = 1


def _unknown_key(document: dict) -> None:
    document["all"]["vars"]["bandwith_mbps"] = 10


def _jitter(document: dict) -> None:
    document["all"]["vars"]["latency"][0]["jitter_ms"] = 50


def _tier_without_transport(document: dict) -> None:
    del inventory_hosts(document)["regional"]["transport_address"]


def _placement_on_a_missing_tier(document: dict) -> None:
    document["all"]["vars"]["slices"][1]["placement"] = {"upf": "cloud"}


def _latency_loop(document: dict) -> None:
    document["all"]["vars"]["latency"].append({"a": "edge", "b": "central", "delay_ms": 15})


@pytest.mark.parametrize(("edit", "expected"), [
    (_add_host, "unknown host 'camera'"),
    (_drop_ue, "host 'ue' is missing"),
    (_bad_ip, "mgmt_address"),
    (_duplicate_id, "node_id 1 is also"),
    (_unknown_key, "bandwith_mbps"),
    (_jitter, "jitter_ms 50 exceeds delay_ms"),
    (_tier_without_transport, "a tier needs transport_address"),
    (_placement_on_a_missing_tier, "slice urllc: placement upf: unknown tier 'cloud'; the tiers are edge, regional, "
                                   "central"),
    (_latency_loop, "give 2 links that join the tiers"),
])
def test_bad_inventory_is_one_line(tmp_path: Path, edit, expected: str) -> None:
    path = write_local_inventory(tmp_path, edit=edit)
    with pytest.raises(InputError) as caught:
        load_inventory(path)
    assert expected in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_prefix_and_malformed_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="testbed_prefix"):
        load_inventory(write_local_inventory(tmp_path, testbed_prefix="waytoolongprefix-"))
    broken = tmp_path / "broken.yml"
    broken.write_text("all: {vars: [\n")
    with pytest.raises(InputError, match="YAML syntax error"):
        load_inventory(broken)


def test_cli_bad_inventory_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_local_inventory(tmp_path, edit=_add_host)
    assert main(["testbed", "status", "--inventory", str(path)]) == 2
    assert_one_error_line(capsys.readouterr().err, str(path), "camera")


def test_check_says_which_slices_meters_carry_none_of_their_traffic() -> None:
    measured = [Measurement("bandwidth", f"{name}: central->edge meter {meter}", "Mbps", 10, 10, 1, "TCP iperf3")
                for meter, name in ((1, "embb"), (2, "urllc"), (1000, "shared transport"))]
    noted = say_unmetered(measured, {"embb": "regional", "urllc": "edge"})
    assert [m.detail.split("; ")[1:] for m in noted] == [
        [], ["UNMETERED: the slice's UPF is on edge, its traffic does not cross the transport, so this meter (its "
             "bandwidth allocation) limits none of it"], []]
    assert all(m.within_tolerance for m in noted)  # the meter itself works: the check's own flow passes it


def test_programs_never_share_a_port_on_a_node_wherever_the_upfs_are() -> None:
    inventory = load_inventory(LOCAL_INVENTORY)
    for tiers in itertools.product(TIERS, repeat=len(inventory.settings.slices)):
        placement = dict(zip([s.name for s in inventory.settings.slices], tiers, strict=True))
        programs = slice_programs(inventory, placement)
        assert len({(p.host, p.port) for p in programs}) == len(programs)
        for program in programs:
            expected = {"ue_sink": "ue", "ran_emulator": "edge"}.get(program.name, placement[program.slice])
            assert program.host == expected


# ---- preflight (fast) ----

def test_preflight_rejects_non_root() -> None:
    with pytest.raises(InputError, match=r"need root.*sudo"):
        require_root(euid=1000)
    require_root(euid=0)


def test_preflight_names_the_missing_package() -> None:
    with pytest.raises(InputError, match=r"ovs-vswitchd is not installed.*openvswitch-switch"):
        require_tools(which=lambda tool: None if tool == "ovs-vswitchd" else f"/usr/bin/{tool}")


def test_preflight_rejects_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        inventory = load_inventory(write_local_inventory(tmp_path, prometheus_port=taken))
        with pytest.raises(InputError, match=f"prometheus_port {taken} is already taken"):
            require_free_ports(inventory, StateDir(tmp_path / "state"))


# ---- real deployment (slow, root) ----

def _ip_names(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def assert_nothing_left(testbed: LocalDeployment, pids: dict[str, int | None]) -> None:
    prefix = testbed.inventory.prefix
    assert testbed.leftovers() == []
    assert prefix not in _ip_names("ip", "netns", "list")
    assert prefix not in _ip_names("ip", "-br", "link")
    for name, pid in pids.items():
        stat = proc_stat(pid) if pid is not None else None
        assert stat is None or stat[0] in ("Z", "X"), f"{name} (pid {pid}) still runs in state {stat[0]}"
    for hierarchy in ("cpu", "cpuacct", ""):
        assert not Path("/sys/fs/cgroup", hierarchy, f"{prefix}edge").exists()


def assert_delay_stage_fits_the_kernel(testbed: LocalDeployment, processes: set[str]) -> None:
    """tc-netem on the sending side where the kernel has sch_netem, else an NFQUEUE delayer on the receiving side."""
    delayers = {name for name in processes if name.startswith("delayer-")}
    qdiscs = _ip_names("tc", "-n", testbed.inventory.netns("regional"), "qdisc", "show", "dev", "tr0")
    if has_netem(LocalRunner()):
        assert "qdisc netem" in qdiscs and not delayers, (qdiscs, delayers)
    else:
        assert "delayer-edge-from-regional" in delayers and "qdisc netem" not in qdiscs, (qdiscs, delayers)


@pytest.mark.slow
@needs_root
@pytest.mark.usefixtures("exclusive_testbed")
def test_up_is_idempotent_measured_and_down_leaves_nothing(tmp_path: Path) -> None:
    def half_a_core(document: dict) -> None:  # a limit below the machine's 2 CPUs, so that it binds
        inventory_hosts(document)["edge"]["cpu_millicores"] = 4000  # nominal: half a host core at cpu_scale 0.125

    testbed = LocalDeployment.open(write_local_inventory(tmp_path, edit=half_a_core), dataplane=False)
    try:
        dry = testbed.up(tmp_path / "dry-run", dry_run=True)
        assert dry.succeeded and any("namespace" in change for change in dry.changes)
        assert testbed.leftovers() == []  # check mode changed nothing

        first = testbed.up(tmp_path / "up1")
        assert first.succeeded and first.total("changed") > 0
        second = testbed.up(tmp_path / "up2")
        assert second.succeeded and second.total("changed") == 0, second.changes

        status = testbed.status()
        assert status["up"] and status["ovs_bridge"] and status["prometheus"]["ready"]
        assert {"ovs-vswitchd", "prometheus", "node-exporter"} <= set(status["processes"])
        assert_delay_stage_fits_the_kernel(testbed, set(status["processes"]))

        measurements = {m.kind: m for m in check_testbed(testbed)}
        for kind in ("bandwidth", "delay", "cpu"):
            assert measurements[kind].within_tolerance, measurements[kind]
    finally:
        pids = testbed.state.pids()
        testbed.down(tmp_path / "down")
    assert_nothing_left(testbed, pids)


@pytest.mark.slow
@needs_root
@pytest.mark.usefixtures("exclusive_testbed")
def test_down_after_a_half_finished_up_and_automatic_cleanup(tmp_path: Path) -> None:
    testbed = LocalDeployment.open(write_local_inventory(tmp_path), dataplane=False)
    broken_prometheus = {"monitoring_prometheus_binary": "/bin/false"}
    with pytest.raises(DeployError, match=r"Run Prometheus.*exited with status 1"):
        testbed.up(tmp_path / "half", remove_on_failure=False, overrides=broken_prometheus)
    pids = testbed.state.pids()
    assert testbed.leftovers() and pids.get("ovs-vswitchd")  # it died halfway: namespaces and OvS exist
    testbed.down(tmp_path / "down")
    assert_nothing_left(testbed, pids)

    with pytest.raises(DeployError, match="half-built testbed was removed"):
        testbed.up(tmp_path / "auto", overrides={"ovs_transport_schema": "/nonexistent.ovsschema"})
    assert testbed.leftovers() == []


def test_playbooks_pass_ansible_syntax_check(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "--syntax-check", "-i", str(LOCAL_INVENTORY),
         "-e", f"testbed_state_dir={tmp_path}", "testbed-up.yml", "testbed-down.yml", "testbed-place.yml"],
        cwd=REPO / "playbooks", env=venv_environment(ANSIBLE_CONFIG=str(REPO / "playbooks" / "ansible.cfg")),
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
