"""CPU cgroups on a node (this host or, through an SSH runner, a lab node): where they live and what they allow.

Which hierarchy (the one rule, used everywhere): the one whose ``cpu`` controller is actually enabled. That is
cgroup v2 when ``cpu`` is listed in the ``cgroup.controllers`` of a mounted cgroup2 root, otherwise the cgroup
v1 hierarchy mounted with the ``cpu`` option (its accounting, ``cpuacct``, may be a separate mount). The kernel
binds a controller to one hierarchy at a time, so at most one of them qualifies. On this project's CI machines
(Debian 12 in hybrid mode, ``/sys/fs/cgroup/unified`` without a cpu controller) that is v1; on current Ubuntu
labs it is v2.

Files: v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` (limit), ``cpu.shares`` (weight), ``cpuacct.usage`` (ns);
v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD"), ``cpu.weight``, ``cpu.stat`` (``usage_usec``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from core.commands import CommandError, CommandRunner

MOUNTS = "/proc/mounts"


@dataclass(frozen=True)
class CpuHierarchy:
    """The cgroup hierarchy with the cpu controller on one node."""

    version: int  # 1 or 2
    root: str  # mount point of the cpu controller
    accounting_root: str  # v1: where cpuacct is mounted (may be ``root``); v2: ``root``

    def group(self, name: str) -> CpuCgroup:
        """Cgroup ``name`` (a path below the root, e.g. ``sb-edge`` or ``slicebed/gnb-embb``)."""
        return CpuCgroup(self, name)


def find_cpu_hierarchy(runner: CommandRunner) -> CpuHierarchy | None:
    """The hierarchy whose cpu controller is enabled on the runner's node (see the module docstring), or None."""
    mounts = [line.split() for line in runner.read_file(MOUNTS).splitlines()]
    mounts = [fields for fields in mounts if len(fields) >= 4]
    for fields in mounts:
        if fields[2] == "cgroup2" and "cpu" in _controllers(runner, fields[1]):
            return CpuHierarchy(2, fields[1], fields[1])
    v1 = {option: fields[1] for fields in mounts if fields[2] == "cgroup" for option in fields[3].split(",")}
    if "cpu" in v1:
        return CpuHierarchy(1, v1["cpu"], v1.get("cpuacct", v1["cpu"]))
    return None


def cpu_hierarchy(runner: CommandRunner) -> CpuHierarchy:
    """:func:`find_cpu_hierarchy`, or a :class:`CommandError` saying that the node has no cpu controller."""
    found = find_cpu_hierarchy(runner)
    if found is None:
        raise CommandError(f"{runner.node}: no cgroup cpu controller is enabled (neither 'cpu' in a cgroup v2 "
                           "cgroup.controllers nor a v1 hierarchy mounted with 'cpu'); mount or enable one")
    return found


def _controllers(runner: CommandRunner, root: str) -> list[str]:
    try:
        return runner.read_file(f"{root}/cgroup.controllers").split()
    except CommandError:
        return []


@dataclass(frozen=True)
class CpuCgroup:
    """One cgroup of the cpu hierarchy: its directories, CPU limit, scheduling weight and CPU time used."""

    hierarchy: CpuHierarchy
    name: str

    @property
    def path(self) -> str:
        """The directory holding the CPU limit."""
        return f"{self.hierarchy.root}/{self.name}"

    @property
    def directories(self) -> list[str]:
        """Every directory of the group: the limit's, and on v1 a separate accounting one where cpuacct is apart."""
        accounting = f"{self.hierarchy.accounting_root}/{self.name}"
        return [self.path] if accounting == self.path else [self.path, accounting]

    def exists(self, runner: CommandRunner) -> bool:
        return runner.run(["test", "-d", self.path]).returncode == 0

    def create(self, runner: CommandRunner) -> list[str]:
        """Make the group's missing directories (on v2 after enabling the cpu controller for the parent's
        children); the directories made."""
        if self.hierarchy.version == 2:
            runner.write_file(f"{self.path.rsplit('/', 1)[0]}/cgroup.subtree_control", "+cpu\n")
        made = [directory for directory in self.directories if runner.run(["test", "-d", directory]).returncode]
        for directory in made:
            runner.output(["mkdir", "-p", directory])
        return made

    def remove(self, runner: CommandRunner) -> list[str]:
        """Remove the group's child groups first, then move the processes still in it to its parent and remove its
        directories; the directories removed."""
        removed = [directory for directory in self.directories if not runner.run(["test", "-d", directory]).returncode]
        children = {line.rsplit("/", 1)[1] for directory in removed for line in runner.output(
            ["find", directory, "-mindepth", "1", "-maxdepth", "1", "-type", "d"]).splitlines()}
        nested = [path for child in sorted(children) for path in CpuCgroup(self.hierarchy, f"{self.name}/{child}")
                  .remove(runner)]
        for directory in removed:
            parent = directory.rsplit("/", 1)[0]
            for pid in runner.read_file(f"{directory}/cgroup.procs").split():
                runner.write_file(f"{parent}/cgroup.procs", f"{pid}\n")
            runner.output(["rmdir", directory])
        return nested + removed

    @property
    def weight_file(self) -> str:
        return f"{self.path}/{'cpu.weight' if self.hierarchy.version == 2 else 'cpu.shares'}"

    @property
    def max_weight(self) -> str:
        """The highest scheduling weight the weight file accepts."""
        return "10000" if self.hierarchy.version == 2 else "262144"

    def read_limit(self, runner: CommandRunner) -> tuple[int | None, int]:
        """(quota, period) in microseconds; quota None when unlimited."""
        if self.hierarchy.version == 2:
            quota_text, period_text = runner.read_file(f"{self.path}/cpu.max").split()
        else:
            quota_text = runner.read_file(f"{self.path}/cpu.cfs_quota_us").strip()
            period_text = runner.read_file(f"{self.path}/cpu.cfs_period_us").strip()
        return (None if quota_text in ("max", "-1") else int(quota_text)), int(period_text)

    def cores(self, runner: CommandRunner) -> float:
        """The limit in cores (quota / period); ``inf`` when unlimited."""
        quota, period = self.read_limit(runner)
        return math.inf if quota is None else quota / period

    def write_limit(self, runner: CommandRunner, quota_us: int, period_us: int) -> None:
        """Allow ``quota_us`` of CPU time per ``period_us``."""
        if self.hierarchy.version == 2:
            runner.write_file(f"{self.path}/cpu.max", f"{quota_us} {period_us}\n")
        else:
            runner.write_file(f"{self.path}/cpu.cfs_period_us", f"{period_us}\n")
            runner.write_file(f"{self.path}/cpu.cfs_quota_us", f"{quota_us}\n")

    def usage_seconds(self, runner: CommandRunner) -> float:
        """CPU time the group's processes have used since it was created."""
        if self.hierarchy.version == 2:
            text = runner.read_file(f"{self.path}/cpu.stat")
            usage = re.search(r"^usage_usec (\d+)$", text, re.M)
            if usage is None:
                raise CommandError(f"{runner.node}: {self.path}/cpu.stat has no usage_usec line")
            return int(usage.group(1)) / 1e6
        return int(runner.read_file(f"{self.hierarchy.accounting_root}/{self.name}/cpuacct.usage")) / 1e9

    def add_process(self, runner: CommandRunner, pid: int) -> bool:
        """Move process ``pid`` into the group (every directory of it); whether it was anywhere outside."""
        moved = False
        for directory in self.directories:
            if str(pid) not in runner.read_file(f"{directory}/cgroup.procs").split():
                runner.write_file(f"{directory}/cgroup.procs", f"{pid}\n")
                moved = True
        return moved
