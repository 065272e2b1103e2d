"""The slicebed exporter (root namespace): the slices' types, the shared capacities and the allocations applied.

The local backend ``POST /allocation`` ``{"slice", "cpu_millicores", "bandwidth_mbps"}`` after each
read-back; Prometheus scrapes ``/metrics`` next to the data-plane programs' QoS and user counts.

    python -m dataplane.exporter --mgmt 10.99.0.254:9464 --slice-type embb=embb --slice-type voice=urllc \
        --shared-cpu-millicores 8000 --shared-bandwidth-mbps 100
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from prometheus_client import Gauge

from core.slice_types import SLICE_TYPES
from dataplane.service import ControlServer, base_parser, stop_event

CPU = Gauge("slicebed_allocation_cpu_millicores", "CPU allocated to the slice's RAN (read back)", ["slice"])
BANDWIDTH = Gauge("slicebed_allocation_bandwidth_mbps", "Transport bandwidth allocated to the slice (read back)",
                  ["slice"])
INFO = Gauge("slicebed_slice_info", "The slices on the testbed and their types (value 1)", ["slice", "type"])
SHARED_CPU = Gauge("slicebed_shared_cpu_millicores", "CPU the slices' RAN emulators share (nominal millicores)")
SHARED_BANDWIDTH = Gauge("slicebed_shared_bandwidth_mbps", "Transport capacity the slices share (nominal Mbps)")


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
    parser.add_argument("--slice-type", action="append", default=[], type=slice_type, metavar="SLICE=TYPE",
                        help="a slice and its type (repeat for each slice)")
    parser.add_argument("--shared-cpu-millicores", type=float, help="the shared CPU capacity")
    parser.add_argument("--shared-bandwidth-mbps", type=float, help="the shared transport capacity")
    args = parser.parse_args(argv)
    for name, kind in args.slice_type:
        INFO.labels(name, kind).set(1)
    if args.shared_cpu_millicores is not None:
        SHARED_CPU.set(args.shared_cpu_millicores)
    if args.shared_bandwidth_mbps is not None:
        SHARED_BANDWIDTH.set(args.shared_bandwidth_mbps)
    stop = stop_event()
    server = ControlServer(args.mgmt, {"allocation": publish}).start()
    try:
        stop.wait()
    finally:
        server.close()


def slice_type(text: str) -> tuple[str, str]:
    """``SLICE=TYPE`` -> (slice, type), for argparse ``type=``."""
    name, _, kind = text.partition("=")
    if not name or kind not in SLICE_TYPES:
        raise argparse.ArgumentTypeError(f"expected SLICE=TYPE with TYPE one of {', '.join(SLICE_TYPES)}, got {text!r}")
    return name, kind


if __name__ == "__main__":
    main()
