"""``slicebed campaign run|resume|schedule``: dataset-collection campaigns that survive crashes."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from controller.campaign.export import export_dataset
from controller.campaign.runner import (
    CampaignRunner,
    CampaignStopped,
    campaign_lock,
    continue_replay,
    prometheus_reader,
    stop_if_disk_full,
)
from controller.campaign.schedule import cronjob_manifests, parse_every, systemd_units, unit_name
from controller.campaign.spec import CampaignSpec, campaign_from_document, load_campaign_spec
from controller.cli.common import console, progress_bar, terminate_as_interrupt
from controller.testbeds import BACKENDS, open_testbed
from controller.testbeds.base import Testbed
from core.errors import InputError
from core.runstore import Run, RunStore, utc_now
from core.yamlfile import read_yaml

KIND = "campaign"
EXIT_INCOMPLETE = 1
SYSTEMD_DIR = Path("/etc/systemd/system")


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``campaign run``, ``campaign resume`` and ``campaign schedule``."""
    campaign = parser.add_subparsers(
        dest="action", required=True)
    run = campaign.add_parser("run", help="run a campaign spec point by point (crash-safe)")
    run.add_argument("spec", type=Path, help="campaign spec (YAML)")
    run.add_argument("--testbed", choices=BACKENDS, help="override the spec's testbed backend")
    add_pace(run)
    run.set_defaults(handler=cmd_campaign_run)

    resume = campaign.add_parser("resume", help="finish a crashed, stopped or incomplete campaign run")
    resume.add_argument("run", help="run id (under --runs-dir) or run directory")
    add_pace(resume)
    resume.set_defaults(handler=cmd_campaign_resume)

    schedule = campaign.add_parser("schedule", help="run a campaign periodically (systemd timer or CronJob)")
    schedule.add_argument("spec", type=Path, help="campaign spec (YAML)")
    schedule.add_argument("--every", required=True, help="interval: 30m, 6h, 1d, 1h30m ...")
    schedule.add_argument("--kubernetes", action="store_true", help="emit a Kubernetes CronJob manifest instead")
    schedule.add_argument("--unit-dir", type=Path, default=SYSTEMD_DIR, help="where the systemd units go")
    schedule.add_argument("--no-enable", action="store_true", help="write the units but do not enable the timer")
    schedule.add_argument("--image", default="slicebed:latest", help="container image (--kubernetes)")
    schedule.add_argument("--namespace", default="slicebed", help="namespace (--kubernetes)")
    schedule.add_argument("--runs-claim", default="slicebed-runs", help="PVC holding the runs (--kubernetes)")
    schedule.add_argument("--out", type=Path, help="write the manifest here instead of stdout (--kubernetes)")
    schedule.set_defaults(handler=cmd_campaign_schedule)


def add_pace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pace", type=float, default=0.0,
                        help="wall seconds per testbed second on the replay twin (0: at once, 1: real time)")


def cmd_campaign_run(args: argparse.Namespace) -> int:
    check_pace(args.pace)
    spec = load_campaign_spec(args.spec)
    backend = args.testbed or spec.testbed.backend
    testbed = open_campaign_testbed(spec, backend, args.spec)
    run = RunStore(args.runs_dir).create(spec.name, spec.model_dump(mode="json"), kind=KIND)
    run.update_metadata(testbed=backend, spec_file=str(args.spec), seed=spec.seed, points_total=spec.points,
                        sessions=[])
    console.print(f"campaign run [bold]{run.id}[/] in {run.path}")
    return execute(run, spec, testbed, args)


def cmd_campaign_resume(args: argparse.Namespace) -> int:
    check_pace(args.pace)
    run = RunStore(args.runs_dir).open(args.run)
    metadata = run.metadata()
    if metadata.get("kind") != KIND:
        raise InputError(f"{run.path}: a {metadata.get('kind')!r} run, not a campaign; only campaigns resume")
    spec = campaign_from_document(read_yaml(run.path / "spec.yaml"), run.path / "spec.yaml")
    if metadata.get("status") == "completed":
        print(json.dumps({"run": str(run.path), "status": "completed", "note": "nothing left to do"}))
        return 0
    testbed = open_campaign_testbed(spec, metadata.get("testbed") or spec.testbed.backend, run.path / "spec.yaml")
    return execute(run, spec, testbed, args)


def check_pace(pace: float) -> None:
    if not 0 <= pace <= 100:
        raise InputError(f"--pace {pace:g}: expected a factor within [0, 100] (1 is real time)")


def open_campaign_testbed(spec: CampaignSpec, backend: str, source: Path) -> Testbed:
    """The campaign's testbed (the backends take any spec with ``testbed``, ``slices`` and ``seed``)."""
    try:
        return open_testbed(spec, backend)  # type: ignore[arg-type]
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def execute(run: Run, spec: CampaignSpec, testbed: Testbed, args: argparse.Namespace) -> int:
    """Run the pending points of ``run`` under its lock, then export the dataset and record the outcome."""
    with campaign_lock(run), testbed, terminate_as_interrupt():
        sessions = [*run.metadata().get("sessions", []), {"pid": os.getpid(), "started": utc_now()}]
        run.update_metadata(status="running", pid=os.getpid(), sessions=sessions, finished=None)
        continue_replay(testbed, run, len(sessions))
        reader = prometheus_reader(spec.prometheus) if spec.prometheus else None
        try:
            with progress_bar(args.quiet) as progress:
                outcome = CampaignRunner(spec, run, testbed, progress, pace=args.pace, reader=reader).execute()
            try:
                files = export_dataset(run, run.path)
            except OSError as exc:
                raise stop_if_disk_full(exc, run, "exporting the dataset") from None
        except KeyboardInterrupt:
            run.finish("interrupted")
            raise
        except CampaignStopped as exc:
            finish_quietly(run, "stopped", error=str(exc))
            raise
        except BaseException as exc:
            finish_quietly(run, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if reader is not None:
                reader.close()
        status = "completed" if not outcome.incomplete else "incomplete"
        run.finish(status, points_completed=outcome.completed, points_incomplete=sorted(outcome.incomplete))
    print(json.dumps({"run": str(run.path), "status": status, "points": outcome.total,
                      "completed": outcome.completed, "incomplete": len(outcome.incomplete),
                      "files": [str(path) for path in files]}))
    if outcome.incomplete:
        first, reason = next(iter(sorted(outcome.incomplete.items())))
        print(f"slicebed: {len(outcome.incomplete)} point(s) incomplete (e.g. {first}: {reason}); "
              f"`slicebed campaign resume {run.id}` redoes them", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def finish_quietly(run: Run, status: str, **fields: object) -> None:
    """Record the final status if the disk still allows it (a full disk must not hide the real error)."""
    with contextlib.suppress(OSError):
        run.finish(status, **fields)


def cmd_campaign_schedule(args: argparse.Namespace) -> int:
    spec = load_campaign_spec(args.spec)  # a schedule of a broken spec would fail at every tick
    every_s = parse_every(args.every)
    if args.kubernetes:
        text = yaml.safe_dump_all(cronjob_manifests(spec.name, args.spec.read_text(encoding="utf-8"), every_s,
                                                    args.image, args.namespace, args.runs_claim), sort_keys=False)
        if args.out:
            args.out.write_text(text, encoding="utf-8")
            print(json.dumps({"manifest": str(args.out)}))
        else:
            sys.stdout.write(text)
        return 0
    slicebed = slicebed_executable()
    runs_dir = Path(args.runs_dir or os.environ.get("SLICEBED_RUNS") or "runs").resolve()
    units = systemd_units(spec.name, args.spec.resolve(), every_s, slicebed, runs_dir, Path.cwd())
    if not args.unit_dir.is_dir():
        raise InputError(f"--unit-dir {args.unit_dir}: no such directory")
    for name, text in units.items():
        (args.unit_dir / name).write_text(text, encoding="utf-8")
    timer = f"{unit_name(spec.name)}.timer"
    written = [str(args.unit_dir / name) for name in units]
    if args.no_enable:
        print(json.dumps({"units": written, "enabled": False}))
        return 0
    problem = systemd_problem()
    if problem:
        print(json.dumps({"units": written, "enabled": False}))
        print(f"slicebed: {problem}: wrote the units but did not enable them; on a systemd host run "
              f"`systemctl daemon-reload && systemctl enable --now {timer}`", file=sys.stderr)
        return EXIT_INCOMPLETE
    for command in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", timer]):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise InputError(f"`{' '.join(command)}` failed: {result.stderr.strip().splitlines()[-1:]}")
    print(json.dumps({"units": written, "enabled": True, "timer": timer}))
    return 0


def slicebed_executable() -> Path:
    """The installed ``slicebed`` script the timer runs: this one, the one beside this Python, or PATH's."""
    candidates = [Path(sys.argv[0]), Path(sys.executable).parent / "slicebed", Path(shutil.which("slicebed") or "")]
    for candidate in candidates:
        if candidate.name == "slicebed" and candidate.is_file():
            return candidate.resolve()
    raise InputError("cannot find the slicebed executable; install slicebed (pip install .) before scheduling")


def systemd_problem() -> str | None:
    """Why the timer cannot be enabled on this host, or None if systemd runs here."""
    if shutil.which("systemctl") is None:
        return "systemctl is not installed"
    if not Path("/run/systemd/system").is_dir():
        return "systemd is not the running init system here (no /run/systemd/system)"
    return None
