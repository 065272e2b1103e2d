"""The testbed's state directory: PID files of every process it started, the inventory it ran with, logs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from controller.deploy.inventory.local import LocalInventory, tier
from controller.deploy.inventory.tiers import Tier
from core.runstore import write_json_atomic

RECORDED_INVENTORY = "inventory.yml"
RECORDED_PLACEMENT = "placement.json"
STOP_GRACE_S = 5.0


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_pid(pid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM ``pid``, SIGKILL it when it outlives ``grace_s`` seconds; nothing when it is gone."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class StateDir:
    """``/run/slicebed/<prefix>/``: ``pids/<name>.pid``, ``logs/``, ``ovs/``, ``prometheus/``, ``inventory.yml``."""

    path: Path

    @property
    def pid_dir(self) -> Path:
        return self.path / "pids"

    def pids(self) -> dict[str, int | None]:
        """Every recorded process: name -> PID (None when the file is unreadable)."""
        recorded: dict[str, int | None] = {}
        for pidfile in sorted(self.pid_dir.glob("*.pid")) if self.pid_dir.is_dir() else []:
            try:
                recorded[pidfile.stem] = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                recorded[pidfile.stem] = None
        return recorded

    def alive(self, name: str) -> int | None:
        """The PID of recorded process ``name`` if it runs, else None."""
        pid = self.pids().get(name)
        return pid if pid is not None and pid_alive(pid) else None

    @property
    def recorded_inventory(self) -> Path:
        return self.path / RECORDED_INVENTORY

    def record_inventory(self, source: Path) -> None:
        """Keep the inventory `up` runs with, so that `down` removes exactly what it built."""
        self.path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, self.recorded_inventory)

    @property
    def placement_file(self) -> Path:
        return self.path / RECORDED_PLACEMENT

    def recorded_placement(self) -> dict[str, str]:
        """Slice -> UPF tier as `up` or `testbed place` last recorded it (empty when nothing is recorded)."""
        try:
            recorded = json.loads(self.placement_file.read_text(encoding="utf-8"))
            return {str(name): str(where["upf"]) for name, where in recorded.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # none, or not one `place` wrote
            return {}

    def record_placement(self, placement: dict[str, Tier]) -> None:
        """Keep the placement the programs run with (`down`, `check`, `top`, the loop and the next `up` read it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.placement_file, {name: {"upf": where} for name, where in placement.items()})


def current_placement(inventory: LocalInventory) -> dict[str, Tier]:
    """Each slice's UPF tier now: what the testbed's state records, else the inventory's placement."""
    recorded = StateDir(inventory.state_dir).recorded_placement()
    placement: dict[str, Tier] = {}
    for slice_vars in inventory.settings.slices:
        try:
            placement[slice_vars.name] = tier(recorded.get(slice_vars.name, slice_vars.upf_tier))
        except ValueError:  # a hand-edited state file: the inventory's placement
            placement[slice_vars.name] = slice_vars.upf_tier
    return placement
