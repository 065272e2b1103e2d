"""``slicebed provision``: create (or ``--destroy``) a lab topology's resources on an OpenStack cloud."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from controller.cli.common import add_json, console, print_result, print_table, progress_bar
from controller.deploy.inventory.documentation import refuse_documentation_addresses
from controller.deploy.provision import Provisioner, connect, write_inventory, write_known_hosts
from controller.deploy.topology import load_topology
from core.errors import InputError


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``provision``."""
    parser.add_argument("--cloud", required=True, help="cloud name in clouds.yaml")
    parser.add_argument("--topology", type=Path, required=True, help="topology file (YAML), e.g. "
                        "topologies/lab.example.yaml")
    parser.add_argument("--clouds-yaml", type=Path, help="clouds.yaml to read (default: the usual places, "
                        "$OS_CLIENT_CONFIG_FILE first)")
    parser.add_argument("--inventory-out", type=Path, help="inventory to write (default: inventory/NAME.yml)")
    parser.add_argument("--destroy", action="store_true", help="delete every resource of the deployment")
    parser.add_argument("--poll-s", type=float, default=2.0, help="seconds between status polls")
    add_json(parser)
    parser.set_defaults(handler=cmd_provision)


def cmd_provision(args: argparse.Namespace) -> int:
    if not 0 < args.poll_s <= 600:
        raise InputError(f"--poll-s must be within (0, 600] seconds, got {args.poll_s:g}")
    topology = load_topology(args.topology)
    if not args.destroy:  # an unedited example: refused before the cloud is asked anything
        refuse_documentation_addresses(args.topology, topology.networks())
    connection = connect(args.cloud, args.clouds_yaml)
    with progress_bar(args.quiet) as progress:
        task = progress.add_task("destroy" if args.destroy else "provision", total=None)

        def step(label: str) -> None:
            progress.update(task, advance=1, description=label)

        provisioner = Provisioner(connection, topology, step, poll_s=args.poll_s)
        if args.destroy:
            deleted = provisioner.destroy()
        else:
            progress.update(task, total=provisioner.steps())
            outcome = provisioner.apply()
    if args.destroy:
        print_result(args, {"deployment": topology.name, "deleted": deleted},
                     lambda: print(f"deleted {len(deleted)} resource(s) of deployment {topology.name}"))
        return 0
    inventory = args.inventory_out or Path("inventory") / f"{topology.name}.yml"
    write_inventory(topology, outcome.hosts, inventory, args.cloud)
    known_hosts = inventory.with_suffix(".known_hosts")
    without_keys = write_known_hosts(outcome.hosts, known_hosts)
    if without_keys:
        console.print(f"[yellow]no SSH host keys on the console of {', '.join(without_keys)}[/]: add them to "
                      f"{known_hosts} after checking their fingerprints (the lab actuators refuse unknown hosts)")
    document: dict[str, Any] = {
        "deployment": topology.name, "inventory": str(inventory), "known_hosts": str(known_hosts),
        "hosts": [{"host": host.name, "tier": host.tier, "address": host.address} for host in outcome.hosts],
        "created": outcome.created, "existing": outcome.existing}

    def human() -> None:
        print_table(f"deployment {topology.name}", document["hosts"])
        print(f"created {len(outcome.created)}, found {len(outcome.existing)}; inventory {inventory}")

    print_result(args, document, human)
    return 0
