"""Preflight checks before `slicebed testbed up`: privileges, tools, kernel features, free ports and subnets.

Each failed check is one :class:`~core.errors.InputError` line naming the cause and the fix, raised before
anything is created.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from controller.deploy.inventory import LocalInventory
from controller.deploy.state import StateDir
from controller.deploy.tools import TESTBED_TOOLS
from core.errors import InputError

REQUIRED_TOOLS = TESTBED_TOOLS  # program -> Debian package, from the one table (deploy/tools.py)
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class KernelFeatures:
    """What the kernel offers the local testbed."""

    netem: bool
    nfqueue: bool
    cgroup_cpu: str  # "v1", "v2" or "" (none)


def has_netem() -> bool:
    """Whether the kernel has sch_netem (module or built in)."""
    if Path("/sys/module/sch_netem").exists():
        return True
    return subprocess.run(["modinfo", "-n", "sch_netem"], capture_output=True, check=False).returncode == 0 \
        if shutil.which("modinfo") else False


def has_nfqueue() -> bool:
    """Whether an iptables NFQUEUE rule can be installed (tried in a scratch namespace, then removed)."""
    scratch = f"sbpf-{secrets.token_hex(3)}"
    if subprocess.run(["ip", "netns", "add", scratch], capture_output=True, check=False).returncode != 0:
        return False
    try:
        done = subprocess.run(["ip", "netns", "exec", scratch, "iptables", "-t", "mangle", "-A", "PREROUTING",
                               "-j", "NFQUEUE", "--queue-num", "9"], capture_output=True, check=False)
        return done.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "delete", scratch], capture_output=True, check=False)


def cgroup_cpu_version() -> str:
    if (CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us").exists():
        return "v1"
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return "v2"
    return ""


def detect_kernel_features() -> KernelFeatures:
    netem = has_netem()
    return KernelFeatures(netem=netem, nfqueue=False if netem else has_nfqueue(), cgroup_cpu=cgroup_cpu_version())


def require_root(euid: int | None = None) -> None:
    if (os.geteuid() if euid is None else euid) != 0:
        raise InputError("testbed up/down need root (namespaces, Open vSwitch, cgroups); run it with sudo")


def require_tools(which=shutil.which) -> None:
    for tool, package in REQUIRED_TOOLS.items():
        if which(tool) is None:
            raise InputError(f"{tool} is not installed; install the Debian package {package} (make system-deps)")
    if subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode != 0:
        raise InputError("`ip netns` does not work here; the local testbed needs network namespaces")


def require_features(features: KernelFeatures) -> None:
    if not features.cgroup_cpu:
        raise InputError("no cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2 cgroup.controllers); "
                         "mount it to run the local testbed")
    if not features.netem and not features.nfqueue:
        raise InputError("the kernel has neither sch_netem nor iptables NFQUEUE, so no delay stage can run; "
                         "load sch_netem or xt_NFQUEUE")
    if not features.netem and importlib.util.find_spec("netfilterqueue") is None:
        raise InputError("this kernel has no sch_netem and the NFQUEUE delayer needs the Python package "
                         "NetfilterQueue; pip install NetfilterQueue (needs libnetfilter-queue-dev)")


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


def require_free_mgmt_subnet(inventory: LocalInventory) -> None:
    """The management subnet lives in the root namespace: no other interface may route it already."""
    done = subprocess.run(["ip", "-j", "route", "show"], capture_output=True, text=True, check=False)
    subnet, bridge = inventory.settings.mgmt_subnet, f"{inventory.prefix}mgmt"
    for route in json.loads(done.stdout or "[]"):
        destination = route.get("dst", "")
        if destination in ("default", "") or route.get("dev") == bridge:
            continue
        network = ipaddress.ip_network(destination if "/" in destination else f"{destination}/32", strict=False)
        if network.version == 4 and network.overlaps(subnet):
            raise InputError(f"{inventory.path}: mgmt_subnet {subnet} overlaps {destination} on {route.get('dev')}; "
                             "choose another mgmt_subnet (and mgmt addresses)")


def preflight(inventory: LocalInventory, state: StateDir) -> KernelFeatures:
    """Every check `up` needs, in order; returns the kernel features found."""
    require_root()
    require_tools()
    features = detect_kernel_features()
    require_features(features)
    require_free_ports(inventory, state)
    require_free_mgmt_subnet(inventory)
    return features
