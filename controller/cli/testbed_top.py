"""``slicebed testbed top`` (registered in :mod:`controller.cli.testbed`): each slice's users, QoS against its
threshold, allocation and usage, live.

Refreshed every ``--interval`` seconds from the testbed's Prometheus (:mod:`controller.monitor`); ``--once``
prints one table, ``--json`` one JSON object. Ctrl-C (or SIGTERM) ends the live view with status 0.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live

from collectors.prometheus import PrometheusReader, PrometheusUnavailable, RetryPolicy
from controller.cli.common import print_result, terminate_as_interrupt
from controller.deploy.inventory import inventory_mode, load_inventory
from controller.deploy.inventory.lab import open_lab_inventory
from controller.monitor.snapshot import Scales, TopSnapshot, read_snapshot
from controller.monitor.view import render
from controller.spec import load_spec
from core.errors import InputError

TOP_RETRY = RetryPolicy(attempts=3, initial_delay_s=0.25, max_delay_s=1.0, budget_s=3.0)
"""A view refreshed every second gives up on a silent Prometheus within seconds, not the reader's 20 s."""
TOP_TIMEOUT_S = 2.0


def prometheus_url(inventory_path: Path) -> str:
    """Where the inventory's testbed runs Prometheus: 127.0.0.1 on a local testbed; on a lab the lab backend's
    ``prometheus_url``, else the first monitoring server."""
    if inventory_mode(inventory_path) == "local":
        return f"http://127.0.0.1:{load_inventory(inventory_path).settings.prometheus_port}"
    return open_lab_inventory(inventory_path).prometheus_url


def inventory_scales(inventory_path: Path) -> Scales:
    """Host units per nominal unit: a local inventory's ``cpu_scale`` and ``rate_scale``; 1 on a lab."""
    if inventory_mode(inventory_path) != "local":
        return Scales()
    settings = load_inventory(inventory_path).settings
    return Scales(settings.cpu_scale, settings.rate_scale)


def experiment_thresholds(path: Path | None) -> dict[str, float]:
    """Slice name -> q_thresh from an experiment YAML (empty without one)."""
    return {} if path is None else {s.name: s.q_thresh for s in load_spec(path).slices}


def watch_testbed(args: argparse.Namespace) -> int:
    """Run ``testbed top`` with the parsed options: one snapshot (``--once``, ``--json``) or the live view."""
    if not args.interval > 0:
        raise InputError(f"--interval {args.interval:g}: expected a positive number of seconds")
    thresholds = experiment_thresholds(args.experiment)
    url = args.prometheus_url or prometheus_url(args.inventory)
    # with --prometheus-url the inventory only gives the scales, and may be absent (then usage is in host units)
    scales = inventory_scales(args.inventory) if not args.prometheus_url or args.inventory.exists() else Scales()
    with PrometheusReader(url, timeout_s=TOP_TIMEOUT_S, retry=TOP_RETRY) as reader:

        def snapshot() -> TopSnapshot:
            try:
                return read_snapshot(reader, thresholds, scales)
            except PrometheusUnavailable:
                raise PrometheusUnavailable(
                    f"Prometheus at {url} does not answer; is the testbed up? `slicebed testbed up --inventory "
                    f"{args.inventory}` starts it (or pass --prometheus-url)") from None

        first = snapshot()
        if args.json or args.once:
            print_result(args, first.as_dict(), lambda: Console().print(render(first)))
        else:
            watch(first, snapshot, args.interval)
    return 0


def watch(first: TopSnapshot, snapshot: Callable[[], TopSnapshot], interval_s: float) -> None:
    """Show ``first``, then a new snapshot every ``interval_s`` seconds until Ctrl-C or SIGTERM."""
    with terminate_as_interrupt(), Live(render(first), console=Console(), auto_refresh=False) as live:
        tick = time.monotonic()
        try:
            while True:
                tick = max(tick + interval_s, time.monotonic())
                time.sleep(max(0.0, tick - time.monotonic()))
                live.update(render(snapshot()), refresh=True)
        except KeyboardInterrupt:
            return
