"""CPU of a slice's RAN through a cgroup: v2 ``cpu.max`` where the cpu controller is on v2, v1 CFS quota otherwise."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

from controller.actuators.base import ActuatorError, CpuActuator, Interval
from core.commands import CommandRunner, LocalRunner

V2_ROOT = "/sys/fs/cgroup"
PERIOD_US = 100_000


@dataclass(frozen=True)
class CgroupLocation:
    """Where a named cgroup lives on a node and which interface it speaks."""

    version: int
    path: str


def locate(runner: CommandRunner, name: str) -> CgroupLocation:
    """The cgroup ``name`` in the hierarchy whose cpu controller is enabled (v2 preferred).

    Raises:
        ActuatorError: the node has no cpu controller on either hierarchy.
    """
    controllers = runner.run(["cat", f"{V2_ROOT}/cgroup.controllers"])
    if controllers.returncode == 0 and "cpu" in controllers.stdout.split():
        return CgroupLocation(2, f"{V2_ROOT}/{name}")
    for line in runner.read_file("/proc/mounts").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup" and "cpu" in fields[3].split(","):
            return CgroupLocation(1, f"{fields[1]}/{name}")
    raise ActuatorError(f"{runner.node}: no cgroup cpu controller is mounted (neither v2 with 'cpu' in "
                        f"{V2_ROOT}/cgroup.controllers nor a v1 'cpu' hierarchy); mount one or enable it")


class CgroupCpuActuator(CpuActuator):
    """The CPU limit of cgroup ``name`` in millicores, bounds-checked and read back after each change.

    ``scale`` maps the slice's nominal millicores to host CPU: with ``scale=0.25`` an allocation of
    4000 millicores becomes a quota of one host core (the local testbed's 2-core calibration).
    """

    def __init__(self, runner: CommandRunner, name: str, bounds: Interval, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.runner = runner
        self.bounds = bounds
        self.scale = scale
        self.location = locate(runner, name)

    @property
    def path(self) -> str:
        return self.location.path

    def create(self) -> None:
        """Make the cgroup (and, on v2, enable the cpu controller in its parent)."""
        if self.location.version == 2:
            parent = self.path.rsplit("/", 1)[0]
            self.runner.write_file(f"{parent}/cgroup.subtree_control", "+cpu")
        self.runner.output(["mkdir", "-p", self.path])

    def remove(self) -> None:
        """Remove the cgroup (its processes must have exited); nothing happens if it is absent."""
        result = self.runner.run(["rmdir", self.path])
        if result.returncode != 0 and "No such file" not in result.stderr:
            raise ActuatorError(f"{self.runner.node}: cannot remove cgroup {self.path}: {result.stderr.strip()}")

    def exists(self) -> bool:
        return self.runner.run(["test", "-d", self.path]).returncode == 0

    def processes(self) -> list[int]:
        return [int(pid) for pid in self.runner.read_file(f"{self.path}/cgroup.procs").split()]

    def set_cpu(self, millicores: float) -> float:
        self.bounds.check(f"cgroup {self.path}: cpu_millicores", millicores)
        quota = max(1000, round(millicores * self.scale / 1000 * PERIOD_US))
        if self.location.version == 2:
            self.runner.write_file(f"{self.path}/cpu.max", f"{quota} {PERIOD_US}\n")
        else:
            self.runner.write_file(f"{self.path}/cpu.cfs_period_us", f"{PERIOD_US}\n")
            self.runner.write_file(f"{self.path}/cpu.cfs_quota_us", f"{quota}\n")
        effective = self.read_cpu()
        wanted = quota * 1000 / PERIOD_US / self.scale
        if not math.isclose(effective, wanted, rel_tol=1e-6):
            raise ActuatorError(f"cgroup {self.path}: asked for {wanted:g} millicores, the kernel reports "
                                f"{effective:g}")
        return effective

    def read_cpu(self) -> float:
        """Millicores currently allowed (nominal, i.e. divided by ``scale``); ``inf`` when unlimited."""
        if self.location.version == 2:
            quota_text, period_text = self.runner.read_file(f"{self.path}/cpu.max").split()
        else:
            quota_text = self.runner.read_file(f"{self.path}/cpu.cfs_quota_us").strip()
            period_text = self.runner.read_file(f"{self.path}/cpu.cfs_period_us").strip()
        if quota_text in ("max", "-1"):
            return math.inf
        return int(quota_text) / int(period_text) * 1000 / self.scale


def attach(runner: CommandRunner, name: str, pid: int) -> bool:
    """Put process ``pid`` into cgroup ``name`` (cpu, and cpuacct where v1 mounts it apart); whether it moved.

    Used by the dataplane role right after starting the RAN emulator: ``ip netns exec`` hides
    /sys/fs/cgroup, so the move happens from the root namespace.
    """
    group = CgroupCpuActuator(runner, name, Interval(0, math.inf))
    if not group.exists():
        raise ActuatorError(f"{runner.node}: cgroup {group.path} does not exist; bring the testbed up first")
    paths = [group.path]
    accounting = group.path.replace("/cpu/", "/cpuacct/", 1)
    separate_accounting = group.location.version == 1 and accounting != group.path
    if separate_accounting and runner.run(["test", "-d", accounting]).returncode == 0:
        paths.append(accounting)
    moved = False
    for path in paths:
        members = runner.read_file(f"{path}/cgroup.procs").split()
        if str(pid) not in members:
            runner.write_file(f"{path}/cgroup.procs", f"{pid}\n")
            moved = True
    return moved


def main(argv: list[str] | None = None) -> None:
    """``python -m controller.actuators.cgroup attach NAME PID``: prints ``{"changed": bool}``."""
    parser = argparse.ArgumentParser(prog="python -m controller.actuators.cgroup", description=attach.__doc__)
    parser.add_argument("action", choices=("attach",))
    parser.add_argument("name", help="cgroup name below the cpu hierarchy, e.g. sb-edge")
    parser.add_argument("pid", type=int)
    args = parser.parse_args(argv)
    try:
        print(json.dumps({"changed": attach(LocalRunner(), args.name, args.pid)}))
    except ActuatorError as exc:
        raise SystemExit(f"cgroup attach: {exc}") from None


if __name__ == "__main__":
    main()
