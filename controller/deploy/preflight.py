"""Preflight checks before `slicebed testbed up`: privileges, tools, kernel features, free ports and subnets.

Each failed check is one :class:`~core.errors.InputError` line naming the cause and the fix, raised before
anything is created. Commands run through a :class:`~core.commands.CommandRunner` (this host by default).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.deploy.inventory import LocalInventory
from controller.deploy.state import StateDir
from controller.deploy.tools import TESTBED_TOOLS
from core.cgroups import find_cpu_hierarchy
from core.commands import CommandRunner, LocalRunner
from core.errors import InputError

REQUIRED_TOOLS = TESTBED_TOOLS  # program -> Debian package, from the one table (deploy/tools.py)
DELAY_STAGE = Path(__file__).resolve().parents[2] / "build" / "slicebed-delay"
"""The NFQUEUE delay stage `make setup` builds (the netem role's netem_delayer), run where sch_netem is missing."""


@dataclass(frozen=True)
class KernelFeatures:
    """What the kernel offers the local testbed."""

    netem: bool
    nfqueue: bool
    cgroup_cpu: str  # "v1", "v2" or "" (none): the hierarchy whose cpu controller is enabled (core.cgroups)


def has_netem(runner: CommandRunner) -> bool:
    """Whether the kernel has sch_netem (loaded, built in, or a module modprobe can load)."""
    if Path("/sys/module/sch_netem").exists():
        return True
    return shutil.which("modinfo") is not None and runner.run(["modinfo", "-n", "sch_netem"]).returncode == 0


def has_nfqueue(runner: CommandRunner) -> bool:
    """Whether an iptables NFQUEUE rule can be installed (tried in a scratch namespace, then removed)."""
    scratch = f"sbpf-{secrets.token_hex(3)}"
    if runner.run(["ip", "netns", "add", scratch]).returncode != 0:
        return False
    try:
        return LocalRunner(scratch).run(["iptables", "-t", "mangle", "-A", "PREROUTING", "-j", "NFQUEUE",
                                         "--queue-num", "9"]).returncode == 0
    finally:
        runner.run(["ip", "netns", "delete", scratch])


def cgroup_cpu_version(runner: CommandRunner) -> str:
    """``v1`` or ``v2``: the hierarchy whose cpu controller is enabled; ``""`` when neither has it."""
    hierarchy = find_cpu_hierarchy(runner)
    return f"v{hierarchy.version}" if hierarchy is not None else ""


def detect_kernel_features(runner: CommandRunner) -> KernelFeatures:
    netem = has_netem(runner)
    return KernelFeatures(netem=netem, nfqueue=False if netem else has_nfqueue(runner),
                          cgroup_cpu=cgroup_cpu_version(runner))


def require_root(euid: int | None = None) -> None:
    if (os.geteuid() if euid is None else euid) != 0:
        raise InputError("testbed up/down need root (namespaces, Open vSwitch, cgroups); run it with sudo")


def require_tools(runner: CommandRunner | None = None, which: Callable[[str], str | None] = shutil.which) -> None:
    for tool, package in REQUIRED_TOOLS.items():
        if which(tool) is None:
            raise InputError(f"{tool} is not installed; install the Debian package {package} (make system-deps)")
    if (runner or LocalRunner()).run(["ip", "netns", "list"]).returncode != 0:
        raise InputError("`ip netns` does not work here; the local testbed needs network namespaces")


def require_features(features: KernelFeatures) -> None:
    if not features.cgroup_cpu:
        raise InputError("no cgroup cpu controller is enabled (neither 'cpu' in a cgroup v2 cgroup.controllers nor "
                         "a v1 hierarchy mounted with 'cpu'); mount or enable one to run the local testbed")
    if not features.netem and not features.nfqueue:
        raise InputError("the kernel has neither sch_netem nor iptables NFQUEUE, so no delay stage can run; "
                         "load sch_netem or xt_NFQUEUE")
    if not features.netem and not os.access(DELAY_STAGE, os.X_OK):
        raise InputError(f"this kernel has no sch_netem and the NFQUEUE delay stage {DELAY_STAGE} is not built; "
                         "run `make setup` (it compiles dataplane/delay_stage.c)")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def require_free_ports(inventory: LocalInventory, state: StateDir) -> None:
    """Prometheus and node-exporter ports must be free, unless this testbed's own processes hold them."""
    owners = {"prometheus_port": "prometheus", "node_exporter_port": "node-exporter"}
    for option, process in owners.items():
        port = getattr(inventory.settings, option)
        if state.alive(process) is None and not port_free(port):
            raise InputError(f"{inventory.path}: {option} {port} is already taken on 127.0.0.1; "
                             f"set another {option} in all.vars or stop what listens there")


def require_free_mgmt_subnet(inventory: LocalInventory, runner: CommandRunner) -> None:
    """The management subnet lives in the root namespace: no other interface may route it already."""
    subnet, bridge = inventory.settings.mgmt_subnet, f"{inventory.prefix}mgmt"
    for route in json.loads(runner.output(["ip", "-j", "route", "show"]) or "[]"):
        destination = route.get("dst", "")
        if destination in ("default", "") or route.get("dev") == bridge:
            continue
        network = ipaddress.ip_network(destination if "/" in destination else f"{destination}/32", strict=False)
        if network.version == 4 and network.overlaps(subnet):
            raise InputError(f"{inventory.path}: mgmt_subnet {subnet} overlaps {destination} on {route.get('dev')}; "
                             "choose another mgmt_subnet (and mgmt addresses)")


def preflight(inventory: LocalInventory, state: StateDir, runner: CommandRunner | None = None) -> KernelFeatures:
    """Every check `up` needs, in order, on this host; returns the kernel features found."""
    runner = runner or LocalRunner()
    require_root()
    require_tools(runner)
    features = detect_kernel_features(runner)
    require_features(features)
    require_free_ports(inventory, state)
    require_free_mgmt_subnet(inventory, runner)
    return features
