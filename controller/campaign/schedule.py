"""Schedules on existing engines: a systemd service + timer for one host, a Kubernetes CronJob for a cluster.

Both run ``slicebed campaign run SPEC`` and never overlap (systemd: a oneshot service is not started
again while it runs; Kubernetes: ``concurrencyPolicy: Forbid``).
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.commands import CommandRunner, LocalRunner
from core.errors import InputError

SYSTEMD_DIR = Path("/etc/systemd/system")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
EVERY = re.compile(r"^(?:\d+[smhdw])+$")


def parse_every(text: str) -> int:
    """``--every`` as seconds: ``90s``, ``30m``, ``6h``, ``1d``, ``1h30m`` (at least one minute)."""
    if not EVERY.match(text.strip()):
        raise InputError(f"--every {text!r}: expected a duration such as 30m, 6h, 1d or 1h30m")
    seconds = sum(int(amount) * UNITS[unit] for amount, unit in re.findall(r"(\d+)([smhdw])", text))
    if seconds < 60:
        raise InputError(f"--every {text!r}: the interval must be at least one minute")
    return seconds


def systemd_duration(seconds: int) -> str:
    """Seconds in systemd's time-span syntax (``6h``, ``1h 30min``)."""
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts)


def unit_name(campaign: str) -> str:
    """``slicebed-campaign-NAME`` with characters systemd and Kubernetes both accept."""
    return "slicebed-campaign-" + re.sub(r"[^a-z0-9-]+", "-", campaign.lower()).strip("-")


def systemd_units(campaign: str, spec: Path, every_s: int, slicebed: Path, runs_dir: Path,
                  working_dir: Path) -> dict[str, str]:
    """The ``.service`` and ``.timer`` files (name -> text) running the campaign every ``every_s`` seconds."""
    name = unit_name(campaign)
    command = shlex.join([str(slicebed), "--quiet", "--runs-dir", str(runs_dir), "campaign", "run", str(spec)])
    service = (
        "[Unit]\n"
        f"Description=slicebed campaign {campaign} ({spec})\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"WorkingDirectory={working_dir}\n"
        f"ExecStart={command}\n"
        "# exit status 1: some points are incomplete (the run says which; `slicebed campaign resume` redoes them)\n"
        "SuccessExitStatus=1\n"
    )
    span = systemd_duration(every_s)
    timer = (
        "[Unit]\n"
        f"Description=run slicebed campaign {campaign} every {span}\n\n"
        "[Timer]\n"
        f"OnActiveSec={span}\n"
        f"OnUnitActiveSec={span}\n"
        f"Unit={name}.service\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {f"{name}.service": service, f"{name}.timer": timer}


def cron_schedule(every_s: int) -> str:
    """A cron expression firing every ``every_s`` seconds, if cron can say it exactly."""
    minutes, rest = divmod(every_s, 60)
    if rest == 0:
        if minutes < 60 and 60 % minutes == 0:
            return f"*/{minutes} * * * *" if minutes > 1 else "* * * * *"
        hours, rest_minutes = divmod(minutes, 60)
        if rest_minutes == 0 and hours < 24 and 24 % hours == 0:
            return f"0 */{hours} * * *" if hours > 1 else "0 * * * *"
        if rest_minutes == 0 and hours == 24:
            return "0 0 * * *"
        if rest_minutes == 0 and hours == 168:
            return "0 0 * * 0"
    raise InputError(f"--every {systemd_duration(every_s)}: a Kubernetes CronJob cannot repeat exactly at that "
                     "interval; use a divisor of an hour or of a day (e.g. 15m, 2h, 6h), 1d or 1w")


def cronjob_manifests(campaign: str, spec_text: str, every_s: int, image: str, namespace: str,
                      runs_claim: str) -> list[dict[str, Any]]:
    """A ConfigMap holding the spec and a CronJob running it from ``image`` into the ``runs_claim`` PVC."""
    name = unit_name(campaign)[:52].rstrip("-")  # CronJob names: at most 52 characters
    labels = {"app.kubernetes.io/name": "slicebed", "app.kubernetes.io/component": "campaign",
              "slicebed/campaign": name.removeprefix("slicebed-campaign-")}
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"campaign.yaml": spec_text},
    }
    container = {
        "name": "campaign",
        "image": image,
        "command": ["slicebed", "--quiet", "--runs-dir", "/runs", "campaign", "run", "/campaign/campaign.yaml"],
        "volumeMounts": [{"name": "spec", "mountPath": "/campaign", "readOnly": True},
                         {"name": "runs", "mountPath": "/runs"}],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
    }
    cron_job = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "schedule": cron_schedule(every_s),
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [container],
                        "volumes": [{"name": "spec", "configMap": {"name": name}},
                                    {"name": "runs", "persistentVolumeClaim": {"claimName": runs_claim}}],
                    },
                },
            }},
        },
    }
    return [config_map, cron_job]


@dataclass(frozen=True)
class TimerInstall:
    """The unit files written and whether the timer runs now (``problem``: why it could not be enabled)."""

    units: list[Path]
    timer: str
    enabled: bool
    problem: str | None = None


def install_systemd_timer(campaign: str, spec: Path, every_s: int, unit_dir: Path, runs_dir: Path, enable: bool,
                          runner: CommandRunner | None = None) -> TimerInstall:
    """Write the campaign's ``.service`` and ``.timer`` into ``unit_dir``; enable the timer if asked and possible.

    Raises:
        InputError: ``unit_dir`` does not exist, or no installed ``slicebed`` script is found.
        CommandError: ``systemctl`` failed.
    """
    if not unit_dir.is_dir():
        raise InputError(f"--unit-dir {unit_dir}: no such directory")
    units = systemd_units(campaign, spec.resolve(), every_s, slicebed_executable(), runs_dir.resolve(), Path.cwd())
    written = []
    for name, text in units.items():
        (unit_dir / name).write_text(text, encoding="utf-8")
        written.append(unit_dir / name)
    timer = f"{unit_name(campaign)}.timer"
    if not enable:
        return TimerInstall(written, timer, enabled=False)
    problem = systemd_problem()
    if problem:
        return TimerInstall(written, timer, enabled=False, problem=problem)
    runner = runner or LocalRunner()
    runner.output(["systemctl", "daemon-reload"])
    runner.output(["systemctl", "enable", "--now", timer])
    return TimerInstall(written, timer, enabled=True)


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
