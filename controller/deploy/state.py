"""The testbed's state directory: PID files of every process it started, the inventory it ran with, logs."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

RECORDED_INVENTORY = "inventory.yml"


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


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
