"""The lab's kubeconfig hand-off (issue 16, item 10), run by real Ansible on this host.

The inventory is what `slicebed provision` writes (``write_inventory``) for VMs behind floating IPs; its hosts
are reached over the local connection. The kubernetes role's kubeadm configuration must put every address the
inventory reaches the hosts at into the API server certificate (``apiServer.certSANs``), and its hand-off tasks
must copy the control plane's admin.conf to this machine, mode 0600, pointed at the reachable address.
`slicebed testbed up` passes that path (next to the inventory) to site.yml and to the plays' Kubernetes clients.
"""

from __future__ import annotations

import base64
import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, VENV_BIN, venv_environment

from controller.deploy.inventory.lab import load_lab_inventory
from controller.deploy.provision import Host, write_inventory
from controller.deploy.topology import load_topology

ROLE = REPO / "playbooks" / "roles" / "kubernetes"
FLOATING = {"edge": "203.0.113.11", "regional": "203.0.113.21", "central": "203.0.113.31"}  # RFC 5737
UNDERLAY_ADDRESS = "10.20.0.31"


@pytest.fixture
def provisioned_inventory(tmp_path: Path) -> Path:
    """The inventory provision writes for three VMs with floating IPs, its hosts on the local connection."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    topology = yaml.safe_load((REPO / "topologies" / "lab.example.yaml").read_text())
    topology.update(ssh_public_key=str(tmp_path / "id.pub"), external_network="provider",
                    inventory_template=str(REPO / "inventory" / "lab.example.yml"))
    (tmp_path / "topology.yaml").write_text(yaml.safe_dump(topology))
    hosts = [Host(f"lab-{tier}-1", tier, address) for tier, address in FLOATING.items()]  # type: ignore[arg-type]
    inventory = tmp_path / "mylab.yml"
    write_inventory(load_topology(tmp_path / "topology.yaml"), hosts, inventory, "lab")
    return inventory


def run_on_control_plane(inventory: Path, tasks: list[dict], extra: dict) -> subprocess.CompletedProcess[str]:
    play = inventory.with_name("play.yml")
    play.write_text(yaml.safe_dump([{
        "name": "kubernetes role parts", "hosts": "kube_control_plane", "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml")], "tasks": tasks}]))
    variables = {"ansible_connection": "local", "ansible_become": False, "ansible_python_interpreter": sys.executable,
                 **extra}
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(play),
                           "-e", json.dumps(variables)], capture_output=True, text=True, check=False, timeout=300,
                          env=venv_environment(ANSIBLE_ROLES_PATH=str(REPO / "playbooks" / "roles"),
                                               ANSIBLE_NOCOLOR="1"))


@pytest.mark.slow
def test_api_certificate_names_every_address_provision_writes(provisioned_inventory: Path, tmp_path: Path) -> None:
    rendered = tmp_path / "kubeadm.yaml"
    result = run_on_control_plane(provisioned_inventory, [{"name": "Render", "ansible.builtin.template": {
        "src": str(ROLE / "templates" / "kubeadm-init.yaml.j2"), "dest": str(rendered), "mode": "0600"}}],
        {"kubernetes_node_ip": UNDERLAY_ADDRESS, "kubernetes_tier": "central"})
    assert result.returncode == 0, result.stdout + result.stderr
    cluster = next(doc for doc in yaml.safe_load_all(rendered.read_text()) if doc["kind"] == "ClusterConfiguration")
    assert sorted(cluster["apiServer"]["certSANs"]) == sorted(FLOATING.values())
    assert cluster["controlPlaneEndpoint"] == f"{UNDERLAY_ADDRESS}:6443"  # the nodes join over the underlay


ADMIN_CONF = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://{address}:6443
  name: kubernetes
contexts:
- context: {{cluster: kubernetes, user: kubernetes-admin}}
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
users:
- name: kubernetes-admin
  user: {{client-certificate-data: {ca}, client-key-data: {ca}}}
"""


@pytest.mark.slow
def test_admin_kubeconfig_is_handed_off_next_to_the_inventory(provisioned_inventory: Path, tmp_path: Path) -> None:
    """kubeadm's admin.conf names the underlay address; the copy names the floating IP, mode 0600, once."""
    admin = tmp_path / "admin.conf"
    data = base64.b64encode(b"not a real certificate").decode()
    admin.write_text(ADMIN_CONF.format(ca=data, address=UNDERLAY_ADDRESS))
    tasks = [{"name": "Hand-off", "ansible.builtin.include_role": {"name": "kubernetes",
                                                                    "tasks_from": "kubeconfig"}}]
    first = run_on_control_plane(provisioned_inventory, tasks, {"kubernetes_admin_conf": str(admin)})
    assert first.returncode == 0, first.stdout + first.stderr
    handed = provisioned_inventory.with_suffix(".kubeconfig")
    assert handed == load_lab_inventory(provisioned_inventory).kubeconfig  # where the lab backend reads it
    assert stat.S_IMODE(handed.stat().st_mode) == 0o600
    assert handed.read_text() == ADMIN_CONF.format(ca=data, address=FLOATING["central"])
    assert data not in first.stdout  # the client key is never logged
    second = run_on_control_plane(provisioned_inventory, tasks, {"kubernetes_admin_conf": str(admin)})
    assert re.search(r"lab-central-1\s+: ok=\d+\s+changed=0 ", second.stdout), second.stdout


@pytest.mark.slow
def test_lab_up_passes_the_kubeconfig_to_site_yml_and_its_kubernetes_clients(tmp_path: Path) -> None:
    """`testbed up` on a lab: site.yml (here stopping at its first check: the nodes are loopback) gets the
    hand-off path as kubernetes_kubeconfig_out and as the environment of kubernetes.core (K8S_AUTH_KUBECONFIG)."""
    from helpers import lab_example_on_loopback

    from controller.cli import main

    document = lab_example_on_loopback()
    document["all"]["vars"].update(ansible_connection="local", ansible_become=False,
                                   ansible_python_interpreter=sys.executable)
    inventory = tmp_path / "mylab.yml"
    inventory.write_text(yaml.safe_dump(document))
    runs = tmp_path / "runs"
    assert main(["--quiet", "--runs-dir", str(runs), "testbed", "up", "--inventory", str(inventory), "--dry-run"]) == 2
    (command,) = runs.glob("*/ansible/artifacts/*/command")
    recorded = json.loads(command.read_text())
    argv = recorded["command"]
    expected = str(tmp_path / "mylab.kubeconfig")
    assert json.loads(argv[argv.index("-e") + 1]) == {"kubernetes_kubeconfig_out": expected}
    assert recorded["env"]["K8S_AUTH_KUBECONFIG"] == expected == recorded["env"]["KUBECONFIG"]
