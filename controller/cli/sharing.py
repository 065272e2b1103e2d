"""``slicebed sharing``: robust resource sharing by hypothesis testing (trial phase, regular phase, report)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from controller.cli.common import (
    add_json,
    add_tbs_table,
    console,
    print_result,
    print_table,
    progress_bar,
    terminate_as_interrupt,
)
from controller.sharing.evaluation import cases_per_seed, load_traces, run_trial
from controller.sharing.report import write_outputs
from controller.sharing.reproduce import check_scenarios, run_scenarios, trial_row
from controller.sharing.spec import SharingSpec, load_sharing_spec
from controller.sharing.tbs import load_tbs_table
from core.runstore import RunStore


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``sharing trial`` and ``sharing evaluate``."""
    actions = parser.add_subparsers(dest="action", required=True)
    trial = actions.add_parser("trial", help="fit each slice's chains and provision NoSh and Sh/ShT capacities")
    trial.add_argument("spec", type=Path, help="sharing scenario YAML (see docs/sharing.md)")
    trial.add_argument("--seed", type=int, help="seed of synthetic traces (default: the spec's first)")
    add_tbs_table(trial)
    add_json(trial)
    trial.set_defaults(handler=cmd_sharing_trial)
    evaluate = actions.add_parser("evaluate", help="trial phase, then every scheme on the regular phase with each "
                                  "anomaly; writes tables, figures and a report into a run directory")
    evaluate.add_argument("spec", type=Path, help="sharing scenario YAML (see docs/sharing.md)")
    evaluate.add_argument("--out", type=Path, help="directory the run directory is created in (default: runs root)")
    add_tbs_table(evaluate)
    add_json(evaluate)
    evaluate.set_defaults(handler=cmd_sharing_evaluate)


def cmd_sharing_trial(args: argparse.Namespace) -> int:
    spec = load_sharing_spec(args.spec)
    table = load_tbs_table(args.tbs_table or spec.tbs_table)
    seed = args.seed if args.seed is not None else spec.seeds[0]
    traces = load_traces(spec, table, seed)
    trial = run_trial(traces, spec.components == "joint", spec.provisioning)
    row = trial_row(spec, seed, trial, traces)
    reserved = dict(zip(traces.names, trial.provisioning.reserved, strict=True))

    def human() -> None:
        print_table(f"trial phase of {spec.name} (seed {seed})", [
            {"scheme": "NoSh", "PRBs": trial.provisioning.nosh, "note": ", ".join(f"{k} {v}" for k, v in
                                                                                   reserved.items())},
            {"scheme": "Sh / ShT", "PRBs": trial.provisioning.shared,
             "note": f"{spec.provisioning} rule, saving {row['saving_pct']:.1f} %"}])
        print(row["chains"])

    print_result(args, {**row, "NoSh_reserved": reserved}, human)
    return 0


def cmd_sharing_evaluate(args: argparse.Namespace) -> int:
    spec = load_sharing_spec(args.spec)
    return run_and_report(args, [spec], f"sharing-{spec.name}", f"Robust sharing: {spec.name}",
                          args.tbs_table or spec.tbs_table)


def run_and_report(args: argparse.Namespace, specs: Sequence[SharingSpec], name: str, title: str,
                   tbs_table: Path | None) -> int:
    """Evaluate ``specs`` in a new run directory and print the Table VII summary (or ``--json``)."""
    table = load_tbs_table(tbs_table)
    check_scenarios(specs, table)
    store = RunStore(args.out if args.out is not None else args.runs_dir)
    with terminate_as_interrupt():
        run = store.create(name, {"scenarios": [spec.model_dump(mode="json") for spec in specs],
                                  "tbs_table": str(table.source)}, kind="sharing")
        console.print(f"run [bold]{run.id}[/] in {run.path}")
        with run.finishing_on_error():
            started = time.perf_counter()
            with progress_bar(args.quiet) as progress:
                task = progress.add_task(name, total=sum(cases_per_seed(s) * len(s.seeds) for s in specs))
                results = run_scenarios(specs, table, lambda label: progress.update(task, advance=1,
                                                                                      description=label))
            seconds = time.perf_counter() - started
            summary = write_outputs(run, results.results, results.trial, results.users, seconds, title)
        run.finish("completed", seconds=seconds, seeds=summary["seeds"])

    def human() -> None:
        print_table("Table VII (scenarios weighed equally, mean over seeds)",
                    [{"scheme": scheme, **values} for scheme, values in summary["table7"].items()])
        print(f"report: {run.path / 'report.md'}")

    print_result(args, summary, human)
    return 0
