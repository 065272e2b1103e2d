"""Bring the local testbed up and down with Ansible, and report its status and leftovers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.prometheus import prometheus_ready
from controller.deploy.ansible_driver import PlaybookResult, run_playbook
from controller.deploy.inventory import LocalInventory, load_inventory
from controller.deploy.inventory.programs import programs_variable
from controller.deploy.inventory.tiers import Tier
from controller.deploy.preflight import KernelFeatures, preflight, require_root
from controller.deploy.state import StateDir, current_placement, pid_alive
from core.cgroups import find_cpu_hierarchy
from core.commands import CommandRunner, LocalRunner

UP_PLAYBOOK = "testbed-up.yml"
DOWN_PLAYBOOK = "testbed-down.yml"


@dataclass
class LocalDeployment:
    """One local testbed, named by its inventory's prefix."""

    inventory: LocalInventory
    dataplane: bool = True  # False: transport, delay and monitoring only (no data-plane programs)
    runner: CommandRunner = field(default_factory=LocalRunner)  # this host

    @classmethod
    def open(cls, inventory_path: str | Path, dataplane: bool = True) -> LocalDeployment:
        return cls(load_inventory(inventory_path), dataplane)

    @property
    def name(self) -> str:
        return self.inventory.prefix.rstrip("-")

    @property
    def state(self) -> StateDir:
        return StateDir(self.inventory.state_dir)

    def placement(self) -> dict[str, Tier]:
        """Each slice's UPF tier: the one recorded by a running testbed, else the inventory's."""
        return current_placement(self.inventory)

    def extravars(self, placement: dict[str, Tier] | None = None) -> dict[str, Any]:
        """The playbooks' variables: the state directory and every program's host and port (``placement``: each
        slice's UPF tier, by default the current one)."""
        return {"testbed_state_dir": str(self.inventory.state_dir), "testbed_dataplane": self.dataplane,
                "testbed_programs": programs_variable(self.inventory, placement or self.placement())}

    def preflight(self) -> KernelFeatures:
        """Root, tools, kernel features, free ports and subnet; one InputError line on the first problem."""
        return preflight(self.inventory, self.state, self.runner)

    def up(self, artifacts_dir: Path, dry_run: bool = False, on_task: Callable[[str], None] | None = None,
           preflight_done: bool = False, *, remove_on_failure: bool = True,
           overrides: dict[str, Any] | None = None) -> PlaybookResult:
        """Run the up playbook (after preflight). On failure everything built so far is removed, then DeployError.

        ``overrides`` are extra Ansible variables (role defaults such as ``monitoring_prometheus_binary``).
        """
        if not preflight_done:
            self.preflight()
        placement = self.placement()
        if not dry_run:
            self.state.record_inventory(self.inventory.path)
            self.state.record_placement(placement)
        extravars = {**self.extravars(placement), **(overrides or {})}
        result = run_playbook(UP_PLAYBOOK, self.inventory.path, extravars, artifacts_dir, dry_run, on_task)
        removing = remove_on_failure and not dry_run and not result.succeeded
        if removing:
            self.down(artifacts_dir / "cleanup", on_task)
        return result.require_success("up", "; the half-built testbed was removed" if removing else "")

    def down(self, artifacts_dir: Path, on_task: Callable[[str], None] | None = None) -> PlaybookResult:
        """Stop every recorded process and remove every object the topology names, then the state directory."""
        require_root()
        recorded = self.state.recorded_inventory
        inventory = load_inventory(recorded) if recorded.exists() else self.inventory
        inventory_file = recorded if recorded.exists() else self.inventory.path
        extravars = {"testbed_state_dir": str(inventory.state_dir),  # and the programs where they run now
                     "testbed_programs": programs_variable(inventory, current_placement(inventory))}
        if recorded.exists():  # keep a copy: the playbook deletes the state directory
            artifacts_dir.mkdir(parents=True, exist_ok=True)
            inventory_file = artifacts_dir / "inventory.yml"
            inventory_file.write_bytes(recorded.read_bytes())
        return run_playbook(DOWN_PLAYBOOK, inventory_file, extravars, artifacts_dir, False, on_task).require_success(
            "down")

    def leftovers(self) -> list[str]:
        """Anything of this testbed still present: namespaces, root links, cgroups, processes, state dir."""
        found = [f"namespace {n}" for n in self.inventory.namespaces if Path("/run/netns", n).exists()]
        found += [f"link {n}" for n in self.inventory.root_links if Path("/sys/class/net", n).exists()]
        hierarchy = find_cpu_hierarchy(self.runner)
        groups = [hierarchy.group(self.inventory.cgroup_name(host)) for host in self.inventory.hosts] \
            if hierarchy is not None else []
        found += [f"cgroup {directory}" for group in groups for directory in group.directories
                  if Path(directory).is_dir()]
        found += [f"process {name} ({pid})" for name, pid in self.state.pids().items() if pid and pid_alive(pid)]
        if self.state.path.exists():
            found.append(f"state directory {self.state.path}")
        return found

    def status(self) -> dict[str, Any]:
        """What runs now: namespaces, processes, the OvS bridge and Prometheus readiness."""
        namespaces = {n: Path("/run/netns", n).exists() for n in self.inventory.namespaces}
        processes = {name: bool(pid and pid_alive(pid)) for name, pid in self.state.pids().items()}
        socket = self.state.path / "ovs" / "db.sock"
        bridge = socket.exists() and self.runner.run(
            ["ovs-vsctl", f"--db=unix:{socket}", "--timeout=3", "br-exists", self.inventory.bridge]).returncode == 0
        prometheus = f"http://127.0.0.1:{self.inventory.settings.prometheus_port}"
        ready = prometheus_ready(prometheus)
        running = all(namespaces.values()) and bridge and ready and all(processes.values())
        return {"prefix": self.inventory.prefix, "state_dir": str(self.state.path), "up": running,
                "namespaces": namespaces, "processes": processes, "ovs_bridge": bridge,
                "prometheus": {"url": prometheus, "ready": ready}}

