"""Helpers for tests that bring a real local testbed up: an inventory of their own, an up testbed that is always
brought down, and the machine-wide lock that makes two test runs on one machine take turns.

Each test gets its own prefix, management subnet and Prometheus ports, so testbeds never collide with each
other or with a user's testbed; the lock keeps a second test run (another engineer, CI) from measuring on a
machine the first one is loading, and from reusing a module's fixed prefix at the same time.
"""

from __future__ import annotations

import fcntl
import os
import random
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, free_port, run_slicebed

from controller.deploy.local_deployment import LocalDeployment
from core.retry import Attempts

LOCAL_INVENTORY = REPO / "inventory" / "local.yml"
TESTBED_LOCK = Path("/run/slicebed/test-session.lock")
"""Held by a test session from its first local-testbed test to its end (not the engineers' heavy-work lock)."""


def inventory_hosts(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every host mapping of an inventory document, by name, at any depth of its groups."""
    found: dict[str, dict[str, Any]] = {}

    def walk(group: dict[str, Any]) -> None:
        found.update(group.get("hosts") or {})
        for child in (group.get("children") or {}).values():
            walk(child)

    walk(document["all"])
    return found


def write_local_inventory(directory: Path, prefix: str | None = None, subnet: str | None = None,
                          prometheus_port: int | None = None, edit: Callable[[dict[str, Any]], None] | None = None,
                          **overrides: Any) -> Path:
    """``directory/inventory.yml``: inventory/local.yml with its own ``prefix``, management subnet
    ``<subnet>.0/24`` and loopback ports ``prometheus_port`` (Prometheus) and ``prometheus_port + 1`` (node
    exporter). Left out, each is unique to this call (``sbt<hex>-``, ``10.234.<random>``, free ports). Then
    ``overrides`` replace variables and ``edit`` changes the document."""
    document = yaml.safe_load(LOCAL_INVENTORY.read_text(encoding="utf-8"))
    subnet = subnet or f"10.234.{random.Random(secrets.token_bytes(8)).randrange(1, 254)}"
    ports = (prometheus_port, prometheus_port + 1) if prometheus_port is not None else (free_port(), free_port())
    document["all"]["vars"].update({"testbed_prefix": prefix or f"sbt{secrets.token_hex(2)}-",
                                    "mgmt_subnet": f"{subnet}.0/24", "mgmt_gateway": f"{subnet}.254",
                                    "prometheus_port": ports[0], "node_exporter_port": ports[1], **overrides})
    for host in inventory_hosts(document).values():
        host["mgmt_address"] = f"{subnet}.{host['mgmt_address'].rsplit('.', 1)[1]}"
    if edit is not None:
        edit(document)
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@contextmanager
def testbed_session_lock(path: Path = TESTBED_LOCK, timeout_s: float = 3600) -> Iterator[None]:
    """Hold an exclusive flock on ``path``: one test session at a time uses the local testbed on this machine.

    Waits (saying so on stderr, with the holder's PID) up to ``timeout_s`` for another session to finish.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="ascii") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            print(f"\nwaiting for another test session (pid {holder}) to finish with the local testbed ({path})",
                  file=sys.stderr)
            for _ in Attempts(timeout_s, 1):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    continue
            else:
                pytest.fail(f"another test session (pid {holder}) held {path} for more than {timeout_s} s")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class DeployedTestbed:
    """A local testbed that is up: its inventory, and the runs root its `testbed up` recorded into."""

    inventory: Path
    runs: Path


@contextmanager
def deployed_local_testbed(directory: Path, prefix: str, subnet: str,
                           prometheus_port: int) -> Iterator[DeployedTestbed]:
    """`slicebed testbed up` on an inventory of its own; always `testbed down` at the end, and assert that
    nothing is left behind."""
    inventory, runs = write_local_inventory(directory, prefix, subnet, prometheus_port), directory / "runs"
    up = run_slicebed("testbed", "up", "--inventory", str(inventory), runs=runs)
    try:
        assert up.returncode == 0, up.stderr
        yield DeployedTestbed(inventory, runs)
    finally:
        down = run_slicebed("testbed", "down", "--inventory", str(inventory), runs=runs)
        assert down.returncode == 0, down.stderr
        assert LocalDeployment.open(inventory).leftovers() == []
