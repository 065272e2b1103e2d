"""``slicebed loop run``: a closed-loop experiment on a testbed backend."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.slice_model import pick_device
from controller.campaign.session import begin_session
from controller.cli.common import add_device, console, print_table, progress_bar, terminate_as_interrupt
from controller.loop import ClosedLoop, LoopInputs
from controller.loop_report import write_loop_report
from controller.spec import load_spec, spec_document
from controller.testbeds import BACKENDS, open_testbed
from core.errors import InputError
from core.runstore import RunStore


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``loop run``."""
    loop = parser.add_subparsers(dest="action", required=True)
    loop_run = loop.add_parser("run", help="sweep, retrain, optimize, apply and validate")
    loop_run.add_argument("spec", type=Path, help="experiment spec (YAML)")
    loop_run.add_argument("--testbed", choices=BACKENDS, help="override the spec's testbed backend")
    add_device(loop_run)
    loop_run.set_defaults(handler=cmd_loop_run)


def cmd_loop_run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    backend = args.testbed or spec.testbed.backend
    try:
        inputs = LoopInputs.load(spec)
        testbed = open_testbed(spec, backend)
    except InputError as exc:
        raise InputError(f"{args.spec}: {exc}") from None
    store = RunStore(args.runs_dir)
    device = pick_device(args.device)
    with testbed, terminate_as_interrupt():
        run = store.create(spec.name, spec_document(spec), kind="loop")
        console.print(f"run [bold]{run.id}[/] in {run.path}")
        with run.finishing_on_error():
            run.update_metadata(testbed=backend, spec_file=str(args.spec))
            begin_session(run, testbed)
            with progress_bar(args.quiet) as progress:
                loop = ClosedLoop(spec, inputs, testbed, run, progress, device)
                results = loop.execute()
            markdown_path, html_path = write_loop_report(run, spec, results, loop.final_rounds, backend)
        run.finish("completed")
    print_table("closed-loop results", results[[
        "round", "slice", "traffic", "cpu_millicores", "bandwidth_mbps", "expected_degradation",
        "achieved_degradation", "beta_thresh"]].to_dict("records"))
    print(json.dumps({"run": str(run.path), "report": str(markdown_path), "html": str(html_path)}))
    return 0


