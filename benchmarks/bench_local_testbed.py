"""Local testbed: RAN throughput against the CPU quota, and delivered throughput against the bandwidth cap.

Needs an up testbed (`slicebed testbed up --inventory inventory/local.yml`). Drives it through the
`local` backend (actuators, app server, Prometheus) and prints, per point, the per-user QoS and total
throughput from Prometheus, and for the CPU sweep the RAN emulator's CPU use measured by its cgroup.

    .venv/bin/python benchmarks/bench_local_testbed.py [--inventory inventory/local.yml] [--seconds 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from controller.actuators.base import Interval
from controller.testbeds.base import Allocation
from controller.testbeds.local import LocalTestbed, open_local_testbed

SETTLE_S = 3


def cgroup_usage_seconds(testbed: LocalTestbed) -> float | None:
    """CPU seconds used by the RAN cgroup so far (v1 cpuacct), or None where it is not available."""
    name = testbed.inventory.cgroup_name("edge")
    usage = Path("/sys/fs/cgroup/cpuacct") / name / "cpuacct.usage"
    return int(usage.read_text()) / 1e9 if usage.exists() else None


def measure(testbed: LocalTestbed, users: int, cpu: float, bandwidth: float, seconds: int) -> dict[str, float]:
    """Hold one point; the QoS, the total and the RAN's CPU share (millicores of this host) after settling."""
    testbed.apply("embb", Allocation(cpu, bandwidth))
    testbed.set_traffic("embb", users)
    time.sleep(SETTLE_S)
    before, started = cgroup_usage_seconds(testbed), time.monotonic()
    samples = testbed.collect(seconds)
    after, elapsed = cgroup_usage_seconds(testbed), time.monotonic() - started
    share = (after - before) / elapsed * 1000 if before is not None and after is not None else float("nan")
    return {"qos": samples["qos"].mean(), "total": samples["total_bandwidth_usage"].mean(), "ran_millicores": share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, default=Path("inventory/local.yml"))
    parser.add_argument("--seconds", type=int, default=8, help="measured seconds per point (after 3 s settling)")
    args = parser.parse_args()
    with open_local_testbed(args.inventory, {"embb": (Interval(500, 4000), Interval(5, 40))}) as testbed:
        scale = testbed.cpu["embb"].scale  # type: ignore[attr-defined]
        print(f"RAN throughput vs CPU quota (5 users x 12 Mbps offered, bandwidth 40 Mbps; 1 nominal core = "
              f"{scale:g} host core)")
        print(f"{'CPU (nominal mc)':>17} {'quota (host mc)':>16} {'RAN used (host mc)':>19} {'total Mbps':>11} "
              f"{'QoS Mbps/user':>14}")
        for cpu in (500, 1000, 2000, 3000, 4000):
            point = measure(testbed, 5, cpu, 40, args.seconds)
            print(f"{cpu:>17} {cpu * scale:>16.0f} {point['ran_millicores']:>19.0f} {point['total']:>11.2f} "
                  f"{point['qos']:>14.2f}")
        print("\nDelivered throughput vs bandwidth cap (3 users x 12 Mbps offered, CPU 4000)")
        print(f"{'cap Mbps':>9} {'measured Mbps':>14} {'measured / cap':>15}")
        for cap in (5, 10, 15, 20, 30, 40):
            point = measure(testbed, 3, 4000, cap, args.seconds)
            print(f"{cap:>9} {point['total']:>14.2f} {point['total'] / cap:>15.2f}")


if __name__ == "__main__":
    main()
