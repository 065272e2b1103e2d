"""A local-testbed role used alone, outside testbed-up.yml: install, a second install that changes nothing, uninstall.

The monitoring role needs neither root nor namespaces, so it runs here as a user of the role would run it: its
own play, its variables given on the command line, real Prometheus and node exporter on free loopback ports.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import REPO, VENV_BIN, free_port, venv_environment

from controller.deploy.state import pid_alive

PLAYBOOKS = REPO / "playbooks"


def play(path: Path, role: str, tasks_from: str) -> Path:
    """A playbook that applies one entry point of one role to localhost."""
    path.write_text(yaml.safe_dump([{
        "name": f"{role} {tasks_from}", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [{"name": f"The {role} role's {tasks_from} tasks",
                   "ansible.builtin.import_role": {"name": role, "tasks_from": tasks_from}}]}], sort_keys=False))
    return path


def run_play(playbook: Path, variables: dict) -> int:
    """Run ``playbook`` with slicebed's Ansible configuration; return the number of changed tasks (recap)."""
    done = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e", json.dumps(variables)],
        env=venv_environment(ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                             ANSIBLE_PYTHON_INTERPRETER=sys.executable),
        capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", done.stdout).group(1))


@pytest.mark.slow
def test_the_monitoring_role_alone_installs_idempotently_and_uninstalls(tmp_path: Path) -> None:
    prometheus_port, exporter_port = free_port(), free_port()
    variables = {"monitoring_dir": str(tmp_path / "prometheus"), "monitoring_pid_dir": str(tmp_path / "pids"),
                 "monitoring_prometheus_port": prometheus_port, "monitoring_node_exporter_port": exporter_port}
    install, uninstall = play(tmp_path / "install.yml", "monitoring", "main"), play(
        tmp_path / "uninstall.yml", "monitoring", "uninstall")
    try:
        assert run_play(install, variables) > 0
        assert run_play(install, variables) == 0  # a second run changes nothing
        with urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/-/ready", timeout=5) as response:
            assert response.status == 200
        config = yaml.safe_load((tmp_path / "prometheus" / "prometheus.yml").read_text())
        assert config["scrape_configs"][0]["static_configs"][0]["targets"] == [f"127.0.0.1:{exporter_port}"]
        pids = {path.stem: int(path.read_text()) for path in (tmp_path / "pids").glob("*.pid")}
        assert set(pids) == {"prometheus", "node-exporter"} and all(pid_alive(pid) for pid in pids.values())
    finally:
        assert run_play(uninstall, variables) > 0
    assert not any(pid_alive(pid) for pid in pids.values())
    assert list((tmp_path / "pids").glob("*.pid")) == []
    assert run_play(uninstall, variables) == 0  # nothing left to stop
