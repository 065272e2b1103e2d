"""`slicebed testbed top`: how long one refresh (every PromQL instant query of a snapshot) takes.

Needs a Prometheus with slicebed series: an up testbed (`slicebed testbed up --inventory inventory/local.yml`)
or any server named with --prometheus-url. Prints the median and slowest of ``--reads`` snapshot reads and
what the last one held; a refresh must stay well below top's 1 s interval.

    .venv/bin/python benchmarks/bench_top.py [--inventory inventory/local.yml | --prometheus-url URL] [--reads 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from collectors.prometheus import PrometheusReader
from controller.cli.testbed_top import TOP_RETRY, TOP_TIMEOUT_S, prometheus_url
from controller.monitor.snapshot import read_snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, default=Path("inventory/local.yml"))
    parser.add_argument("--prometheus-url")
    parser.add_argument("--reads", type=int, default=20)
    args = parser.parse_args()
    url = args.prometheus_url or prometheus_url(args.inventory)
    with PrometheusReader(url, timeout_s=TOP_TIMEOUT_S, retry=TOP_RETRY) as reader:
        seconds = []
        for _ in range(args.reads):
            started = time.perf_counter()
            snapshot = read_snapshot(reader)
            seconds.append(time.perf_counter() - started)
    users = sum(len(view.qos) for view in snapshot.slices)
    print(f"testbed top refresh from {url}: median {statistics.median(seconds) * 1e3:.0f} ms, slowest "
          f"{max(seconds) * 1e3:.0f} ms over {args.reads} reads ({len(snapshot.slices)} slices, {users} users' QoS)")


if __name__ == "__main__":
    main()
