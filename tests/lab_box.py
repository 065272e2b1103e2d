"""The lab in a box (issue 16): three network namespaces of this machine, each a real SSH host, in a lab inventory.

The tier nodes edge-1, regional-1 and central-1 are namespaces ``<prefix>edge``, ``<prefix>regional`` and
``<prefix>central``, joined by an underlay: a Linux bridge in the namespace ``<prefix>ul`` with one veth per node
(``ul0`` inside the node, address ``<subnet>.<10 * node_id + 1>``) and one to this machine's root namespace
(``<prefix>ul``, ``<subnet>.254``), so Ansible and slicebed reach each node at its underlay address, the inventory's
``ansible_host``, as they reach a lab node. Each node runs its own sshd (host key, authorized key and PID file in
the box's directory; started and stopped by PID) that logs root in with the box's key. ``<prefix>`` is
``sbx<4 hex digits>-``: nothing collides with the local testbed's ``sb-`` or another box.

A lab node has its own filesystem, packages, kernel and systemd; the box's nodes share this machine's. The box's
inventory (``inventory/lab.example.yml`` with the box's hosts) therefore sets, and nothing else differs from a lab:

- ``ovs_transport_start_daemons``, ``ovs_transport_datapath: netdev`` and a ``ovs_transport_rundir`` per node: each
  node starts its own ovsdb-server and ovs-vswitchd (userspace datapath: no openvswitch module here), as the local
  testbed does, instead of the system's Open vSwitch;
- ``netem_mode: local`` and a ``transport_mac`` per node: the netem role takes tc-netem where the kernel has
  sch_netem and otherwise the NFQUEUE delayer from this checkout on the receiving side (a lab requires sch_netem:
  the delayer's paths are on the machine running Ansible, which only the box's nodes share);
- ``monitoring_mode: local``: the node exporter on every node and Prometheus on the monitoring server under PID files
  (no systemd runs as PID 1 here, and the lab path would install, and its uninstall remove, this machine's packages);
- ``testbed_components``: the components that need no cluster (no Kubernetes, Open5GS, RAN or ONOS here);
- ``testbed_state_dir`` per node: PID files, logs and Prometheus's data in the box's directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from helpers import REPO, wait_until_ready

from controller.actuators.ssh import SshRunner, SshTarget
from controller.deploy.lab_deployment import answers
from core.commands import LocalRunner
from core.retry import Attempts

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
LAB_EXAMPLE = REPO / "inventory" / "lab.example.yml"
BOX_TIERS = ("edge", "regional", "central")
BOX_COMPONENTS = ["ovs_transport", "netem", "monitoring"]
"""site.yml's components that need no cluster: what `testbed up` installs in the box and `down` removes."""
BOX_TESTBED_PREFIX = "bx-"
"""The inventory's testbed_prefix: names inside the nodes' own namespaces and OvS databases (the bridge bx-tr)."""
UNDERLAY_INTERFACE = "ul0"


@dataclass(frozen=True)
class BoxNode:
    """One tier node of the box: its inventory host, namespace and underlay address."""

    name: str
    tier: str
    node_id: int
    netns: str
    address: str
    mac: str
    state_dir: Path

    @property
    def local(self) -> LocalRunner:
        """Commands inside the node's namespace, from this machine (the test's view, not Ansible's)."""
        return LocalRunner(self.netns)

    @property
    def ovs_rundir(self) -> Path:
        return self.state_dir / "ovs"

    def programs(self) -> list[str]:
        """The program (executable's name) of every process in the node's namespace."""
        return [Path(f"/proc/{pid}/exe").resolve().name for pid in namespace_pids(self.netns)]


@dataclass(frozen=True)
class LabBox:
    """The box: its directory, its lab inventory, its nodes and the SSH key and known_hosts that reach them."""

    directory: Path
    inventory: Path
    nodes: tuple[BoxNode, ...]
    key: Path
    known_hosts: Path

    def node(self, tier: str) -> BoxNode:
        return next(node for node in self.nodes if node.tier == tier)

    def ssh_target(self, node: BoxNode) -> SshTarget:
        """How slicebed's SSH runner logs in to ``node`` (root, the box's key, its host key checked)."""
        return SshTarget(host=node.address, user="root", key_file=self.key, known_hosts=self.known_hosts,
                         label=node.name)

    def runner(self, node: BoxNode) -> SshRunner:
        """slicebed's SSH runner on ``node`` (close it, or use it as a context manager)."""
        return SshRunner(self.ssh_target(node))

    @property
    def ssh_environment(self) -> dict[str, str]:
        """The environment the inventory's ``lab_backend.ssh`` reads the user and key from."""
        return {"SLICEBED_LAB_SSH_USER": "root", "SLICEBED_LAB_SSH_KEY": str(self.key)}


def ip(*args: str) -> None:
    """``ip ARGS``; a RuntimeError with its stderr if it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def free_subnet() -> str:
    """A /24 ``10.247.N`` that no address of this machine's root namespace lies in."""
    listing = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for _ in range(50):
        subnet = f"10.247.{secrets.randbelow(253) + 1}"
        if f" {subnet}." not in listing:
            return subnet
    raise RuntimeError("no free 10.247.N.0/24 for the lab box's underlay")


def namespace_pids(netns: str) -> list[int]:
    """The processes in network namespace ``netns``."""
    listing = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in listing.split()]


def stop_namespace_processes(netns: str) -> None:
    """SIGTERM every process still in ``netns`` (the box's own: its sshd and anything started there), then
    SIGKILL what is left after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in namespace_pids(netns):
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        for _ in Attempts(5, 0.1):
            if not namespace_pids(netns):
                return


@contextmanager
def namespace(name: str) -> Iterator[str]:
    """A network namespace with loopback up; on exit its processes are stopped and it is deleted."""
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        stop_namespace_processes(name)
        ip("netns", "del", name)


def keygen(path: Path) -> str:
    """A new ed25519 key pair at ``path``; returns the public key's ``TYPE BASE64``."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@contextmanager
def sshd(node: BoxNode, directory: Path, host_key: Path, authorized_keys: Path) -> Iterator[None]:
    """OpenSSH's sshd inside the node's namespace on its underlay address, port 22; stopped by its PID."""
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory (kept: other sshds need it)
    options = {"ListenAddress": node.address, "Port": "22", "HostKey": str(host_key),
               "PidFile": str(directory / f"sshd-{node.name}.pid"), "AuthorizedKeysFile": str(authorized_keys),
               "PermitRootLogin": "prohibit-password", "PasswordAuthentication": "no", "UsePAM": "no",
               "StrictModes": "no", "Subsystem": f"sftp {SFTP_SERVER}"}
    log_path = directory / f"sshd-{node.name}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(["ip", "netns", "exec", node.netns, str(SSHD), "-D", "-e", "-f", "/dev/null",
                                   *(arg for key, value in options.items() for arg in ("-o", f"{key}={value}"))],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:  # this machine reaches the node over the underlay, as Ansible does
        wait_until_ready(lambda: answers(node.address, 22), server, f"sshd in {node.netns}", timeout_s=10,
                         log=log_path)
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


def box_inventory(nodes: tuple[BoxNode, ...], subnet: str, key: Path, known_hosts: Path) -> dict[str, Any]:
    """inventory/lab.example.yml with the box's hosts, underlay, SSH login and the settings the module docstring
    lists."""
    document: dict[str, Any] = yaml.safe_load(LAB_EXAMPLE.read_text(encoding="utf-8"))
    variables = document["all"]["vars"]
    variables.update({
        "testbed_prefix": BOX_TESTBED_PREFIX, "testbed_components": BOX_COMPONENTS,
        "underlay_cidr": f"{subnet}.0/24",
        "ansible_user": "root", "ansible_ssh_private_key_file": str(key), "ansible_become": False,
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts}",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ovs_transport_start_daemons": True, "ovs_transport_datapath": "netdev",
        "netem_mode": "local", "monitoring_mode": "local"})
    variables["lab_backend"]["ovs"]["port"] = f"{BOX_TESTBED_PREFIX}vx-edge"
    variables["lab_backend"]["ssh"] = {"known_hosts": str(known_hosts), "become": False}
    for node in nodes:
        document["all"]["children"][node.tier]["hosts"] = {node.name: {
            "ansible_host": node.address, "node_id": node.node_id, "transport_mac": node.mac,
            "testbed_state_dir": str(node.state_dir), "ovs_transport_rundir": str(node.ovs_rundir)}}
    return document


@contextmanager
def lab_box() -> Iterator[LabBox]:
    """Build the box (namespaces, underlay, sshds, keys, inventory); on exit stop and delete all of it."""
    prefix = f"sbx{secrets.token_hex(2)}-"
    subnet = free_subnet()
    directory = Path(tempfile.mkdtemp(prefix=prefix))  # short: OvS and ssh put unix sockets under it
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        underlay = cleanup.enter_context(namespace(f"{prefix}ul"))
        ip("-n", underlay, "link", "add", "br0", "type", "bridge")
        ip("-n", underlay, "link", "set", "br0", "up")
        root_link = f"{prefix}ul"
        ip("link", "add", "name", root_link, "type", "veth", "peer", "name", "root", "netns", underlay)
        cleanup.callback(subprocess.run, ["ip", "link", "del", root_link], capture_output=True, check=False)
        ip("-n", underlay, "link", "set", "root", "master", "br0", "up")
        ip("addr", "add", f"{subnet}.254/24", "dev", root_link)
        ip("link", "set", root_link, "up")
        host_key, user_key = directory / "host_key", directory / "user_key"
        host_public = keygen(host_key)
        (directory / "authorized_keys").write_text(f"{keygen(user_key)}\n", encoding="utf-8")
        mac_prefix = "02:5b:" + ":".join(secrets.token_hex(1) for _ in range(3))
        nodes = tuple(BoxNode(name=f"{tier}-1", tier=tier, node_id=index, netns=f"{prefix}{tier}",
                              address=f"{subnet}.{10 * index + 1}", mac=f"{mac_prefix}:{index:02x}",
                              state_dir=directory / "nodes" / f"{tier}-1")
                      for index, tier in enumerate(BOX_TIERS, start=1))
        known_hosts = directory / "known_hosts"
        known_hosts.write_text("".join(f"{node.address} {host_public}\n" for node in nodes), encoding="utf-8")
        for node in nodes:
            cleanup.enter_context(namespace(node.netns))
            ip("link", "add", "name", UNDERLAY_INTERFACE, "address", node.mac, "netns", node.netns, "type", "veth",
               "peer", "name", node.tier, "netns", underlay)
            ip("-n", underlay, "link", "set", node.tier, "master", "br0", "up")
            ip("-n", node.netns, "addr", "add", f"{node.address}/24", "dev", UNDERLAY_INTERFACE)
            ip("-n", node.netns, "link", "set", UNDERLAY_INTERFACE, "up")
            cleanup.enter_context(sshd(node, directory, host_key, directory / "authorized_keys"))
        inventory = directory / "box.yml"
        inventory.write_text(yaml.safe_dump(box_inventory(nodes, subnet, user_key, known_hosts), sort_keys=False),
                             encoding="utf-8")
        yield LabBox(directory, inventory, nodes, user_key, known_hosts)
