"""The local testbed's host ceiling: total Mbit/s through the whole chain with the delay stage on, per delay stage.

Brings a testbed of its own up (fresh prefix, management subnet and ports; inventory/local.yml otherwise) once per
``--stage``, offers the eMBB slice more and more users (12 Mbps each: app server -> UPF -> OvS transport with the
slice's and the shared meter -> delay stages -> RAN emulator -> UE sinks) and prints, per point, what the UE
sinks received, the loss, the mean one-way delay against the latency matrix, and the CPU each program used (from
/proc/PID/stat). The allocation is lifted so that the figure measures the data plane, not the allocation: the
meters well above the offered load, the RAN's cgroups at the whole host (both stated in the output); the RAN's
ciphering work factor is ``--work-factor`` (the testbed's default is 8, whose ciphering alone costs about one host
core per 80 Mbit/s). Needs root.

    sudo .venv/bin/python benchmarks/bench_host_ceiling.py [--stage python compiled] [--users 2 4 6 8 10]
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
from controller.deploy.local_deployment import LocalDeployment
from controller.testbeds.base import Allocation
from controller.testbeds.local import open_local_testbed, program_url

INVENTORY = Path(__file__).resolve().parents[1] / "inventory" / "local.yml"
USER_RATE_MBPS = 12.0
LIFTED_BANDWIDTH_MBPS = 1000.0
CPU_SCALE = 0.5
"""Host cores per nominal core in the benchmark's inventory: 4,000 nominal millicores = the whole 2-core host."""
RAN_MILLICORES = 4000
SETTLE_S = 3
TICKS = os.sysconf("SC_CLK_TCK")


def bench_inventory(directory: Path) -> Path:
    """inventory/local.yml with its own prefix, subnet and ports, and the allocation lifted (module docstring)."""
    document = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))
    third = secrets.randbelow(250) + 1
    variables = document["all"]["vars"]
    variables.update({"testbed_prefix": f"sbc{secrets.token_hex(2)}-", "mgmt_subnet": f"10.236.{third}.0/24",
                      "mgmt_gateway": f"10.236.{third}.254", "prometheus_port": 19590 + third % 100 * 2,
                      "node_exporter_port": 19591 + third % 100 * 2, "cpu_scale": CPU_SCALE,
                      "transport_bandwidth_mbps": LIFTED_BANDWIDTH_MBPS * 2})
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


def sink_bytes(url: str) -> int:
    return sum(user["bytes"] for user in requests.get(f"{url}/stats", timeout=5).json()["users"].values())


def mean_delay_ms(url: str) -> float:
    """The mean of the UE sink's per-user one-way delay gauges (last 1 s window), in ms."""
    lines = requests.get(f"{url}/metrics", timeout=5).text.splitlines()
    values = [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("slicebed_user_delay_seconds{")]
    return sum(values) / len(values) * 1000 if values else float("nan")


def short_name(process: str) -> str:
    """``dataplane-embb-upf`` -> ``upf``, ``delayer-edge-from-regional`` -> ``delay edge<regional``."""
    if process.startswith("dataplane-embb-"):
        return process.removeprefix("dataplane-embb-")
    if process.startswith("delayer-"):
        receiver, sender = process.removeprefix("delayer-").split("-from-")
        return f"delay {receiver}<{sender}"
    return process


def sweep(stage: str, users_list: list[int], seconds: float, work_factor: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sbceil-") as directory:
        deployment = LocalDeployment.open(bench_inventory(Path(directory)))
        overrides = {"dataplane_ran_work_factor": work_factor, "netem_stage": stage}
        try:
            started = time.monotonic()
            deployment.up(Path(directory) / "up", overrides=overrides)
            print(f"\ndelay stage {stage}: testbed up in {time.monotonic() - started:.1f} s", flush=True)
            measure_points(deployment, users_list, seconds)
        finally:
            deployment.down(Path(directory) / "down")
            left = deployment.leftovers()
            if left:
                print(f"left behind: {', '.join(left)}")


def measure_points(deployment: LocalDeployment, users_list: list[int], seconds: float) -> None:
    inventory = deployment.inventory
    latency = sum(entry.delay_ms for entry in inventory.settings.latency)
    pids = {name: pid for name, pid in deployment.state.pids().items() if pid}
    busy = [name for name in pids if "mmtc" not in name and "urllc" not in name and "exporter" not in name]
    columns = [short_name(name) for name in busy]
    print(f"{'users':>5} {'offered':>8} {'received':>9} {'loss %':>7} {'delay ms':>9}  CPU (host cores): "
          + " ".join(f"{c:>8}" for c in columns) + f" {'total':>6}")
    sink = program_url(inventory, "ue", "embb")
    with open_local_testbed(inventory.path, {"embb": (Interval(500, RAN_MILLICORES),
                                                      Interval(1, LIFTED_BANDWIDTH_MBPS))}) as testbed:
        testbed.apply("embb", Allocation(RAN_MILLICORES, LIFTED_BANDWIDTH_MBPS))
        best = 0.0
        for users in users_list:
            testbed.set_traffic("embb", users)
            time.sleep(SETTLE_S)
            before, cpu_before, started = sink_bytes(sink), {n: cpu_seconds(pids[n]) for n in busy}, time.monotonic()
            time.sleep(seconds)
            received, elapsed = sink_bytes(sink) - before, time.monotonic() - started
            cpu = {n: (cpu_seconds(pids[n]) - cpu_before[n]) / elapsed for n in busy}
            mbps, offered = received * 8 / elapsed / 1e6, users * USER_RATE_MBPS
            best = max(best, mbps)
            print(f"{users:>5} {offered:>8.1f} {mbps:>9.2f} {max(0.0, 1 - mbps / offered) * 100:>7.1f} "
                  f"{mean_delay_ms(sink):>9.2f}  {'':17}" + " ".join(f"{cpu[n]:>8.2f}" for n in busy)
                  + f" {sum(cpu.values()):>6.2f}", flush=True)
        testbed.set_traffic("embb", 0)
    print(f"ceiling with the {deployment_stage_label(latency)}: {best:.1f} Mbit/s received")


def deployment_stage_label(latency_ms: float) -> str:
    return f"delay stages on ({latency_ms:g} ms one way in total from the matrix)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", nargs="+", choices=("python", "compiled"), default=["python", "compiled"],
                        help="delay stage program(s) to measure, one testbed each")
    parser.add_argument("--users", type=int, nargs="+", default=[2, 4, 6, 8, 10], help="eMBB users per point")
    parser.add_argument("--seconds", type=float, default=8, help="measured seconds per point (after 3 s settling)")
    parser.add_argument("--work-factor", type=int, default=1, help="the RAN's ciphering work factor")
    args = parser.parse_args()
    print(f"eMBB slice, {USER_RATE_MBPS:g} Mbps offered per user; RAN work factor {args.work_factor}; meters "
          f"lifted to {LIFTED_BANDWIDTH_MBPS:g} Mbps (slice) and {2 * LIFTED_BANDWIDTH_MBPS:g} Mbps (shared); RAN "
          f"cgroups lifted to {RAN_MILLICORES} nominal millicores x cpu_scale {CPU_SCALE:g} = "
          f"{RAN_MILLICORES * CPU_SCALE / 1000:g} host cores (this host has {os.cpu_count()})")
    for stage in args.stage:
        sweep(stage, args.users, args.seconds, args.work_factor)


if __name__ == "__main__":
    main()
