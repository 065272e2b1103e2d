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
- ``testbed_state_dir`` and ``lab_traffic_dir`` per node: PID files, logs, Prometheus's data and slicebed's traffic
  runtime in the box's directory;
- ``traffic``: the host form (no pods here) under PID files (``lab_traffic_supervisor: pidfile``), run by this
  checkout's Python (``lab_traffic_python``, which has the programs' packages), each UE sink bound to the edge node's
  underlay interface (there is no UE tunnel: the stream crosses the underlay, delayed edge-central);
- ``lab_backend``: the gNB's CPU through a cgroup on the edge node (``cgroup: <box>/gnb-{slice}``; the box has no gNB,
  :func:`gnb_stand_in` puts the slice's UE sink there) and the bandwidth through the linux-htb queue of the slice on
  the central node's underlay interface (``ovs_queue``; no ONOS: :func:`underlay_queue` attaches the interface to the
  node's OvS bridge with the queue and steers the slice's stream into it), both over SSH as on a lab.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from helpers import REPO, wait_until_ready

from controller.actuators.base import Interval
from controller.actuators.cgroup import CgroupCpuActuator, attach
from controller.actuators.ovs import OvsQueueActuator
from controller.actuators.ssh import SshRunner, SshTarget
from controller.deploy.inventory.lab import open_lab_inventory
from controller.deploy.lab_deployment import answers
from core.commands import LocalRunner
from core.retry import Attempts

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
LAB_EXAMPLE = REPO / "inventory" / "lab.example.yml"
BOX_TIERS = ("edge", "regional", "central")
BOX_COMPONENTS = ["ovs_transport", "netem", "traffic", "monitoring"]
"""site.yml's components that need no cluster: what `testbed up` installs in the box and `down` removes."""
BOX_TESTBED_PREFIX = "bx-"
"""The inventory's testbed_prefix: names inside the nodes' own namespaces and OvS databases (the bridge bx-tr)."""
UNDERLAY_INTERFACE = "ul0"
CGROUP_ROOT = "/sys/fs/cgroup"
GENERIC_MOUNT_OPTIONS = {"rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec"}
TRAFFIC = {"form": "hosts", "ue_device": UNDERLAY_INTERFACE, "user_rate_mbps": 4}
"""The box's traffic settings: 4 Mbit/s per user keeps a few users well inside what the box's programs carry."""


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

    @property
    def traffic_dir(self) -> Path:
        """The node's lab_traffic_dir: slicebed's runtime and the traffic programs' PID files and logs."""
        return self.state_dir / "slicebed"

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
    cgroup_root: str

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


def cgroup_mounts() -> str:
    """Shell commands that mount this machine's cgroup hierarchies under a fresh /sys, as in its root namespace.

    ``ip netns exec`` remounts /sys for the namespace, which leaves /sys/fs/cgroup empty; a lab node has its cgroups
    there, and the lab backend's CPU actuator finds them over SSH. Mounting a hierarchy again with the same options
    attaches the same hierarchy (the groups are this machine's, as the rest of the box's processes are)."""
    mounts = [line.split()[1:4] for line in Path("/proc/self/mounts").read_text().splitlines()]
    hierarchies = [(target, fstype, ",".join(option for option in options.split(",")
                                             if option not in GENERIC_MOUNT_OPTIONS))
                   for target, fstype, options in mounts
                   if fstype in ("cgroup", "cgroup2") and (target + "/").startswith(CGROUP_ROOT + "/")]
    commands = [] if any(target == CGROUP_ROOT for target, _, _ in hierarchies) else \
        [f"mount -t tmpfs -o mode=755 cgroup {CGROUP_ROOT}"]
    for target, fstype, options in hierarchies:
        commands += [f"mkdir -p {target}", f"mount -t {fstype} {'-o ' + options if options else ''} {fstype} {target}"]
    return " && ".join(commands)


@contextmanager
def sshd(node: BoxNode, directory: Path, host_key: Path, authorized_keys: Path) -> Iterator[None]:
    """OpenSSH's sshd inside the node's namespace on its underlay address, port 22; stopped by its PID."""
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory (kept: other sshds need it)
    options = {"ListenAddress": node.address, "Port": "22", "HostKey": str(host_key),
               "PidFile": str(directory / f"sshd-{node.name}.pid"), "AuthorizedKeysFile": str(authorized_keys),
               "PermitRootLogin": "prohibit-password", "PasswordAuthentication": "no", "UsePAM": "no",
               "StrictModes": "no", "Subsystem": f"sftp {SFTP_SERVER}"}
    log_path = directory / f"sshd-{node.name}.log"
    argv = [str(SSHD), "-D", "-e", "-f", "/dev/null",
            *(arg for key, value in options.items() for arg in ("-o", f"{key}={value}"))]
    with log_path.open("wb") as log:  # `ip netns exec` gives sshd a fresh /sys: the node's cgroups mounted again
        server = subprocess.Popen(["ip", "netns", "exec", node.netns, "sh", "-c", f'{cgroup_mounts()} && exec "$@"',
                                   "sshd", *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:  # this machine reaches the node over the underlay, as Ansible does
        wait_until_ready(lambda: answers(node.address, 22), server, f"sshd in {node.netns}", timeout_s=10,
                         log=log_path)
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


def box_inventory(nodes: tuple[BoxNode, ...], subnet: str, key: Path, known_hosts: Path,
                  cgroup_root: str) -> dict[str, Any]:
    """inventory/lab.example.yml with the box's hosts, underlay, SSH login and the settings the module docstring
    lists; the slices' gNB cgroups under ``cgroup_root``."""
    document: dict[str, Any] = yaml.safe_load(LAB_EXAMPLE.read_text(encoding="utf-8"))
    variables = document["all"]["vars"]
    variables.update({
        "testbed_prefix": BOX_TESTBED_PREFIX, "testbed_components": BOX_COMPONENTS,
        "underlay_cidr": f"{subnet}.0/24",
        "ansible_user": "root", "ansible_ssh_private_key_file": str(key), "ansible_become": False,
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts}",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ovs_transport_start_daemons": True, "ovs_transport_datapath": "netdev",
        "netem_mode": "local", "monitoring_mode": "local",
        "traffic": {**variables["traffic"], **TRAFFIC}, "lab_traffic_supervisor": "pidfile",
        "lab_traffic_python": sys.executable})
    central = next(node for node in nodes if node.tier == "central")
    variables["lab_backend"].update({
        "cpu": "cgroup", "cgroup": f"{cgroup_root}/gnb-{{slice}}", "bandwidth": "ovs_queue",
        "ovs": {"tier": "central", "port": UNDERLAY_INTERFACE,
                "vsctl": ["ovs-vsctl", f"--db=unix:{central.ovs_rundir}/db.sock", "--timeout=10"]},
        "ssh": {"known_hosts": str(known_hosts), "become": False}})
    for node in nodes:
        document["all"]["children"][node.tier]["hosts"] = {node.name: {
            "ansible_host": node.address, "node_id": node.node_id, "transport_mac": node.mac,
            "testbed_state_dir": str(node.state_dir), "ovs_transport_rundir": str(node.ovs_rundir),
            "lab_traffic_dir": str(node.traffic_dir)}}
    return document


@contextmanager
def gnb_stand_in(box: LabBox, slice_name: str) -> Iterator[CgroupCpuActuator]:
    """The slice's gNB cgroup on the edge node (the inventory's ``lab_backend.cgroup``), made over SSH, with the
    slice's UE sink in it: the box has no gNB, and the sink is the program on the edge node that the slice's traffic
    needs CPU in. On exit the sink goes back to the root group and the cgroups are removed."""
    edge = box.node("edge")
    with box.runner(edge) as runner:
        root = CgroupCpuActuator(runner, box.cgroup_root, Interval(0, math.inf))
        root.create()
        try:
            pid = int((edge.traffic_dir / "run" / f"ue_sink-{slice_name}.pid").read_text())
            attach(runner, f"{box.cgroup_root}/gnb-{slice_name}", pid, create=True)
            yield CgroupCpuActuator(runner, f"{box.cgroup_root}/gnb-{slice_name}", Interval(0, math.inf))
        finally:
            root.remove()


@contextmanager
def underlay_queue(box: LabBox, slice_name: str, mbps: float) -> Iterator[OvsQueueActuator]:
    """The central node's underlay interface as a port of its transport bridge, with a linux-htb QoS holding the
    slice's queue (queue 1, ``external_ids:slicebed-slice``) beside an unshaped queue 0, as a lab engineer makes one
    for ``ovs_queue``.

    The box has no ONOS to steer the slice's traffic into the overlay and its queue: the userspace datapath leaves
    the interface to the kernel, whose packets take the htb's default class (queue 0: SSH, Prometheus's scrapes), and
    a u32 filter puts the slice's stream (from its app server's stream port) into the slice's class instead. On exit
    the QoS, with the filter, and the port are removed."""
    central = box.node("central")
    inventory = open_lab_inventory(box.inventory)
    stream_port = inventory.variables.traffic.stream_port + inventory.slices.index(slice_name)
    vsctl = ["ovs-vsctl", f"--db=unix:{central.ovs_rundir}/db.sock", "--timeout=10"]
    runner = central.local
    runner.output([*vsctl, "add-port", f"{BOX_TESTBED_PREFIX}tr", UNDERLAY_INTERFACE, "--", "set", "port",
                   UNDERLAY_INTERFACE, "qos=@q", "--", "--id=@q", "create", "qos", "type=linux-htb",
                   "other-config:max-rate=1000000000", "queues:0=@q0", "queues:1=@q1",
                   "--", "--id=@q0", "create", "queue", "other-config:max-rate=1000000000",
                   "--", "--id=@q1", "create", "queue", f"other-config:max-rate={round(mbps * 1e6)}",
                   f"external_ids:slicebed-slice={slice_name}"])
    try:
        for _ in Attempts(20, 0.25):  # ovs-vswitchd configures the htb classes after the transaction
            if runner.run(["tc", "class", "show", "dev", UNDERLAY_INTERFACE, "classid", "1:2"]).stdout.strip():
                break
        runner.output(["tc", "filter", "add", "dev", UNDERLAY_INTERFACE, "parent", "1:", "protocol", "ip", "prio", "1",
                       "u32", "match", "ip", "sport", str(stream_port), "0xffff", "flowid", "1:2"])
        yield OvsQueueActuator(runner, vsctl, UNDERLAY_INTERFACE, slice_name, Interval(0, math.inf))
    finally:
        runner.output([*vsctl, "clear", "port", UNDERLAY_INTERFACE, "qos", "--", "del-port", UNDERLAY_INTERFACE])
        runner.run(["tc", "qdisc", "del", "dev", UNDERLAY_INTERFACE, "root"])  # if ovs-vswitchd left it


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
        cgroup_root = prefix.rstrip("-")
        inventory.write_text(yaml.safe_dump(box_inventory(nodes, subnet, user_key, known_hosts, cgroup_root),
                                            sort_keys=False), encoding="utf-8")
        yield LabBox(directory, inventory, nodes, user_key, known_hosts, cgroup_root)
