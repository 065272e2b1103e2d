"""``slicebed loop run|resume``: a closed-loop experiment on a testbed backend, resumable after a kill."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.slice_model import pick_device
from controller.cli.common import (
    add_device,
    add_json,
    console,
    print_result,
    print_table,
    progress_bar,
    terminate_as_interrupt,
)
from controller.loop.runner import LoopInputs
from controller.loop.session import LoopResult, create_loop_run, is_completed, open_loop_run, run_loop_session
from controller.loop_report import for_people
from controller.spec import ExperimentSpec, load_spec
from controller.testbeds import BACKENDS, open_testbed
from controller.testbeds.base import Testbed
from core.errors import InputError
from core.runstore import Run, RunStore

EXIT_DOES_NOT_HOLD = 1
TABLE = {"round": "round", "level": "level", "traffic": "traffic", "cpu_millicores": "CPU mc",
         "bandwidth_mbps": "Mbps", "expected_degradation": "expected", "achieved_degradation": "measured",
         "beta_thresh": "beta", "verdict": "verdict"}
"""Result columns shown to people, and their headings."""


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``loop run`` and ``loop resume``."""
    loop = parser.add_subparsers(dest="action", required=True)
    loop_run = loop.add_parser("run", help="sweep, retrain, optimize, apply and validate until every level holds")
    loop_run.add_argument("spec", type=Path, help="experiment spec (YAML)")
    loop_run.add_argument("--testbed", choices=BACKENDS, help="override the spec's testbed backend")
    add_options(loop_run)
    loop_run.set_defaults(handler=cmd_loop_run)

    resume = loop.add_parser("resume", help="continue a killed, stopped or interrupted loop where it stopped")
    resume.add_argument("run", help="run id (under --runs-dir) or run directory")
    resume.add_argument("--spec", type=Path, help="refuse to resume unless this spec is the one the loop started with")
    add_options(resume)
    resume.set_defaults(handler=cmd_loop_resume)


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options ``loop run`` and ``loop resume`` share: ``--device`` and ``--json``."""
    add_device(parser)
    add_json(parser)


def cmd_loop_run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    backend = args.testbed or spec.testbed.backend
    try:
        inputs = LoopInputs.load(spec)
        testbed = open_testbed(spec, backend)
    except InputError as exc:
        raise InputError(f"{args.spec}: {exc}") from None
    with testbed:  # opened before the run exists: a testbed that is down leaves no half-made run
        run = create_loop_run(RunStore(args.runs_dir), spec, backend, args.spec)
        console.print(f"run [bold]{run.id}[/] in {run.path}")
        return session(run, spec, inputs, testbed, args)


def cmd_loop_resume(args: argparse.Namespace) -> int:
    run, spec = open_loop_run(RunStore(args.runs_dir), args.run, args.spec)
    if is_completed(run):
        print_result(args, {"run": str(run.path), "status": "completed", "note": "nothing left to do"},
                     lambda: print(f"run {run.id} is completed: nothing left to do ({run.path})"))
        return 0
    try:
        inputs = LoopInputs.load(spec)
        testbed = open_testbed(spec, run.metadata().get("testbed") or spec.testbed.backend)
    except InputError as exc:
        raise InputError(f"{run.path / 'spec.yaml'}: {exc}") from None
    with testbed:
        console.print(f"resuming run [bold]{run.id}[/] in {run.path}")
        return session(run, spec, inputs, testbed, args)


def session(run: Run, spec: ExperimentSpec, inputs: LoopInputs, testbed: Testbed, args: argparse.Namespace) -> int:
    """One session of the loop; the outcome on stdout (a table, or JSON), what did not hold on stderr."""
    with terminate_as_interrupt(), progress_bar(args.quiet) as progress:
        result = run_loop_session(run, spec, inputs, testbed, progress, pick_device(args.device))

    def human() -> None:
        print_table("closed loop: each level's rounds", for_people(result.outcome.results)[list(TABLE)].rename(
            columns=TABLE).to_dict(orient="records"))
        print(f"report: {result.report[0]}")

    print_result(args, result.as_dict(), human)
    return explain(result)


def explain(result: LoopResult) -> int:
    """Say on stderr what did not hold or could not be measured; the exit status (1: a level does not hold)."""
    if result.incomplete_points:
        first, reason = next(iter(sorted(result.incomplete_points.items())))
        print(f"slicebed: {len(result.incomplete_points)} sweep point(s) could not be measured and were left out "
              f"of training (e.g. {first}: {reason}); see {result.run.path / 'events.jsonl'}", file=sys.stderr)
    failing = [level + 1 for level, verdict in sorted(result.outcome.verdicts.items()) if verdict != "pass"]
    if failing:
        print(f"slicebed: level(s) {', '.join(map(str, failing))} did not pass within {result.outcome.rounds} "
              f"round(s); see {result.report[0]}", file=sys.stderr)
        return EXIT_DOES_NOT_HOLD
    return 0
