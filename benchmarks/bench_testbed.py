"""Benchmark the local testbed's deployment: seconds for `up`, a second `up` (and its changed tasks), `down`.

Runs the real playbooks with a fresh prefix, management subnet and ports (so it never touches another
testbed), ``--repeat`` times, and prints each round and the medians next to the targets (up <= 60 s,
second up <= 20 s with 0 changed tasks, down <= 15 s). Needs root.

    python benchmarks/bench_testbed.py [--repeat 3] [--dataplane]
"""

from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from controller.deploy.local_deployment import LocalDeployment

INVENTORY = Path(__file__).resolve().parents[1] / "inventory" / "local.yml"
TARGETS = {"up_s": 60.0, "second_up_s": 20.0, "down_s": 15.0}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_inventory(directory: Path) -> Path:
    """inventory/local.yml with a fresh prefix, management subnet (10.235.x.0/24) and free ports."""
    document = yaml.safe_load(INVENTORY.read_text())
    third = secrets.randbelow(250) + 1
    document["all"]["vars"].update({"testbed_prefix": f"sbb{secrets.token_hex(2)}-",
                                    "mgmt_subnet": f"10.235.{third}.0/24", "mgmt_gateway": f"10.235.{third}.254",
                                    "prometheus_port": free_port(), "node_exporter_port": free_port()})
    for group in document["all"]["children"]["nodes"]["children"].values():
        for host in group["hosts"].values():
            host["mgmt_address"] = host["mgmt_address"].replace("10.99.0.", f"10.235.{third}.")
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def one_round(directory: Path, dataplane: bool) -> dict[str, float]:
    testbed = LocalDeployment.open(bench_inventory(directory), dataplane=dataplane)
    figures: dict[str, float] = {}
    try:
        started = time.monotonic()
        testbed.up(directory / "up1")
        figures["up_s"] = time.monotonic() - started
        started = time.monotonic()
        second = testbed.up(directory / "up2")
        figures["second_up_s"] = time.monotonic() - started
        figures["second_up_changed"] = second.total("changed")
    finally:
        started = time.monotonic()
        testbed.down(directory / "down")
        figures["down_s"] = time.monotonic() - started
    figures["leftovers"] = len(testbed.leftovers())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dataplane", action="store_true", help="include the data-plane programs")
    args = parser.parse_args()
    rounds = []
    for index in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="sbbench-") as directory:
            figures = one_round(Path(directory), args.dataplane)
        rounds.append(figures)
        print(f"round {index + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()), flush=True)
    for key, target in TARGETS.items():
        median = statistics.median(r[key] for r in rounds)
        print(f"median {key}: {median:.1f} (target <= {target:g}){'' if median <= target else '  MISSED'}")
    print(f"second up changed tasks: {[int(r['second_up_changed']) for r in rounds]} (target 0)")
    print(f"leftovers after down: {[int(r['leftovers']) for r in rounds]} (target 0)")


if __name__ == "__main__":
    main()
