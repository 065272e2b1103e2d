"""`slicebed testbed check`: measure bandwidth, delay and CPU limit on the running local testbed.

- Bandwidth (per slice): a TCP iperf3 flow from central to edge marked with the slice's DSCP saturates the
  slice's OpenFlow meter; the rate that passed the meter (meter stats: bytes in minus bytes dropped) over a
  steady window is compared with the meter's configured rate (what the bandwidth actuator last set). A slice whose
  UPF is placed on edge is said to be unmetered: its own traffic no longer crosses the transport.
- Delay (per pair of tiers, the pairs without a link of the latency matrix as the path sum): UDP echo round trips
  between the two tiers' transport addresses; half the mean round trip against the configured one-way delay.
- CPU (per node with a cgroup): busy loops join the node's cgroup, whose scheduling weight is raised for the
  measurement (so that the quota binds, not other load on the machine); the group's CPU time per second
  against quota / period.

Every program runs through :class:`~core.commands.LocalRunner` (servers and load as background processes that
are always stopped); meters and cgroups are read with the same code the actuators use.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

from controller.actuators.ovs import SHARED_METER_ID, OvsMeter
from controller.deploy.inventory import LocalInventory
from controller.deploy.inventory.local import RAN_HOST
from controller.deploy.inventory.tiers import Tier
from controller.deploy.local_deployment import LocalDeployment
from core.cgroups import CpuCgroup, cpu_hierarchy
from core.commands import BackgroundProcess, CommandResult, LocalRunner
from core.errors import SlicebedError
from core.retry import Attempts

BANDWIDTH_TOLERANCE = 0.10
DELAY_TOLERANCE_MS, DELAY_TOLERANCE = 2.0, 0.10
CPU_TOLERANCE = 0.10
IPERF_PORT, PROBE_PORT = 5201, 7777
LISTEN_WAIT_S = 10.0
BUSY_LOOP = [sys.executable, "-c", "while True: pass"]


class CheckError(SlicebedError):
    """A measurement could not be taken (a tool failed); the message says which."""


@dataclass(frozen=True)
class Measurement:
    """One configured value next to what was measured."""

    kind: str
    subject: str
    unit: str
    configured: float
    measured: float
    tolerance: float
    detail: str = ""

    @property
    def within_tolerance(self) -> bool:
        return abs(self.measured - self.configured) <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "within_tolerance": self.within_tolerance}


def check_testbed(testbed: LocalDeployment) -> list[Measurement]:
    """Every measurement, in the order bandwidth, delay, CPU."""
    if not testbed.status()["up"]:
        raise CheckError(f"testbed {testbed.inventory.prefix} is not (fully) up; run `slicebed testbed up` first")
    inventory = testbed.inventory
    return [*measure_bandwidth(inventory, testbed.placement()), *measure_delay(inventory), *measure_cpu(inventory)]


def rate_per_second(counter: Callable[[], float], warmup_s: float, window_s: float) -> float:
    """How fast ``counter`` grows over ``window_s`` seconds, after ``warmup_s`` seconds to reach a steady state."""
    time.sleep(warmup_s)
    before, started = counter(), time.monotonic()
    time.sleep(window_s)
    return (counter() - before) / (time.monotonic() - started)


@contextmanager
def listening(runner: LocalRunner, argv: list[str], port: int, protocol: str = "tcp") -> Iterator[BackgroundProcess]:
    """Run server ``argv`` in the background until the block ends, entering once it listens on ``port``."""
    flag = "-Hltn" if protocol == "tcp" else "-Hlun"
    with runner.start(argv) as server:
        attempts = Attempts(LISTEN_WAIT_S, 0.05)
        for _ in attempts:
            if runner.run(["ss", flag, f"sport = :{port}"]).stdout.strip():
                break
            if not server.running():
                raise CheckError(f"{runner.node}: `{' '.join(argv)}` exited: {server.wait(1).stdout.strip()}")
        else:
            raise CheckError(f"{runner.node}: `{' '.join(argv)}` did not listen on {protocol} port {port} within "
                             f"{LISTEN_WAIT_S:g} s")
        yield server


# ---- bandwidth ----

def measure_bandwidth(inventory: LocalInventory, placement: dict[str, Tier], window_s: float = 2.5,
                      warmup_s: float = 1.0) -> list[Measurement]:
    """Each slice's meter with a flow of its DSCP, then the shared meter with an unclassified flow (DSCP 0). A slice
    whose UPF is on the RAN's node (``placement``) has its meter measured too, with a note that it meters none of
    the slice's traffic."""
    slices = [(index + 1, s.name, s.dscp) for index, s in enumerate(inventory.settings.slices)]
    return say_unmetered([meter_bandwidth(inventory, meter_id, name, dscp, window_s, warmup_s)
                          for meter_id, name, dscp in [*slices, (SHARED_METER_ID, "shared transport", 0)]], placement)


def say_unmetered(measured: list[Measurement], placement: dict[str, Tier]) -> list[Measurement]:
    """The bandwidth measurements, those of slices whose UPF is on the RAN's node noted as metering none of the
    slice's traffic (the meter still works: the check's own flow passes it)."""
    unmetered = {name for name, where in placement.items() if where == RAN_HOST}
    return [replace(m, detail=f"{m.detail}; UNMETERED: the slice's UPF is on {RAN_HOST}, its traffic does not "
                              "cross the transport, so this meter (its bandwidth allocation) limits none of it")
            if m.subject.split(":")[0] in unmetered else m for m in measured]


def meter_bandwidth(inventory: LocalInventory, meter_id: int, subject: str, dscp: int, window_s: float,
                    warmup_s: float) -> Measurement:
    """The rate one TCP flow with ``dscp`` gets through meter ``meter_id``, against the meter's rate (both in nominal
    Mbps: divided by the inventory's ``rate_scale``)."""
    meter = OvsMeter(LocalRunner(), inventory.switch_target, meter_id)
    edge = str(inventory.hosts["edge"].transport_address)
    seconds = str(math.ceil(warmup_s + window_s + 0.5))
    client_argv = ["iperf3", "-c", edge, "-p", str(IPERF_PORT), "-t", seconds, "-S", str(dscp << 2)]
    server_runner = LocalRunner(inventory.netns("edge"))
    with listening(server_runner, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)], IPERF_PORT), \
            LocalRunner(inventory.netns("central")).start(client_argv) as client:
        measured = rate_per_second(meter.passed_bytes, warmup_s, window_s) * 8 / 1e6 / inventory.settings.rate_scale
        finished = client.wait(timeout_s=30)
    if finished.returncode != 0:
        raise CheckError(f"iperf3 central -> edge failed: {finished.stdout.strip().splitlines()[-1:]}")
    configured_kbps = meter.rate_kbps()
    if configured_kbps is None:
        raise CheckError(f"meter {meter_id} is missing on {inventory.bridge}; run `slicebed testbed up` again")
    configured = configured_kbps / 1000 / inventory.settings.rate_scale
    return Measurement("bandwidth", f"{subject}: central->edge meter {meter_id}", "Mbps", configured,
                       measured, BANDWIDTH_TOLERANCE * configured,
                       f"TCP iperf3 central->edge with DSCP {dscp}; rate passed by the meter (nominal: host Mbit/s "
                       f"/ rate_scale {inventory.settings.rate_scale:g})")


# ---- delay ----

def measure_delay(inventory: LocalInventory, count: int = 40) -> list[Measurement]:
    """Every pair of tiers (a UPF can sit on any), the pairs without a link of the matrix as the path sum."""
    return [link_delay(inventory, pair, count) for pair in inventory.tier_delays]


def link_delay(inventory: LocalInventory, pair: dict[str, Any], count: int) -> Measurement:
    """Half the mean UDP round trip from tier ``pair["a"]`` to tier ``pair["b"]``, against the configured delay."""
    a, b = pair["a"], pair["b"]
    probe = [sys.executable, "-m", "dataplane.probe"]
    server = [*probe, "serve", "--port", str(PROBE_PORT), "--seconds", "3"]
    client = [*probe, "rtt", "--host", str(inventory.hosts[b].transport_address), "--port", str(PROBE_PORT),
              "--count", str(count)]
    with listening(LocalRunner(inventory.netns(b)), server, PROBE_PORT, "udp"):
        done = LocalRunner(inventory.netns(a)).run(client, timeout_s=60)
    derived = " (derived: the path sum of the matrix's links)" if pair["derived"] else ""
    return delay_measurement(f"{a} -> {b}", f"{a}-{b} one-way", done, count, pair["delay_ms"], pair["jitter_ms"],
                             derived)


def delay_measurement(probe: str, subject: str, done: CommandResult, count: int, delay_ms: float, jitter_ms: float,
                      note: str = "") -> Measurement:
    """The configured one-way delay against half the mean round trip the ``dataplane.probe rtt`` run ``done``
    printed; fewer than half the ``count`` probes back, or no JSON, is a CheckError naming ``probe``."""
    try:
        rtts = json.loads(done.stdout or "{}").get("rtt_s", []) if done.returncode == 0 else []
    except json.JSONDecodeError:
        raise CheckError(f"delay probe {probe} printed no JSON: {done.stdout[:80]!r}") from None
    if len(rtts) < count // 2:
        raise CheckError(f"delay probe {probe} lost {count - len(rtts)} of {count} probes"
                         + (f": {done.stderr.strip()[-200:]}" if done.stderr.strip() else ""))
    one_way_ms = statistics.fmean(rtts) * 1000 / 2
    measured_jitter_ms = statistics.pstdev(rtts) * 1000 / 2
    return Measurement("delay", subject, "ms", delay_ms, one_way_ms, DELAY_TOLERANCE_MS + DELAY_TOLERANCE * delay_ms,
                       f"half the mean UDP round trip of {len(rtts)} probes; half its std {measured_jitter_ms:.2f} ms "
                       f"(configured jitter ±{jitter_ms:g} ms){note}")


# ---- CPU ----

def measure_cpu(inventory: LocalInventory, window_s: float = 3.0, warmup_s: float = 0.5) -> list[Measurement]:
    """Every node cgroup (for edge: the CPU the slices share), then each slice's RAN cgroup that has a limit of its
    own below the shared one (the allocation the CPU actuator last set)."""
    runner = LocalRunner()
    hierarchy = cpu_hierarchy(runner)
    groups = [(hierarchy.group(inventory.cgroup_name(host)), f"{host} cgroup")
              for host, host_vars in inventory.hosts.items() if host_vars.cpu_millicores is not None]
    shared_cores = hierarchy.group(inventory.cgroup_name(RAN_HOST)).cores(runner)
    for slice_vars in inventory.settings.slices:
        group = hierarchy.group(inventory.slice_cgroup_name(slice_vars.name))
        if group.exists(runner) and group.cores(runner) < shared_cores:
            groups.append((group, f"{slice_vars.name} RAN cgroup"))
    return [cgroup_cpu(runner, group, subject, window_s, warmup_s) for group, subject in groups]


def cgroup_cpu(runner: LocalRunner, group: CpuCgroup, subject: str, window_s: float, warmup_s: float) -> Measurement:
    """The CPU time per second busy loops in ``group`` get, against the group's quota / period."""
    cores = group.cores(runner)
    machine = os.cpu_count() or 1
    loops = min(machine, math.ceil(min(cores, machine)) + 1)
    with ExitStack() as stack, raised_weight(runner, group):
        for _ in range(loops):
            group.add_process(runner, stack.enter_context(runner.start(BUSY_LOOP)).pid)
        measured = rate_per_second(lambda: group.usage_seconds(runner), warmup_s, window_s)
    note = f"{loops} busy loops in cgroup {group.name} (weight raised while measuring) on a {machine}-CPU machine"
    if cores >= machine:
        note += "; the limit is at or above the machine's CPUs, so it cannot bind"
    return Measurement("cpu", subject, "host cores", cores, measured, CPU_TOLERANCE * cores, note)


@contextmanager
def raised_weight(runner: LocalRunner, group: CpuCgroup) -> Iterator[None]:
    """The group's scheduling weight at its maximum while the block runs (so that the quota, not other load on
    the machine, binds), restored afterwards."""
    weight = runner.read_file(group.weight_file).strip()
    runner.write_file(group.weight_file, group.max_weight)
    try:
        yield
    finally:
        runner.write_file(group.weight_file, weight)

