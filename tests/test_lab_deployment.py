"""`slicebed testbed` with a lab inventory runs playbooks/site.yml (real Ansible, check mode, on this host).

No lab host is reached: the inventory's three nodes are this machine (``ansible_connection: local``) and its
underlay network is loopback, which facts never list, so site.yml stops at its first preflight check, in check
mode, before any task could change anything. That proves the dispatch, check mode and the one-line failure.
`testbed status` on a lab asks the nodes (here: loopback) and the monitoring server's real Prometheus.
"""

from __future__ import annotations

import json
import socket
import sys
from ipaddress import IPv4Network, ip_address
from pathlib import Path

import pytest
import yaml
from helpers import REPO, assert_one_error_line, lab_example_on_loopback
from prometheus_process import PrometheusProcess

from controller.actuators.base import Interval
from controller.cli import main
from controller.deploy.lab_deployment import LabDeployment
from controller.testbeds.lab import open_lab_testbed
from core.errors import InputError

DOC_NET = IPv4Network("192.0.2.0/24")  # RFC 5737 TEST-NET-1


@pytest.fixture
def local_lab_inventory(tmp_path: Path) -> Path:
    document = lab_example_on_loopback()
    variables = document["all"]["vars"]
    variables.pop("ansible_ssh_private_key_file")
    variables.update(ansible_connection="local", ansible_become=False, ansible_python_interpreter=sys.executable)
    path = tmp_path / "lab.yml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.slow
def test_lab_up_check_runs_site_yml_and_stops_at_its_preflight(
        local_lab_inventory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    status = main(["--quiet", "--runs-dir", str(runs), "testbed", "up", "--inventory", str(local_lab_inventory),
                   "--dry-run"])
    assert status == 2
    assert_one_error_line(capsys.readouterr().err,
                          "slicebed: error: testbed up failed at Check the node's underlay address",
                          "needs an IPv4 address in underlay_cidr 127.0.0.0/8")
    (run,) = runs.iterdir()
    assert run.name.split("-")[1:4] == ["testbed", "up", "lab"]
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["status"] == "failed"
    (stdout,) = (run / "ansible" / "artifacts").glob("*/stdout")
    command = (stdout.parent / "command").read_text()
    assert "--check" in command
    assert "kubernetes,ovs_transport,netem,open5gs,ran,onos,traffic,monitoring" in command  # every component by default


def test_lab_check_logs_in_as_the_lab_backend(local_lab_inventory: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`testbed check` on a lab (tests/test_lab_check.py measures one) reaches the nodes with the backend's SSH key."""
    monkeypatch.delenv("SLICEBED_LAB_SSH_KEY", raising=False)
    assert main(["testbed", "check", "--inventory", str(local_lab_inventory)]) == 2
    assert_one_error_line(capsys.readouterr().err, "set SLICEBED_LAB_SSH_KEY to the SSH private key of the lab nodes")


def test_lab_status_asks_the_nodes_and_prometheus(local_lab_inventory: Path, prometheus: PrometheusProcess,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Every node is this host (127.0.0.1); a listening socket stands in for their sshd, Prometheus is real."""
    document = yaml.safe_load(local_lab_inventory.read_text())
    for tier in ("edge", "regional", "central"):
        for host in document["all"]["children"][tier]["hosts"].values():
            host["ansible_host"] = "127.0.0.1"
    document["all"]["vars"]["prometheus_port"] = prometheus.port
    with socket.create_server(("127.0.0.1", 0)) as sshd:
        document["all"]["vars"]["lab_backend"]["ssh"] = {"port": sshd.getsockname()[1]}
        local_lab_inventory.write_text(yaml.safe_dump(document))
        assert main(["testbed", "status", "--inventory", str(local_lab_inventory), "--json"]) == 0
        answering = json.loads(capsys.readouterr().out)
    assert answering["up"] is True and answering["mode"] == "lab"
    assert answering["nodes_answering_ssh"] == {"edge-1": True, "regional-1": True, "central-1": True}
    assert answering["prometheus"] == {"url": prometheus.url, "ready": True}
    prometheus.stop()
    assert main(["testbed", "status", "--inventory", str(local_lab_inventory), "--json"]) == 0  # nothing answers now
    silent = json.loads(capsys.readouterr().out)
    assert silent["up"] is False and not any(silent["nodes_answering_ssh"].values())
    assert silent["prometheus"]["ready"] is False


def test_lab_up_refuses_an_inventory_without_a_monitoring_server(local_lab_inventory: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    document = yaml.safe_load(local_lab_inventory.read_text())
    del document["all"]["children"]["monitoring_server"]
    local_lab_inventory.write_text(yaml.safe_dump(document))
    runs = tmp_path / "runs"
    assert main(["--runs-dir", str(runs), "testbed", "up", "--inventory", str(local_lab_inventory)]) == 2
    assert_one_error_line(capsys.readouterr().err, "group monitoring_server has no hosts")
    assert not runs.exists()  # refused before the run directory


def test_lab_components_choose_site_yml_plays_in_its_order(local_lab_inventory: Path) -> None:
    """`testbed up` runs the install plays of ``testbed_components`` (by tag), `down` their uninstall plays."""
    document = yaml.safe_load(local_lab_inventory.read_text())
    document["all"]["vars"]["testbed_components"] = ["monitoring", "netem"]
    local_lab_inventory.write_text(yaml.safe_dump(document))
    assert LabDeployment.open(local_lab_inventory).components == ["netem", "monitoring"]


def test_lab_up_refuses_an_unknown_component(local_lab_inventory: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    document = yaml.safe_load(local_lab_inventory.read_text())
    document["all"]["vars"]["testbed_components"] = ["netem", "grafana"]
    local_lab_inventory.write_text(yaml.safe_dump(document))
    runs = tmp_path / "runs"
    assert main(["--runs-dir", str(runs), "testbed", "up", "--inventory", str(local_lab_inventory)]) == 2
    assert_one_error_line(capsys.readouterr().err, f"{local_lab_inventory}", "testbed_components", "grafana")
    assert not runs.exists()


def test_the_example_inventory_holds_only_documentation_addresses() -> None:
    """RFC 5737: an unedited example must reach nobody (a private range could be someone's host)."""
    document = yaml.safe_load((REPO / "inventory" / "lab.example.yml").read_text())
    hosts = [host["ansible_host"] for tier in ("edge", "regional", "central")
             for host in document["all"]["children"][tier]["hosts"].values()]
    assert hosts and all(ip_address(host) in DOC_NET for host in hosts)
    assert IPv4Network(document["all"]["vars"]["underlay_cidr"]).subnet_of(DOC_NET)


@pytest.mark.parametrize("action", [["up", "--dry-run"], ["up"], ["down"]])
def test_lab_up_refuses_the_example_inventory_as_it_stands(action: list[str], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    example = REPO / "inventory" / "lab.example.yml"
    assert main(["--runs-dir", str(runs), "testbed", *action, "--inventory", str(example)]) == 2
    assert_one_error_line(capsys.readouterr().err, f"slicebed: error: {example}: ", "documentation address",
                          "RFC 5737", f"edit {example}")
    assert not runs.exists()  # refused before anything: no run, no SSH connection


def test_the_lab_backend_refuses_the_example_inventory_as_it_stands() -> None:
    """`loop run --testbed lab` opens the lab backend: it refuses documentation addresses before any SSH."""
    example = REPO / "inventory" / "lab.example.yml"
    with pytest.raises(InputError, match=r"documentation address.*RFC 5737.*edit .*lab\.example\.yml"):
        open_lab_testbed(example, {"embb": (Interval(500, 4000), Interval(5, 40))})
