"""Helpers for tests that bring a real local testbed up: an inventory of their own, the `slicebed` command.

Each test module uses its own prefix, management subnet and Prometheus ports, so testbeds never collide with
each other, with a user's testbed or with another test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SLICEBED = str(Path(sys.executable).parent / "slicebed")


def write_local_inventory(directory: Path, prefix: str, subnet: str, prometheus_port: int) -> Path:
    """inventory/local.yml with ``prefix``, the management subnet ``<subnet>.0/24`` and loopback ports
    ``prometheus_port`` (Prometheus) and ``prometheus_port + 1`` (node exporter)."""
    document = yaml.safe_load((REPO / "inventory" / "local.yml").read_text(encoding="utf-8"))
    document["all"]["vars"].update(testbed_prefix=prefix, mgmt_subnet=f"{subnet}.0/24", mgmt_gateway=f"{subnet}.254",
                                   prometheus_port=prometheus_port, node_exporter_port=prometheus_port + 1)

    def renumber(group: dict[str, Any]) -> None:
        for host in (group.get("hosts") or {}).values():
            host["mgmt_address"] = f"{subnet}.{host['mgmt_address'].rsplit('.', 1)[1]}"
        for child in (group.get("children") or {}).values():
            renumber(child)

    renumber(document["all"])
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def run_slicebed(*args: str, runs: Path, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    """``slicebed --quiet --runs-dir RUNS ARGS...`` as a process, from the repository root."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([SLICEBED, "--quiet", "--runs-dir", str(runs), *args], capture_output=True, text=True,
                          timeout=timeout_s, env=environment, cwd=REPO, check=False)
