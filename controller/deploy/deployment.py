"""One contract for deploying a testbed, whatever the inventory describes: preflight, up, status, down.

``testbed_mode: local`` (the default): :class:`~controller.deploy.local_deployment.LocalDeployment`,
namespaces on this host. ``testbed_mode: lab``: :class:`~controller.deploy.lab_deployment.LabDeployment`,
``playbooks/site.yml`` over real nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from controller.deploy.ansible_driver import PlaybookResult
from controller.deploy.inventory import inventory_mode
from controller.deploy.lab_deployment import LabDeployment
from controller.deploy.local_deployment import LocalDeployment


class Deployment(Protocol):
    """A testbed deployed with Ansible from one inventory."""

    @property
    def name(self) -> str:
        """Short name of the testbed (runs are named ``testbed-<action>-<name>``)."""
        ...

    def preflight(self) -> object:
        """Check what ``up`` needs before anything is created; one InputError line on the first problem."""
        ...

    def up(self, artifacts_dir: Path, dry_run: bool = False, on_task: Callable[[str], None] | None = None,
           preflight_done: bool = False) -> PlaybookResult:
        """Build the testbed (in Ansible check mode with ``dry_run``); DeployError naming the failed task."""
        ...

    def status(self) -> dict[str, Any]:
        """What runs now, as plain data (``up``: whether everything answers)."""
        ...

    def down(self, artifacts_dir: Path, on_task: Callable[[str], None] | None = None) -> PlaybookResult:
        """Remove everything ``up`` built."""
        ...


def open_deployment(inventory_path: Path, dataplane: bool = True) -> Deployment:
    """The deployment the inventory describes (``dataplane=False``: a local testbed without data-plane programs)."""
    if inventory_mode(inventory_path) == "lab":
        return LabDeployment.open(inventory_path)
    return LocalDeployment.open(inventory_path, dataplane)
