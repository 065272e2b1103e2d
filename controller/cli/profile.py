"""``slicebed profile SPEC``: each slice type's VNF demand (cores, memory) against its users on the local testbed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from controller.cli.common import add_json, print_result, print_table, progress_bar, terminate_as_interrupt
from controller.deploy.inventory import DEFAULT_INVENTORY
from controller.profile.outputs import write_profile_outputs
from controller.profile.runner import prepare_profile, run_profile
from controller.profile.spec import load_profile_spec
from core.runstore import RunStore


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``profile SPEC [--inventory FILE]``."""
    parser.add_argument("spec", type=Path, help="profile spec YAML (e.g. experiments/profile-local-3slices.yaml)")
    parser.add_argument("--inventory", type=Path, help="local-testbed inventory (default: the spec's `inventory`, "
                        f"else {DEFAULT_INVENTORY})")
    add_json(parser)
    parser.set_defaults(handler=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    spec = load_profile_spec(args.spec)
    target = prepare_profile(spec, args.inventory or spec.inventory or DEFAULT_INVENTORY, args.spec)
    run = RunStore(args.runs_dir).create(f"profile-{spec.name}", {
        **spec.model_dump(mode="json"), "inventory": str(target.inventory.path.resolve())}, kind="profile")
    with terminate_as_interrupt(), run.finishing_on_error(), progress_bar(args.quiet) as progress:
        task = progress.add_task(f"profile {spec.name}", total=spec.steps)

        def on_step(rows: pd.DataFrame) -> None:
            run.append_samples(rows, "steps")  # kept step by step: an interrupted profile keeps what it measured
            first = rows.iloc[0]
            progress.update(task, advance=1, description=f"profile {first['slice']}: {first['users']} users done")

        table = run_profile(target, on_step)
        summary = write_profile_outputs(run, target, table)
    run.finish("completed", rows=len(table))

    def human() -> None:
        print_table(f"VNF demand ({summary['csv']})", [
            {"slice type": row["slice_type"], "vnf": row["vnf"], "users": row["users"],
             "host cores": row["host_cores"], "nominal cores": row["nominal_cores"], "memory MiB": row["memory_mb"],
             "slice Mbps": row["throughput_mbps"]} for row in summary["rows"]])
        print(f"run {summary['path']}: demand.csv, plots/cores-vs-users.png, report.md")

    print_result(args, summary, human)
    return 0
