"""``slicebed campaign run|resume|schedule``: dataset-collection campaigns that survive crashes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from controller.campaign.schedule import SYSTEMD_DIR, cronjob_manifests, install_systemd_timer, parse_every
from controller.campaign.session import (
    campaign_testbed,
    create_campaign_run,
    is_completed,
    open_campaign_run,
    resumed_testbed,
    run_session,
)
from controller.campaign.spec import CampaignSpec, load_campaign_spec
from controller.cli.common import add_json, console, print_fields, print_result, progress_bar, terminate_as_interrupt
from controller.testbeds import BACKENDS
from controller.testbeds.base import Testbed
from core.errors import InputError
from core.runstore import Run, RunStore, runs_root

EXIT_INCOMPLETE = 1


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``campaign run``, ``campaign resume`` and ``campaign schedule``."""
    campaign = parser.add_subparsers(
        dest="action", required=True)
    run = campaign.add_parser("run", help="run a campaign spec point by point (crash-safe)")
    run.add_argument("spec", type=Path, help="campaign spec (YAML)")
    run.add_argument("--testbed", choices=BACKENDS, help="override the spec's testbed backend")
    add_pace(run)
    add_json(run)
    run.set_defaults(handler=cmd_campaign_run)

    resume = campaign.add_parser("resume", help="finish a crashed, stopped or incomplete campaign run")
    resume.add_argument("run", help="run id (under --runs-dir) or run directory")
    add_pace(resume)
    add_json(resume)
    resume.set_defaults(handler=cmd_campaign_resume)

    schedule = campaign.add_parser("schedule", help="run a campaign periodically (systemd timer or CronJob)")
    schedule.add_argument("spec", type=Path, help="campaign spec (YAML)")
    schedule.add_argument("--every", required=True, help="interval: 30m, 6h, 1d, 1h30m ...")
    schedule.add_argument("--kubernetes", action="store_true",
                          help="print a Kubernetes CronJob manifest (YAML; in --json: its documents) instead")
    schedule.add_argument("--unit-dir", type=Path, default=SYSTEMD_DIR, help="where the systemd units go")
    schedule.add_argument("--no-enable", action="store_true", help="write the units but do not enable the timer")
    schedule.add_argument("--image", default="slicebed:latest", help="container image (--kubernetes)")
    schedule.add_argument("--namespace", default="slicebed", help="namespace (--kubernetes)")
    schedule.add_argument("--runs-claim", default="slicebed-runs", help="PVC holding the runs (--kubernetes)")
    schedule.add_argument("--out", type=Path, help="write the manifest here instead of stdout (--kubernetes)")
    add_json(schedule)
    schedule.set_defaults(handler=cmd_campaign_schedule)


def add_pace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pace", type=float, default=0.0,
                        help="wall seconds per testbed second on the replay twin (0: at once, 1: real time)")


def check_pace(pace: float) -> None:
    if not 0 <= pace <= 100:
        raise InputError(f"--pace {pace:g}: expected a factor within [0, 100] (1 is real time)")


def cmd_campaign_run(args: argparse.Namespace) -> int:
    check_pace(args.pace)
    spec = load_campaign_spec(args.spec)
    backend = args.testbed or spec.testbed.backend
    testbed = campaign_testbed(spec, backend, args.spec)
    run = create_campaign_run(RunStore(args.runs_dir), spec, backend, args.spec)
    console.print(f"campaign run [bold]{run.id}[/] in {run.path}")
    return measure(run, spec, testbed, args)


def cmd_campaign_resume(args: argparse.Namespace) -> int:
    check_pace(args.pace)
    run, spec = open_campaign_run(RunStore(args.runs_dir), args.run)
    if is_completed(run):
        document = {"run": str(run.path), "status": "completed", "note": "nothing left to do"}
        print_result(args, document, lambda: print(f"{run.path}: completed, nothing left to do"))
        return 0
    return measure(run, spec, resumed_testbed(run, spec), args)


def measure(run: Run, spec: CampaignSpec, testbed: Testbed, args: argparse.Namespace) -> int:
    """One session of the campaign: progress on stderr, then the outcome."""
    with terminate_as_interrupt(), progress_bar(args.quiet) as progress:
        result = run_session(run, spec, testbed, progress, pace=args.pace)
    document = result.as_dict()

    def human() -> None:
        print_fields(f"campaign run {run.id}", {key: value for key, value in document.items() if key != "files"})
        for path in result.files:
            print(f"wrote {path}")

    print_result(args, document, human)
    if result.outcome.incomplete:
        first, reason = next(iter(sorted(result.outcome.incomplete.items())))
        print(f"slicebed: {len(result.outcome.incomplete)} point(s) incomplete (e.g. {first}: {reason}); "
              f"`slicebed campaign resume {run.id}` redoes them", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def cmd_campaign_schedule(args: argparse.Namespace) -> int:
    spec = load_campaign_spec(args.spec)  # a schedule of a broken spec would fail at every tick
    every_s = parse_every(args.every)
    if args.kubernetes:
        documents = cronjob_manifests(spec.name, args.spec.read_text(encoding="utf-8"), every_s, args.image,
                                      args.namespace, args.runs_claim)
        text = yaml.safe_dump_all(documents, sort_keys=False)
        if args.out:
            args.out.write_text(text, encoding="utf-8")
            print_result(args, {"manifest": str(args.out)}, lambda: print(f"wrote {args.out}"))
        else:
            print_result(args, {"manifests": documents}, lambda: print(text, end=""))
        return 0
    installed = install_systemd_timer(spec.name, args.spec, every_s, args.unit_dir, runs_root(args.runs_dir),
                                      enable=not args.no_enable)
    document = {"units": [str(path) for path in installed.units], "timer": installed.timer,
                "enabled": installed.enabled}

    def human() -> None:
        for path in installed.units:
            print(f"wrote {path}")
        print(f"timer {installed.timer}: {'enabled' if installed.enabled else 'not enabled'}")

    print_result(args, document, human)
    if installed.problem:
        print(f"slicebed: {installed.problem}: wrote the units but did not enable them; on a systemd host run "
              f"`systemctl daemon-reload && systemctl enable --now {installed.timer}`", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0
