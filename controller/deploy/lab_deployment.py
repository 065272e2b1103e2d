"""A lab testbed: ``playbooks/site.yml`` over the real nodes of a lab inventory (``testbed_mode: lab``).

The same ``slicebed testbed up|down|status`` as the local testbed: ``up`` runs every component's install plays
(with ``--dry-run``, Ansible's check mode), ``down`` runs their uninstall plays in reverse order (tag
``uninstall``), ``status`` asks whether every node answers on its SSH port and Prometheus is ready.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors.prometheus import prometheus_ready
from controller.deploy.ansible_driver import PlaybookResult, run_playbook
from controller.deploy.inventory.lab import COMPONENTS, LabInventory, open_lab_inventory
from controller.deploy.inventory.tiers import TIERS
from core.errors import InputError

SITE_PLAYBOOK = "site.yml"
SITE_GROUPS = (*TIERS, "kube_control_plane", "sdn_controller", "monitoring_server")
"""The groups site.yml installs components on: each needs a host."""
NODE_GROUPS = TIERS
SSH_PORT = 22
KUBECONFIG_VARIABLE = "kubernetes_kubeconfig_out"
"""The kubernetes role's variable naming where the admin kubeconfig is handed off (on this machine)."""


def answers(address: str, port: int, timeout_s: float = 2.0) -> bool:
    """Whether a TCP connection to ``address:port`` is accepted within ``timeout_s``."""
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            return True
    except OSError:
        return False


@dataclass
class LabDeployment:
    """One lab testbed, as its inventory describes it."""

    inventory: LabInventory
    name = "lab"

    @classmethod
    def open(cls, inventory_path: Path) -> LabDeployment:
        """The lab an inventory describes; one InputError line if it still holds the example's documentation
        addresses (nothing is run against those)."""
        return cls(open_lab_inventory(inventory_path))

    def preflight(self) -> None:
        """Every group site.yml installs on has a host (one InputError line naming the first empty group)."""
        for group in SITE_GROUPS:
            if not self.inventory.groups.get(group):
                raise InputError(f"{self.inventory.path}: group {group} has no hosts; site.yml installs on the "
                                 f"groups {', '.join(SITE_GROUPS)}")

    @property
    def components(self) -> list[str]:
        """The inventory's ``testbed_components``, in site.yml's order."""
        return [name for name in COMPONENTS if name in self.inventory.variables.testbed_components]

    def up(self, artifacts_dir: Path, dry_run: bool = False, on_task: Callable[[str], None] | None = None,
           preflight_done: bool = False) -> PlaybookResult:
        """Install the inventory's components (``site.yml --tags`` their names; every component by default); in
        check mode only report what would change."""
        if not preflight_done:
            self.preflight()
        return self._site(artifacts_dir, dry_run, on_task, tags=",".join(self.components)).require_success("up")

    def down(self, artifacts_dir: Path, on_task: Callable[[str], None] | None = None) -> PlaybookResult:
        """Uninstall the inventory's components, in site.yml's reverse order (``--tags <name>_uninstall``)."""
        tags = ",".join(f"{name}_uninstall" for name in self.components)
        return self._site(artifacts_dir, False, on_task, tags=tags).require_success("down")

    def status(self) -> dict[str, Any]:
        """Whether each node accepts connections on its SSH port and the monitoring server's Prometheus is ready."""
        variables = self.inventory.variables
        port = variables.lab_backend.ssh.port if variables.lab_backend is not None else SSH_PORT
        nodes = {name: answers(self.inventory.addresses[name], port)
                 for group in NODE_GROUPS for name in self.inventory.groups.get(group, [])}
        prometheus = f"http://{self.inventory.first_host('monitoring_server')}:{variables.prometheus_port}"
        ready = prometheus_ready(prometheus)
        return {"mode": "lab", "inventory": str(self.inventory.path), "up": all(nodes.values()) and ready,
                "nodes_answering_ssh": nodes, "prometheus": {"url": prometheus, "ready": ready}}

    def _site(self, artifacts_dir: Path, dry_run: bool, on_task: Callable[[str], None] | None,
              tags: str | None) -> PlaybookResult:
        """site.yml with the kubeconfig hand-off: the kubernetes role writes the cluster's admin kubeconfig to
        :attr:`LabInventory.kubeconfig`, and the later plays' Kubernetes clients on this machine read it."""
        kubeconfig = str(self.inventory.kubeconfig.resolve())
        return run_playbook(SITE_PLAYBOOK, self.inventory.path, {KUBECONFIG_VARIABLE: kubeconfig}, artifacts_dir,
                            dry_run, on_task, tags, environment={"K8S_AUTH_KUBECONFIG": kubeconfig,
                                                                 "KUBECONFIG": kubeconfig})
