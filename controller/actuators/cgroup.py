"""CPU of a slice's RAN through a cgroup: v2 ``cpu.max`` where the cpu controller is on v2, v1 CFS quota otherwise."""

from __future__ import annotations

import argparse
import json
import math

from controller.actuators.base import ActuatorError, CpuActuator, Interval
from core.cgroups import cpu_hierarchy
from core.commands import CommandError, CommandRunner, LocalRunner

PERIOD_US = 100_000


class CgroupCpuActuator(CpuActuator):
    """The CPU limit of cgroup ``name`` in millicores, bounds-checked and read back after each change.

    The cgroup lives in the hierarchy whose cpu controller is enabled (:mod:`core.cgroups`). ``scale`` maps
    the slice's nominal millicores to host CPU: with ``scale=0.25`` an allocation of 4000 millicores becomes a
    quota of one host core (the local testbed's 2-core calibration).
    """

    def __init__(self, runner: CommandRunner, name: str, bounds: Interval, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.runner = runner
        self.bounds = bounds
        self.scale = scale
        try:
            self.group = cpu_hierarchy(runner).group(name)
        except CommandError as exc:
            raise ActuatorError(str(exc)) from None

    @property
    def path(self) -> str:
        return self.group.path

    def create(self) -> None:
        """Make the cgroup (and, on v2, enable the cpu controller in its parent)."""
        self.group.create(self.runner)

    def remove(self) -> None:
        """Remove the cgroup (a process still in it goes back to the parent group); nothing if it is absent."""
        self.group.remove(self.runner)

    def exists(self) -> bool:
        return self.group.exists(self.runner)

    def processes(self) -> list[int]:
        return [int(pid) for pid in self.runner.read_file(f"{self.path}/cgroup.procs").split()]

    def set_cpu(self, millicores: float) -> float:
        self.bounds.check(f"cgroup {self.path}: cpu_millicores", millicores)
        quota = max(1000, round(millicores * self.scale / 1000 * PERIOD_US))
        self.group.write_limit(self.runner, quota, PERIOD_US)
        effective = self.read_cpu()
        wanted = quota * 1000 / PERIOD_US / self.scale
        if not math.isclose(effective, wanted, rel_tol=1e-6):
            raise ActuatorError(f"cgroup {self.path}: asked for {wanted:g} millicores, the kernel reports "
                                f"{effective:g}")
        return effective

    def read_cpu(self) -> float:
        """Millicores currently allowed (nominal, i.e. divided by ``scale``); ``inf`` when unlimited."""
        return self.group.cores(self.runner) * 1000 / self.scale


def attach(runner: CommandRunner, name: str, pid: int, create: bool = False) -> bool:
    """Put process ``pid`` into cgroup ``name`` (cpu, and cpuacct where v1 mounts it apart); whether anything
    changed. With ``create`` a missing cgroup is made first (its parent must exist).

    Used by the dataplane role right after starting the RAN emulator: ``ip netns exec`` hides
    /sys/fs/cgroup, so the move happens from the root namespace.
    """
    group = CgroupCpuActuator(runner, name, Interval(0, math.inf))
    created = False
    if not group.exists():
        parent = CgroupCpuActuator(runner, name.rpartition("/")[0], Interval(0, math.inf)) if "/" in name else None
        if not create or (parent is not None and not parent.exists()):
            raise ActuatorError(f"{runner.node}: cgroup {group.path} does not exist; bring the testbed up first")
        group.create()
        created = True
    return group.group.add_process(runner, pid) or created


def main(argv: list[str] | None = None) -> None:
    """``python -m controller.actuators.cgroup attach [--create] NAME PID``: prints ``{"changed": bool}``."""
    parser = argparse.ArgumentParser(prog="python -m controller.actuators.cgroup", description=attach.__doc__)
    parser.add_argument("action", choices=("attach",))
    parser.add_argument("name", help="cgroup name below the cpu hierarchy, e.g. sb-edge or sb-edge/embb")
    parser.add_argument("pid", type=int, help="the process to move")
    parser.add_argument("--create", action="store_true", help="create the cgroup if it is missing")
    args = parser.parse_args(argv)
    try:
        changed = attach(LocalRunner(), args.name, args.pid, args.create)
    except ActuatorError as exc:
        raise SystemExit(f"cgroup {args.action}: {exc}") from None
    print(json.dumps({"changed": changed}))


if __name__ == "__main__":
    main()
