"""`slicebed testbed` with a lab inventory runs playbooks/site.yml (real Ansible, check mode, on this host).

No lab host is reached: the inventory's three nodes are this machine (``ansible_connection: local``) and its
underlay network is loopback, which facts never list, so site.yml stops at its first preflight check, in check
mode, before any task could change anything. That proves the dispatch, check mode and the one-line failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, assert_one_error_line

from controller.cli import main


@pytest.fixture
def local_lab_inventory(tmp_path: Path) -> Path:
    document = yaml.safe_load((REPO / "inventory" / "lab.example.yml").read_text())
    variables = document["all"]["vars"]
    variables.pop("ansible_ssh_private_key_file")
    variables.update(ansible_connection="local", ansible_become=False, underlay_cidr="127.0.0.0/8",
                     ansible_python_interpreter=sys.executable)
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
    assert "--check" in (stdout.parent / "command").read_text()


@pytest.mark.parametrize("action", ["status", "check"])
def test_lab_status_and_check_say_they_measure_the_local_testbed(
        action: str, local_lab_inventory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["testbed", action, "--inventory", str(local_lab_inventory)]) == 2
    assert_one_error_line(capsys.readouterr().err, f"`testbed {action}` measures the local testbed")
