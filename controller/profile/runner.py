"""Drive each profiled slice at increasing user counts on the local testbed and measure its VNFs at every step.

Each slice is profiled alone: the other profiled slices carry no users meanwhile. A step sets the users, waits
``settle_s`` seconds, then measures over ``dwell_s`` seconds: each VNF's CPU time (its cores = CPU seconds per
wall second), its resident memory at the end, and the slice's delivered throughput and QoS from Prometheus
(``open_local_testbed(...).collect``). The traffic of every profiled slice is stopped at the end, also on error;
the profile's allocation stays on the slices' cgroups and meters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from controller.actuators.base import Interval
from controller.deploy.inventory import LocalInventory, load_inventory
from controller.deploy.local_deployment import LocalDeployment
from controller.profile.spec import ProfileSpec
from controller.profile.usage import RAN, VnfProcess, slice_vnfs
from controller.testbeds.base import Allocation, TestbedUnavailable
from controller.testbeds.local import LocalTestbed, open_local_testbed
from core.commands import CommandRunner, LocalRunner
from core.errors import InputError

DEMAND_COLUMNS = ("vnf", "slice_type", "slice", "users", "host_cores", "nominal_cores", "memory_mb",
                  "throughput_mbps", "qos", "qos_kind", "at_cpu_quota")
"""One row per VNF and step: cores in host cores and in nominal cores (host / the inventory's ``cpu_scale``),
resident memory in MiB, the slice's delivered throughput (Mbps, all users) and mean QoS over the step."""
AT_QUOTA = 0.9
"""A RAN emulator using this share of its cgroup quota or more is limited by it: its demand may be higher."""


@dataclass(frozen=True)
class ProfileTarget:
    """A validated profile on a testbed that is up: the spec, the inventory and each slice's running VNFs."""

    spec: ProfileSpec
    inventory: LocalInventory
    vnfs: dict[str, list[VnfProcess]]


def prepare_profile(spec: ProfileSpec, inventory_path: Path, source: Path,
                    runner: CommandRunner | None = None) -> ProfileTarget:
    """Check the spec's slices against the inventory and that the testbed is up, before anything is created.

    Raises:
        InputError: a slice the inventory does not have (the message names ``source``).
        TestbedUnavailable: the testbed is not (fully) up.
    """
    inventory = load_inventory(inventory_path)
    deployed = [s.name for s in inventory.settings.slices]
    for index, name in enumerate(spec.slices):
        if name not in deployed:
            raise InputError(f"{source}: slices[{index}]: unknown slice {name!r}; {inventory.path} has "
                             f"{', '.join(deployed)}")
    if not LocalDeployment(inventory).status()["up"]:
        raise TestbedUnavailable(f"the local testbed {inventory.prefix} is not (fully) up; run `slicebed testbed "
                                 f"up --inventory {inventory.path}` first (`slicebed testbed status` says what is "
                                 "missing)")
    runner = runner or LocalRunner()
    return ProfileTarget(spec, inventory, {name: slice_vnfs(inventory, name, runner) for name in spec.slices})


def run_profile(target: ProfileTarget, on_step: Callable[[pd.DataFrame], None] | None = None,
                runner: CommandRunner | None = None) -> pd.DataFrame:
    """Every step of the profile, in order; ``on_step`` gets each step's rows as soon as they are measured."""
    spec, inventory, runner = target.spec, target.inventory, runner or LocalRunner()
    slices = {s.name: s for s in inventory.settings.slices}
    allocation = Allocation(spec.allocation.cpu_millicores, spec.allocation.bandwidth_mbps)
    bounds = {name: (Interval(allocation.cpu_millicores, allocation.cpu_millicores),
                     Interval(allocation.bandwidth_mbps, allocation.bandwidth_mbps)) for name in spec.slices}
    steps = []
    testbed = open_local_testbed(inventory.path, bounds, {name: slices[name].qos for name in spec.slices})
    with testbed:
        try:
            for name in spec.slices:
                testbed.apply(name, allocation)
                testbed.set_traffic(name, 0)  # users left by an earlier run would load the machine
            for name in spec.slices:
                for users in spec.users:
                    rows = measure_step(testbed, target.vnfs[name], users, spec, runner)
                    steps.append(rows)
                    if on_step is not None:
                        on_step(rows)
                testbed.set_traffic(name, 0)
        finally:
            for name in spec.slices:
                with suppress(TestbedUnavailable):  # a testbed that went down carries no traffic
                    testbed.set_traffic(name, 0)
    return pd.concat(steps, ignore_index=True)


def measure_step(testbed: LocalTestbed, vnfs: list[VnfProcess], users: int, spec: ProfileSpec,
                 runner: CommandRunner) -> pd.DataFrame:
    """Drive ``users`` users in the VNFs' slice and measure one step (``DEMAND_COLUMNS``)."""
    name = vnfs[0].slice_name
    slice_vars = next(s for s in testbed.inventory.settings.slices if s.name == name)
    testbed.set_traffic(name, users)
    time.sleep(spec.settle_s)
    before, started = [vnf.cpu_seconds(runner) for vnf in vnfs], time.monotonic()
    samples = testbed.collect(spec.dwell_s)
    after, elapsed = [vnf.cpu_seconds(runner) for vnf in vnfs], time.monotonic() - started
    samples = samples[samples["slice"] == name]
    cpu_scale = testbed.inventory.settings.cpu_scale
    quota_cores = spec.allocation.cpu_millicores / 1000 * cpu_scale
    rows = []
    for vnf, first, last in zip(vnfs, before, after, strict=True):
        cores = (last - first) / elapsed
        rows.append({"vnf": vnf.vnf, "slice_type": slice_vars.type, "slice": name, "users": users,
                     "host_cores": cores, "nominal_cores": cores / cpu_scale, "memory_mb": vnf.rss_mib(runner),
                     "throughput_mbps": float(samples["total_bandwidth_usage"].mean()) if len(samples) else 0.0,
                     "qos": float(samples["qos"].mean()) if len(samples) else math.nan,
                     "qos_kind": slice_vars.qos, "at_cpu_quota": vnf.vnf == RAN and cores >= AT_QUOTA * quota_cores})
    return pd.DataFrame(rows, columns=list(DEMAND_COLUMNS))
