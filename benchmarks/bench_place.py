"""`slicebed testbed place`: traffic lost across a UPF move and the one-way delay the UEs see on each tier.

Needs an up local testbed (`sudo slicebed testbed up --inventory inventory/local.yml`). A URLLC slice streams with
``--users`` users (500 packets/s each) while its UPF (and app server) moves through ``--tiers``; after each move it
prints how long `place` took, the users' switch-over, the traffic lost across the move (offered minus received
packets over the window that holds it, in seconds of the offered rate) and the one-way delay (mean and p95 of the UE
sink's per-second windows over ``--window-s``) against the latency matrix. The last tier should be where it started.

    sudo .venv/bin/python benchmarks/bench_place.py [--inventory inventory/local.yml] [--slice urllc] [--users 2]
                                                  [--tiers edge central regional]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests

from collectors.prometheus import PrometheusReader
from controller.actuators.base import Interval
from controller.deploy.check import DELAY_TOLERANCE, DELAY_TOLERANCE_MS
from controller.deploy.inventory.local import RAN_HOST
from controller.deploy.inventory.programs import program_url
from controller.deploy.local_deployment import LocalDeployment
from controller.deploy.move import place_vnf
from controller.testbeds.base import Allocation
from controller.testbeds.local import open_local_testbed
from dataplane.sources import SourceSettings


def received_packets(sink: str) -> int:
    """Every user's packets the UE sink at ``sink`` has counted."""
    users = requests.get(f"{sink}/stats", timeout=5).json()["users"]
    return sum(int(user["packets"]) for user in users.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, default=Path("inventory/local.yml"))
    parser.add_argument("--slice", default="urllc", help="a URLLC slice of the inventory (its rate is known)")
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--tiers", nargs="+", default=["edge", "central", "regional"])
    parser.add_argument("--window-s", type=int, default=8, help="seconds of delay samples after each move")
    args = parser.parse_args()
    testbed = LocalDeployment.open(args.inventory)
    inventory = testbed.inventory
    if {s.name: s.type for s in inventory.settings.slices}.get(args.slice) != "urllc":
        parser.error(f"--slice {args.slice}: not a URLLC slice of {args.inventory}")
    offered_pps = args.users * 1000 / SourceSettings.interval_ms
    sink = program_url(inventory, "ue_sink", args.slice)
    prometheus = f"http://127.0.0.1:{inventory.settings.prometheus_port}"
    with tempfile.TemporaryDirectory() as scratch, PrometheusReader(prometheus) as reader, \
            open_local_testbed(args.inventory, {args.slice: (Interval(500, 4000), Interval(1, 40))}) as backend:
        backend.apply(args.slice, Allocation(4000, 12))
        backend.set_traffic(args.slice, args.users)
        time.sleep(3)
        print(f"{args.slice}: {args.users} users, {offered_pps:g} packets/s offered; UPF from "
              f"{testbed.placement()[args.slice]}")
        for number, tier in enumerate(args.tiers):
            before, started = received_packets(sink), time.monotonic()
            move = place_vnf(testbed, args.slice, "upf", tier, Path(scratch) / str(number))
            time.sleep(2)
            lost_s = (offered_pps * (time.monotonic() - started) - (received_packets(sink) - before)) / offered_pps
            samples = backend.collect(args.window_s)
            delay = reader.instant(f'avg_over_time(slicebed_user_delay_seconds{{slice="{args.slice}"}}'
                                   f'[{args.window_s}s])')["value"]
            matrix = inventory.delay_ms(RAN_HOST, move.target)
            mean_ms = statistics.fmean(delay) * 1000
            print(f"-> {tier:8s} place {move.seconds:4.1f} s, switch-over {move.switch_s * 1000:5.1f} ms, lost "
                  f"{lost_s:+.3f} s of traffic; one-way delay mean {mean_ms:6.2f} ms, p95 "
                  f"{samples['qos'].median():6.2f} ms (matrix {matrix:g} ms, within "
                  f"{DELAY_TOLERANCE_MS + DELAY_TOLERANCE * matrix:.1f} ms: "
                  f"{'yes' if abs(mean_ms - matrix) <= DELAY_TOLERANCE_MS + DELAY_TOLERANCE * matrix else 'NO'})")


if __name__ == "__main__":
    main()
