"""CPU time and memory of one slice's VNFs (its data-plane programs) on the local testbed.

The RAN emulator's CPU is its cgroup's usage (:mod:`core.cgroups`; the cgroup holds only that process, and its
quota is the slice's CPU allocation); the other programs' CPU is utime + stime of the PID in their PID file
(``/proc/PID/stat``). Memory is each program's resident set (``VmRSS`` of ``/proc/PID/status``). The programs run
in network namespaces but in this host's PID namespace, so ``/proc`` sees them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from controller.deploy.inventory import LocalInventory
from controller.deploy.state import StateDir
from controller.testbeds.base import TestbedUnavailable
from core.cgroups import CpuCgroup, cpu_hierarchy
from core.commands import CommandError, CommandRunner

VNFS = ("app_server", "upf", "ran_emulator", "ue_sink")
"""A slice's programs in downlink order (``dataplane.<vnf>``)."""
RAN = "ran_emulator"


def process_cpu_seconds(runner: CommandRunner, pid: int) -> float:
    """User plus system CPU time process ``pid`` has used (its threads included)."""
    fields = runner.read_file(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()  # the name may hold spaces and ")"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_mib(runner: CommandRunner, pid: int) -> float:
    """Resident memory of process ``pid`` in MiB."""
    status = runner.read_file(f"/proc/{pid}/status")
    resident = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M)
    if resident is None:
        raise CommandError(f"{runner.node}: /proc/{pid}/status has no VmRSS line (the process is exiting)")
    return int(resident.group(1)) / 1024


@dataclass(frozen=True)
class VnfProcess:
    """One running VNF of a slice: its PID and, for the RAN emulator, the cgroup its CPU is counted in."""

    slice_name: str
    vnf: str
    pid: int
    cgroup: CpuCgroup | None = None

    def cpu_seconds(self, runner: CommandRunner) -> float:
        """CPU time used so far: the cgroup's usage where there is one, else the process's."""
        return self.cgroup.usage_seconds(runner) if self.cgroup is not None else process_cpu_seconds(runner, self.pid)

    def rss_mib(self, runner: CommandRunner) -> float:
        return process_rss_mib(runner, self.pid)


def slice_vnfs(inventory: LocalInventory, slice_name: str, runner: CommandRunner) -> list[VnfProcess]:
    """The running VNFs of ``slice_name``, from the testbed's PID files (``dataplane-<slice>-<vnf>.pid``).

    Raises:
        TestbedUnavailable: a program does not run, or the RAN emulator is not in its slice's cgroup.
    """
    state = StateDir(inventory.state_dir)
    group = cpu_hierarchy(runner).group(inventory.slice_cgroup_name(slice_name))
    found = []
    for vnf in VNFS:
        name = f"dataplane-{slice_name}-{vnf}"
        pid = state.alive(name)
        if pid is None:
            raise TestbedUnavailable(f"{state.pid_dir / name}.pid: the {vnf} of slice {slice_name} does not run; "
                                     f"bring the testbed up (`slicebed testbed up --inventory {inventory.path}`)")
        found.append(VnfProcess(slice_name, vnf, pid, group if vnf == RAN else None))
    ran = found[VNFS.index(RAN)]
    members = runner.read_file(f"{group.path}/cgroup.procs").split() if group.exists(runner) else []
    if str(ran.pid) not in members:
        raise TestbedUnavailable(f"the {RAN} of slice {slice_name} (PID {ran.pid}) is not in its cgroup "
                                 f"{group.path}; run `slicebed testbed up --inventory {inventory.path}` again")
    return found
