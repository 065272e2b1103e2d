"""The local testbed's host ceiling: total Mbit/s through the whole chain with the delay stages on (and off).

Brings a testbed of its own up (fresh prefix, management subnet and ports; inventory/local.yml otherwise) once per
``--delay`` (``on``: the inventory's latency matrix through the delay stages; ``off``: an empty matrix), offers the
eMBB slice more and more users (12 Mbps each: app server -> UPF (on the slice's placement tier) -> OvS transport with
the slice's and the shared meter -> the delay stage towards edge -> RAN emulator -> UE sinks) and prints, per point,
what the UE sinks received, the loss, the mean one-way delay against the latency matrix, and the CPU each program
used (from /proc/PID/stat). The allocation is lifted so that the figure measures the data plane, not the allocation: the
meters well above the offered load, the RAN's cgroups at the whole host (both stated in the output); the RAN's
ciphering work factor is ``--work-factor`` (the testbed's default is 8, whose ciphering alone costs about one host
core per 80 Mbit/s). The ceiling is the most the sinks received at a point that lost at most 1 % and where no queue
built up: its mean delay within 2 ms + 10 % of the matrix (the testbed's delay tolerance) above the lightest point's.
Needs root.

    sudo .venv/bin/python benchmarks/bench_host_ceiling.py [--delay on off] [--users 2 4 6 8 10] [--work-factor 1]
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

import requests
import yaml

from controller.actuators.base import Interval
from controller.deploy.inventory.programs import program_url
from controller.deploy.local_deployment import LocalDeployment
from controller.testbeds.base import Allocation
from controller.testbeds.local import open_local_testbed

INVENTORY = Path(__file__).resolve().parents[1] / "inventory" / "local.yml"
USER_RATE_MBPS = 12.0
LIFTED_BANDWIDTH_MBPS = 1000.0
CPU_SCALE = 0.5
"""Host cores per nominal core in the benchmark's inventory: 4,000 nominal millicores = the whole 2-core host."""
RAN_MILLICORES = 4000
SETTLE_S = 3
MAX_LOSS = 0.01
TICKS = os.sysconf("SC_CLK_TCK")


def bench_inventory(directory: Path, delay: bool) -> Path:
    """inventory/local.yml with its own prefix, subnet and ports, and the allocation lifted (module docstring)."""
    document = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))
    third = secrets.randbelow(250) + 1
    variables = document["all"]["vars"]
    variables.update({"testbed_prefix": f"sbc{secrets.token_hex(2)}-", "mgmt_subnet": f"10.236.{third}.0/24",
                      "mgmt_gateway": f"10.236.{third}.254", "prometheus_port": 19590 + third % 100 * 2,
                      "node_exporter_port": 19591 + third % 100 * 2, "cpu_scale": CPU_SCALE,
                      "transport_bandwidth_mbps": LIFTED_BANDWIDTH_MBPS * 2})
    if not delay:
        variables["latency"] = []
    for entry in variables["slices"]:
        if entry["name"] == "embb":
            entry["bandwidth_mbps"] = LIFTED_BANDWIDTH_MBPS
    for group in document["all"]["children"]["nodes"]["children"].values():
        for name, host in group["hosts"].items():
            host["mgmt_address"] = host["mgmt_address"].replace("10.99.0.", f"10.236.{third}.")
            if name == "edge":
                host["cpu_millicores"] = RAN_MILLICORES
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def host_busy_seconds() -> float:
    """CPU seconds this host's CPUs spent busy so far (everything but idle and iowait, all processes and interrupts)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICKS


def sink_bytes(url: str) -> int:
    return sum(user["bytes"] for user in requests.get(f"{url}/stats", timeout=5).json()["users"].values())


def mean_delay_ms(url: str) -> float:
    """The mean of the UE sink's per-user one-way delay gauges (last 1 s window), in ms."""
    lines = requests.get(f"{url}/metrics", timeout=5).text.splitlines()
    values = [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("slicebed_user_delay_seconds{")]
    return sum(values) / len(values) * 1000 if values else float("nan")


def short_name(process: str) -> str:
    """``dataplane-embb-upf`` -> ``upf``, ``delayer-edge-from-regional`` -> ``edge<reg``."""
    if process.startswith("dataplane-embb-"):
        return process.removeprefix("dataplane-embb-")
    if process.startswith("delayer-"):
        receiver, sender = process.removeprefix("delayer-").split("-from-")
        return f"{receiver[:4]}<{sender[:3]}"
    return process.removeprefix("ovs-")


def sweep(delay: bool, users_list: list[int], seconds: float, work_factor: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sbceil-") as directory:
        deployment = LocalDeployment.open(bench_inventory(Path(directory), delay))
        try:
            started = time.monotonic()
            deployment.up(Path(directory) / "up", overrides={"dataplane_ran_work_factor": work_factor})
            matrix = ", ".join(f"{e.a}-{e.b} {e.delay_ms:g}+-{e.jitter_ms:g} ms"
                               for e in deployment.inventory.settings.latency) or "empty"
            print(f"\ndelay stages {'on' if delay else 'off'} (latency matrix: {matrix}); testbed up in "
                  f"{time.monotonic() - started:.1f} s", flush=True)
            measure_points(deployment, users_list, seconds)
        finally:
            deployment.down(Path(directory) / "down")
            left = deployment.leftovers()
            if left:
                print(f"left behind: {', '.join(left)}")


def measure_points(deployment: LocalDeployment, users_list: list[int], seconds: float) -> None:
    inventory = deployment.inventory
    embb = next(entry for entry in inventory.settings.slices if entry.name == "embb")
    latency = inventory.delay_ms(embb.upf_tier, "edge")  # the matrix's delay from the UPF's tier to the RAN's
    pids = {name: pid for name, pid in deployment.state.pids().items() if pid}
    busy = [name for name in pids if "mmtc" not in name and "urllc" not in name and "exporter" not in name]
    print(f"{'':>42}CPU used (host cores): the chain's programs, their sum, the whole host (with the kernel's "
          f"softirq work and other jobs)")
    print(f"{'users':>5} {'offered':>8} {'received':>9} {'loss %':>7} {'delay ms':>9} "
          + " ".join(f"{short_name(name)[:10]:>10}" for name in busy) + f" {'chain':>6} {'host':>6}")
    sink = program_url(inventory, "ue_sink", "embb")
    with open_local_testbed(inventory.path, {"embb": (Interval(500, RAN_MILLICORES),
                                                      Interval(1, LIFTED_BANDWIDTH_MBPS))}) as testbed:
        testbed.apply("embb", Allocation(RAN_MILLICORES, LIFTED_BANDWIDTH_MBPS))
        ceiling, light = 0.0, None
        for users in users_list:
            testbed.set_traffic("embb", users)
            time.sleep(SETTLE_S)
            before, cpu_before = sink_bytes(sink), {n: cpu_seconds(pids[n]) for n in busy}
            host_before, started = host_busy_seconds(), time.monotonic()
            time.sleep(seconds)
            received, elapsed = sink_bytes(sink) - before, time.monotonic() - started
            cpu = {n: (cpu_seconds(pids[n]) - cpu_before[n]) / elapsed for n in busy}
            host = (host_busy_seconds() - host_before) / elapsed
            mbps, offered, delay = received * 8 / elapsed / 1e6, users * USER_RATE_MBPS, mean_delay_ms(sink)
            loss = max(0.0, 1 - mbps / offered)
            light = delay if light is None else light
            if loss <= MAX_LOSS and delay <= light + 2 + 0.1 * latency:
                ceiling = max(ceiling, mbps)
            print(f"{users:>5} {offered:>8.1f} {mbps:>9.2f} {loss * 100:>7.1f} {delay:>9.2f} "
                  + " ".join(f"{cpu[n]:>10.2f}" for n in busy) + f" {sum(cpu.values()):>6.2f} {host:>6.2f}", flush=True)
        testbed.set_traffic("embb", 0)
    print(f"ceiling: {ceiling:.1f} Mbit/s received at a point with at most {MAX_LOSS:.0%} lost and no queue "
          f"building up (mean delay at most 2 ms + 10 % of the matrix's {latency:g} ms above the lightest point's)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", nargs="+", choices=("on", "off"), default=["on"],
                        help="with the latency matrix's delay stages, without (an empty matrix), or both in turn")
    parser.add_argument("--users", type=int, nargs="+", default=[2, 4, 6, 8, 10], help="eMBB users per point")
    parser.add_argument("--seconds", type=float, default=8, help="measured seconds per point (after 3 s settling)")
    parser.add_argument("--work-factor", type=int, default=1, help="the RAN's ciphering work factor")
    args = parser.parse_args()
    print(f"eMBB slice, {USER_RATE_MBPS:g} Mbps offered per user; RAN work factor {args.work_factor}; meters "
          f"lifted to {LIFTED_BANDWIDTH_MBPS:g} Mbps (slice) and {2 * LIFTED_BANDWIDTH_MBPS:g} Mbps (shared); RAN "
          f"cgroups lifted to {RAN_MILLICORES} nominal millicores x cpu_scale {CPU_SCALE:g} = "
          f"{RAN_MILLICORES * CPU_SCALE / 1000:g} host cores (this host has {os.cpu_count()})")
    for delay in args.delay:
        sweep(delay == "on", args.users, args.seconds, args.work_factor)


if __name__ == "__main__":
    main()
