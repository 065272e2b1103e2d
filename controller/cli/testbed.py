"""``slicebed testbed up|down|status|check|top|place``: a testbed deployed with Ansible (ansible-runner).

The inventory decides which: ``testbed_mode: local`` (the default; namespaces on this host) or ``lab`` (real nodes,
``playbooks/site.yml``); both are a :class:`~controller.deploy.deployment.Deployment`. ``check`` measures either
(:mod:`controller.deploy.check`, :mod:`controller.testbeds.lab_check`); ``top`` (:mod:`controller.cli.testbed_top`)
watches either; ``place`` moves a slice's UPF between the local testbed's tiers (:mod:`controller.deploy.move`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from collectors.prometheus import PrometheusReader
from controller.cli.common import add_json, console, print_result, print_table, progress_bar
from controller.deploy.ansible_driver import PlaybookResult
from controller.deploy.check import Measurement, check_testbed
from controller.deploy.deployment import Deployment, open_deployment
from controller.deploy.inventory import DEFAULT_INVENTORY, inventory_mode
from controller.deploy.inventory.lab import open_lab_inventory
from controller.deploy.local_deployment import LocalDeployment
from controller.deploy.move import check_move, place_vnf
from controller.testbeds.lab_check import check_lab
from controller.testbeds.ssh_pool import SshRunners
from core.errors import InputError
from core.runstore import RunStore


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``testbed up``, ``down``, ``status``, ``check``, ``top`` and ``place``."""
    testbed = parser.add_subparsers(dest="action", required=True)
    up = testbed.add_parser("up", help="build the testbed (idempotent: a second up changes nothing)")
    up.add_argument("--dry-run", action="store_true",
                    help="Ansible check mode: print what would change, change nothing")
    up.add_argument("--no-dataplane", action="store_true",
                    help="build transport, delay stage and monitoring only, without the data-plane programs")
    up.set_defaults(handler=cmd_testbed_up)
    down = testbed.add_parser("down", help="stop every process and remove every object the testbed created")
    down.set_defaults(handler=cmd_testbed_down)
    status = testbed.add_parser("status", help="what runs now: the local testbed's namespaces, processes "
                                "and Prometheus; a lab's nodes and Prometheus")
    status.set_defaults(handler=cmd_testbed_status)
    check = testbed.add_parser("check", help="measure bandwidth, delay and CPU limits against the configuration (a "
                               "lab: UEs attached, the N3/N6 path, delay between tiers, the slices' throughput caps)")
    check.set_defaults(handler=cmd_testbed_check)
    top = testbed.add_parser("top", help="live view of each slice (users, QoS against threshold, allocation, "
                             "meter rate, RAN CPU) and the shared capacities, from Prometheus")
    top.add_argument("--prometheus-url", help="query this Prometheus instead of the inventory's (the inventory, "
                     "where it exists, still gives the CPU and rate scales)")
    top.add_argument("--experiment", type=Path, help="experiment YAML whose slices' q_thresh are the thresholds")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    top.add_argument("--once", action="store_true", help="print one table and exit (for scripts)")
    top.set_defaults(handler=cmd_testbed_top)
    place = testbed.add_parser("place", help="move a slice's UPF (and its app server) to another tier while its "
                               "users keep streaming (local testbed)",
                               description="Start the slice's UPF and app server on TIER, switch the users over, "
                               "stop the old ones; the delay the UEs see follows the latency matrix (edge 0).")
    place.add_argument("slice", help="a slice of the inventory")
    place.add_argument("vnf", help="the VNF to move: upf (its app server moves with it)")
    place.add_argument("tier", help="edge, regional or central")
    place.set_defaults(handler=cmd_testbed_place)
    for parser in (up, down, status, check, top, place):
        parser.add_argument("--inventory", type=Path, default=DEFAULT_INVENTORY,
                            help="Ansible inventory of the testbed")
        add_json(parser)


def _deployment(args: argparse.Namespace) -> Deployment:
    return open_deployment(args.inventory, dataplane=not getattr(args, "no_dataplane", False))


def _run_playbook(args: argparse.Namespace, action: str) -> int:
    testbed = _deployment(args)
    if action == "up":
        testbed.preflight()  # before the run directory: bad input leaves nothing behind
    dry_run = bool(getattr(args, "dry_run", False))
    run = RunStore(args.runs_dir).create(f"testbed-{action}-{testbed.name}",
                                         {"inventory": str(args.inventory.resolve()), "dry_run": dry_run},
                                         kind="testbed")
    with progress_bar(args.quiet) as progress:
        task = progress.add_task(f"testbed {action}", total=None)

        def on_task(name: str) -> None:
            progress.update(task, advance=1, description=f"testbed {action}: {name[:60]}")

        with run.finishing_on_error():
            if action == "down":
                result = testbed.down(run.path / "ansible", on_task=on_task)
            else:
                result = testbed.up(run.path / "ansible", dry_run=dry_run, on_task=on_task, preflight_done=True)
    run.finish("completed", recap=result.recap, seconds=result.seconds)
    _report(args, result, action, run.path, dry_run)
    return 0


def _report(args: argparse.Namespace, result: PlaybookResult, action: str, run_path: Path, dry_run: bool) -> None:
    summary: dict[str, Any] = {
        "action": action, "dry_run": dry_run, "seconds": round(result.seconds, 1), "ok": result.total("ok"),
        "changed": result.total("changed"), "failed": result.total("failures"), "artifacts": str(result.artifacts),
        "run": str(run_path)}
    if dry_run:
        summary["changes"] = list(result.changes)

    def human() -> None:
        for change in result.changes if dry_run else ():
            print(f"would change: {change}")
        print(f"testbed {action}{' (dry run)' if dry_run else ''}: {summary['ok']} ok, {summary['changed']} changed, "
              f"{summary['failed']} failed in {summary['seconds']} s; run {run_path}")

    print_result(args, summary, human)


def cmd_testbed_up(args: argparse.Namespace) -> int:
    return _run_playbook(args, "up")


def cmd_testbed_down(args: argparse.Namespace) -> int:
    return _run_playbook(args, "down")


def cmd_testbed_status(args: argparse.Namespace) -> int:
    status = _deployment(args).status()
    print_result(args, status, lambda: print_table(f"testbed: {'up' if status['up'] else 'not up'}",
                                                   status_rows(status)))
    return 0


def status_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """A deployment's status as (part, state) rows: one per namespace, process, node, ... and one per plain field."""
    rows = []
    for key, value in status.items():
        if isinstance(value, dict):
            rows += [{"part": f"{key} {name}", "state": state} for name, state in value.items()]
        elif key != "up":
            rows.append({"part": key, "state": value})
    return rows


def cmd_testbed_check(args: argparse.Namespace) -> int:
    if inventory_mode(args.inventory) == "lab":
        measurements = check_lab_inventory(args.inventory)
    else:
        testbed = LocalDeployment.open(args.inventory)
        with console.status("measuring bandwidth, delay and CPU limits"):
            measurements = check_testbed(testbed)
    within = all(m.within_tolerance for m in measurements)
    print_result(args, {"within_tolerance": within, "measurements": [m.as_dict() for m in measurements]},
                 lambda: print_table("configured vs measured", [
                     {"kind": m.kind, "subject": m.subject, "configured": m.configured, "measured": m.measured,
                      "unit": m.unit, "within tolerance": "yes" if m.within_tolerance else "NO"}
                     for m in measurements]))
    return 0 if within else 1


def cmd_testbed_place(args: argparse.Namespace) -> int:
    if inventory_mode(args.inventory) != "local":
        raise InputError(f"{args.inventory}: `testbed place` moves VNFs on the local testbed; a lab places its "
                         "slices with `slicebed place deploy`")
    testbed = LocalDeployment.open(args.inventory)
    check_move(testbed, args.slice, args.vnf, args.tier)  # before the run directory: bad input leaves nothing
    run = RunStore(args.runs_dir).create(f"testbed-place-{testbed.name}",
                                         {"inventory": str(args.inventory.resolve()), "slice": args.slice,
                                          "vnf": args.vnf, "tier": args.tier}, kind="testbed")
    with progress_bar(args.quiet) as progress, run.finishing_on_error():
        task = progress.add_task(f"testbed place {args.slice} {args.vnf} {args.tier}", total=None)
        move = place_vnf(testbed, args.slice, args.vnf, args.tier, run.path / "ansible",
                         lambda name: progress.update(task, advance=1, description=f"testbed place: {name[:60]}"))
    run.finish("completed", **move.as_dict())

    def human() -> None:
        if not move.moved:
            print(f"slice {move.slice}: its {move.vnf} is already on {move.target}; nothing changed")
            return
        print(f"slice {move.slice}: {move.vnf} and app server moved {move.source} -> {move.target} with "
              f"{move.users} users in {move.seconds:.1f} s (switch-over {move.switch_s * 1000:.1f} ms); run {run.path}")
        if move.unmetered:
            print(f"note: slice {move.slice}'s traffic no longer crosses the transport, so its meter (the bandwidth "
                  "allocation) limits nothing until its UPF leaves edge")

    print_result(args, {**move.as_dict(), "run": str(run.path)}, human)
    return 0


def check_lab_inventory(path: Path) -> list[Measurement]:
    """A lab's check (controller.deploy.lab_check): its Prometheus, its nodes over SSH as the lab backend logs in."""
    inventory = open_lab_inventory(path)
    ssh = SshRunners(inventory.settings.ssh)
    try:
        with PrometheusReader(inventory.prometheus_url) as reader, \
                console.status("checking attach, the N3/N6 path, the delay between tiers and the throughput caps"):
            return check_lab(inventory, reader, ssh)
    finally:
        ssh.close()


def cmd_testbed_top(args: argparse.Namespace) -> int:
    from controller.cli.testbed_top import watch_testbed  # pandas and the experiment schema: only for `top`

    return watch_testbed(args)
