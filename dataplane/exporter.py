"""The slicebed exporter (root namespace): the allocations the controller applied, per slice.

The local backend ``POST /allocation`` ``{"slice", "cpu_millicores", "bandwidth_mbps"}`` after each
read-back; Prometheus scrapes ``/metrics`` next to the data-plane programs' QoS and user counts.

    python -m dataplane.exporter --mgmt 10.99.0.254:9464
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import Gauge

from dataplane.service import ControlServer, base_parser, stop_event

CPU = Gauge("slicebed_allocation_cpu_millicores", "CPU allocated to the slice's RAN (read back)", ["slice"])
BANDWIDTH = Gauge("slicebed_allocation_bandwidth_mbps", "Transport bandwidth allocated to the slice (read back)",
                  ["slice"])


def publish(body: dict[str, Any] | None) -> dict[str, Any]:
    """POST: record one slice's allocation; GET: nothing to change. Returns what is published."""
    if body:
        name = str(body["slice"])
        cpu, bandwidth = float(body["cpu_millicores"]), float(body["bandwidth_mbps"])
        if not (math.isfinite(cpu) and math.isfinite(bandwidth)) or cpu <= 0 or bandwidth <= 0:
            raise ValueError("cpu_millicores and bandwidth_mbps must be finite and > 0")
        CPU.labels(name).set(cpu)
        BANDWIDTH.labels(name).set(bandwidth)
    return {"slices": sorted({sample.labels["slice"] for metric in CPU.collect() for sample in metric.samples})}


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    stop = stop_event()
    server = ControlServer(args.mgmt, {"allocation": publish}).start()
    try:
        stop.wait()
    finally:
        server.close()


if __name__ == "__main__":
    main()
