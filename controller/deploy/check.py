"""`slicebed testbed check`: measure bandwidth, delay and CPU limit on the running local testbed.

- Bandwidth (per slice): a TCP iperf3 flow from central to edge marked with the slice's DSCP saturates the
  slice's OpenFlow meter; the rate that passed the meter (meter stats: bytes in minus bytes dropped) over a
  steady window is compared with the meter's configured rate (what the bandwidth actuator last set).
- Delay (per latency entry): UDP echo round trips between the two tiers' transport addresses; half the mean
  round trip against the configured one-way delay.
- CPU (per node with a cgroup): busy loops join the node's cgroup, whose scheduling weight is raised for the
  measurement (so that the quota binds, not other load on the machine); the group's CPU time per second
  (cpuacct.usage, or cpu.stat usage_usec on v2) against quota / period.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from controller.deploy.inventory import LocalInventory
from controller.deploy.local_deployment import LocalDeployment
from core.errors import SlicebedError

BANDWIDTH_TOLERANCE = 0.10
DELAY_TOLERANCE_MS, DELAY_TOLERANCE = 2.0, 0.10
CPU_TOLERANCE = 0.10
IPERF_PORT, PROBE_PORT = 5201, 7777
CGROUP_ROOT = Path("/sys/fs/cgroup")


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

    def as_dict(self) -> dict:
        return {**asdict(self), "within_tolerance": self.within_tolerance}


def _in_netns(netns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def _ofctl(inventory: LocalInventory, *args: str) -> str:
    done = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args],
                          env={**os.environ, "OVS_RUNDIR": str(inventory.state_dir / "ovs")},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CheckError(f"ovs-ofctl {' '.join(args)} failed: {done.stderr.strip()}; is the testbed up?")
    return done.stdout


def meter_rate_mbps(inventory: LocalInventory, meter: int) -> float:
    """The configured rate of OpenFlow meter ``meter``."""
    match = re.search(rf"meter={meter} kbps.*?rate=(\d+)", _ofctl(inventory, "dump-meters", inventory.bridge), re.S)
    if match is None:
        raise CheckError(f"meter {meter} is missing on {inventory.bridge}")
    return int(match.group(1)) / 1000


def meter_passed_bytes(inventory: LocalInventory, meter: int) -> int:
    """Bytes that entered meter ``meter`` minus the bytes its drop band discarded."""
    stats = _ofctl(inventory, "meter-stats", inventory.bridge, f"meter={meter}")
    byte_in = re.search(r"byte_in_count:(\d+)", stats)
    dropped = sum(int(b) for b in re.findall(r"\d+: packet_count:\d+ byte_count:(\d+)", stats))
    if byte_in is None:
        raise CheckError(f"no statistics for meter {meter}")
    return int(byte_in.group(1)) - dropped


def measure_bandwidth(inventory: LocalInventory, window_s: float = 2.5, warmup_s: float = 1.0) -> list[Measurement]:
    results = []
    edge = str(inventory.hosts["edge"].transport_address)
    for index, slice_vars in enumerate(inventory.settings.slices):
        meter = index + 1
        server = subprocess.Popen(_in_netns(inventory.netns("edge"), ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes = [server]
        try:
            time.sleep(0.3)
            seconds = str(math.ceil(warmup_s + window_s + 0.5))
            client = subprocess.Popen(
                _in_netns(inventory.netns("central"), ["iperf3", "-c", edge, "-p", str(IPERF_PORT), "-t", seconds,
                                                      "-S", str(slice_vars.dscp << 2)]),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            processes.append(client)
            time.sleep(warmup_s)
            before, started = meter_passed_bytes(inventory, meter), time.monotonic()
            time.sleep(window_s)
            after, ended = meter_passed_bytes(inventory, meter), time.monotonic()
            output, _ = client.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            raise CheckError("iperf3 central -> edge did not finish within 30 s") from None
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        if client.returncode != 0:
            raise CheckError(f"iperf3 central -> edge failed: {output.strip().splitlines()[-1:]}")
        measured = (after - before) * 8 / (ended - started) / 1e6
        configured = meter_rate_mbps(inventory, meter)
        results.append(Measurement("bandwidth", f"{slice_vars.name}: regional->edge meter {meter}", "Mbit/s",
                                   configured, measured, BANDWIDTH_TOLERANCE * configured,
                                   "TCP iperf3 central->edge with the slice's DSCP; rate passed by the meter"))
    return results


def measure_delay(inventory: LocalInventory, count: int = 40) -> list[Measurement]:
    results = []
    for entry in inventory.settings.latency:
        server = subprocess.Popen(_in_netns(inventory.netns(entry.b), [
            sys.executable, "-m", "dataplane.probe", "serve", "--port", str(PROBE_PORT), "--seconds", "3"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            done = subprocess.run(_in_netns(inventory.netns(entry.a), [
                sys.executable, "-m", "dataplane.probe", "rtt", "--host",
                str(inventory.hosts[entry.b].transport_address), "--port", str(PROBE_PORT), "--count", str(count)]),
                capture_output=True, text=True, check=False, timeout=60)
            rtts = json.loads(done.stdout or "{}").get("rtt_s", []) if done.returncode == 0 else []
        except (subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            raise CheckError(f"delay probe {entry.a} -> {entry.b} failed ({type(exc).__name__})") from None
        finally:
            server.kill()
            server.wait()
        if len(rtts) < count // 2:
            raise CheckError(f"delay probe {entry.a} -> {entry.b} lost {count - len(rtts)} of {count} probes")
        one_way_ms = statistics.fmean(rtts) * 1000 / 2
        jitter_ms = statistics.pstdev(rtts) * 1000 / 2
        results.append(Measurement("delay", f"{entry.a}-{entry.b} one-way", "ms", entry.delay_ms, one_way_ms,
                                   DELAY_TOLERANCE_MS + DELAY_TOLERANCE * entry.delay_ms,
                                   f"half the mean UDP round trip of {len(rtts)} probes; half its std "
                                   f"{jitter_ms:.2f} ms (configured jitter ±{entry.jitter_ms:g} ms)"))
    return results


@dataclass(frozen=True)
class CgroupFiles:
    """A node cgroup's configured cores and the files the CPU check uses."""

    cores: float
    task_files: list[Path]  # files that take a PID
    usage_file: Path  # cpuacct.usage (ns, v1) or cpu.stat (usage_usec, v2)
    weight_file: Path  # cpu.shares (v1) or cpu.weight (v2)
    boosted_weight: str


def _cgroup_files(name: str) -> CgroupFiles:
    v1_cpu, v1_acct = CGROUP_ROOT / "cpu" / name, CGROUP_ROOT / "cpuacct" / name
    if v1_cpu.is_dir():
        quota, period = int((v1_cpu / "cpu.cfs_quota_us").read_text()), int((v1_cpu / "cpu.cfs_period_us").read_text())
        return CgroupFiles(quota / period if quota > 0 else math.inf, [v1_cpu / "tasks", v1_acct / "tasks"],
                           v1_acct / "cpuacct.usage", v1_cpu / "cpu.shares", "262144")
    v2 = CGROUP_ROOT / name
    quota_text, period_text = (v2 / "cpu.max").read_text().split()
    return CgroupFiles(int(quota_text) / int(period_text) if quota_text != "max" else math.inf, [v2 / "cgroup.procs"],
                       v2 / "cpu.stat", v2 / "cpu.weight", "10000")


def _usage_seconds(usage_file: Path) -> float:
    text = usage_file.read_text()
    if usage_file.name == "cpu.stat":
        usage = re.search(r"usage_usec (\d+)", text)
        if usage is None:
            raise CheckError(f"{usage_file} has no usage_usec line")
        return int(usage.group(1)) / 1e6
    return int(text) / 1e9


def measure_cpu(inventory: LocalInventory, window_s: float = 3.0, warmup_s: float = 0.5) -> list[Measurement]:
    results = []
    for host, host_vars in inventory.hosts.items():
        if host_vars.cpu_millicores is None:
            continue
        files = _cgroup_files(inventory.cgroup_name(host))
        cores = files.cores
        machine = os.cpu_count() or 1
        # a high scheduling weight while measuring, so that the quota and not other load binds; restored after
        weight = files.weight_file.read_text().strip()
        loops: list[subprocess.Popen[bytes]] = []
        try:
            loops += [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(min(machine, math.ceil(min(cores, machine)) + 1))]
            files.weight_file.write_text(files.boosted_weight)
            for loop in loops:
                for task_file in files.task_files:
                    task_file.write_text(str(loop.pid))
            time.sleep(warmup_s)
            before, started = _usage_seconds(files.usage_file), time.monotonic()
            time.sleep(window_s)
            measured = (_usage_seconds(files.usage_file) - before) / (time.monotonic() - started)
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
            files.weight_file.write_text(weight)
        note = (f"{len(loops)} busy loops in cgroup {inventory.cgroup_name(host)} (weight raised while measuring) "
                f"on a {machine}-CPU machine")
        if cores >= machine:
            note += "; the limit is at or above the machine's CPUs, so it cannot bind"
        results.append(Measurement("cpu", f"{host} cgroup", "cores", cores, measured, CPU_TOLERANCE * cores, note))
    return results


def check_testbed(testbed: LocalDeployment) -> list[Measurement]:
    """Every measurement, in the order bandwidth, delay, CPU."""
    if not testbed.status()["up"]:
        raise CheckError(f"testbed {testbed.inventory.prefix} is not (fully) up; run `slicebed testbed up` first")
    inventory = testbed.inventory
    return [*measure_bandwidth(inventory), *measure_delay(inventory), *measure_cpu(inventory)]
