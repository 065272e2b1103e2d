"""A lab testbed: ``playbooks/site.yml`` over the real nodes of a lab inventory (``testbed_mode: lab``).

The same ``slicebed testbed up|down`` as the local testbed: ``up`` runs every component's install plays (with
``--dry-run``, Ansible's check mode), ``down`` runs their uninstall plays in reverse order (tag ``uninstall``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.deploy.ansible_driver import PlaybookResult, run_playbook
from controller.deploy.local_deployment import DeployError
from controller.testbeds.lab import LabInventory
from core.yamlfile import read_yaml

SITE_PLAYBOOK = "site.yml"


def inventory_mode(path: Path) -> str:
    """``all.vars.testbed_mode`` of an inventory: ``local`` (the default) or ``lab``."""
    document = read_yaml(path)
    try:
        return str(document["all"]["vars"].get("testbed_mode", "local"))
    except (TypeError, KeyError, AttributeError):
        return "local"  # the local inventory loader reports what is wrong with the file


@dataclass
class LabDeployment:
    """One lab testbed, as its inventory describes it."""

    inventory: LabInventory

    @classmethod
    def open(cls, inventory_path: Path) -> LabDeployment:
        return cls(LabInventory(inventory_path))

    def up(self, artifacts_dir: Path, dry_run: bool = False,
           on_task: Callable[[str], None] | None = None) -> PlaybookResult:
        """Install every component (``site.yml``); in check mode only report what would change."""
        return self._site(artifacts_dir, dry_run, on_task, tags=None, action="up")

    def down(self, artifacts_dir: Path, on_task: Callable[[str], None] | None = None) -> PlaybookResult:
        """Uninstall every component, in reverse order (``site.yml --tags uninstall``)."""
        return self._site(artifacts_dir, False, on_task, tags="uninstall", action="down")

    def _site(self, artifacts_dir: Path, dry_run: bool, on_task: Callable[[str], None] | None, tags: str | None,
              action: str) -> PlaybookResult:
        result = run_playbook(SITE_PLAYBOOK, self.inventory.path, {}, artifacts_dir, dry_run, on_task, tags)
        if not result.succeeded:
            raise DeployError(f"testbed {action} failed at {result.first_failure()} "
                              f"(Ansible log: {result.artifacts / 'stdout'})")
        return result
