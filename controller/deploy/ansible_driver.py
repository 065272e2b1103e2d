"""Run a playbook through ansible-runner: events as rich progress, the play recap parsed, artifacts kept."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from core.errors import SlicebedError

PLAYBOOK_DIR = Path(__file__).resolve().parents[2] / "playbooks"
RECAP_COUNTS = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")


class DeployError(SlicebedError):
    """A playbook failed; the message names the task, the host and the cause."""


@dataclass
class PlaybookResult:
    """What one playbook run did, from its events and its play recap."""

    status: str
    recap: dict[str, dict[str, int]]
    artifacts: Path
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    def total(self, count: str) -> int:
        """Sum of one recap column (``ok``, ``changed``, ``failures``, ``dark`` = unreachable, ...) over hosts."""
        return sum(self.recap.get(count, {}).values())

    @property
    def succeeded(self) -> bool:
        return self.status == "successful" and self.total("failures") == 0 and self.total("dark") == 0

    def first_failure(self) -> str:
        return self.failures[0] if self.failures else f"ansible-playbook ended {self.status}"

    def require_success(self, action: str, note: str = "") -> PlaybookResult:
        """This result if the playbook succeeded; else a :class:`DeployError` naming the first failed task
        (``note`` is added to the message) and the Ansible log."""
        if not self.succeeded:
            raise DeployError(f"testbed {action} failed at {self.first_failure()}{note} "
                              f"(Ansible log: {self.artifacts / 'stdout'})")
        return self


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _describe_failure(data: dict[str, Any]) -> str:
    result = data.get("res") or {}
    message = result.get("msg") or result.get("stderr") or result.get("module_stderr") or "failed"
    if result.get("results"):  # a loop: the first failed item's message
        failed = [r for r in result["results"] if r.get("failed")]
        if failed:
            message = failed[0].get("msg") or failed[0].get("stderr") or message
    stderr = result.get("stderr")
    if stderr and stderr not in str(message):
        message = f"{message}: {stderr}"
    return f"{data.get('task', '?')} on {data.get('host', '?')}: {_one_line(message)}"


class EventCollector:
    """Feeds ansible-runner events to a progress callback and keeps failures and reported changes."""

    def __init__(self, on_task: Callable[[str], None] | None) -> None:
        self.on_task = on_task
        self.failures: list[str] = []
        self.changes: list[str] = []
        self.recap: dict[str, dict[str, int]] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        kind, data = event.get("event"), event.get("event_data") or {}
        if kind == "playbook_on_task_start" and self.on_task is not None:
            self.on_task(data.get("task", ""))
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            self.failures.append(_describe_failure(data))
        elif kind in ("runner_on_ok", "runner_item_on_ok") and (data.get("res") or {}).get("changed"):
            result = data["res"]
            command = result.get("cmd")
            detail = result.get("changes") or [" ".join(map(str, command)) if isinstance(command, list) else command]
            label = f"{data.get('task', '?')} on {data.get('host', '?')}"
            self.changes.extend(f"{label}: {d}" if d else label for d in detail)
        elif kind == "playbook_on_stats":
            self.recap = {count: dict(data.get(count) or {}) for count in RECAP_COUNTS}
        return True


def run_playbook(playbook: str, inventory: Path, extravars: dict[str, Any], artifacts_dir: Path,
                 dry_run: bool = False, on_task: Callable[[str], None] | None = None,
                 tags: str | None = None, environment: dict[str, str] | None = None) -> PlaybookResult:
    """Run ``playbooks/<playbook>`` on ``inventory`` (only ``tags`` when given; in Ansible check mode with ``dry_run``;
    ``environment`` added to Ansible's); artifacts (events, stdout) go under ``artifacts_dir``."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    collector = EventCollector(on_task)
    venv_bin = str(Path(sys.executable).parent)
    environment = {
        "ANSIBLE_CONFIG": str(PLAYBOOK_DIR / "ansible.cfg"),
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        "ANSIBLE_NOCOLOR": "1",
        **(environment or {}),
    }
    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(artifacts_dir),
        project_dir=str(PLAYBOOK_DIR),
        playbook=playbook,
        inventory=str(inventory.resolve()),
        extravars=extravars,
        cmdline=" ".join([*(["--check", "--diff"] if dry_run else []), *([f"--tags {tags}"] if tags else [])]) or None,
        envvars=environment,
        event_handler=collector,
        quiet=True,
        suppress_env_files=True,
    )
    seconds = time.monotonic() - started
    return PlaybookResult(status=runner.status, recap=collector.recap, artifacts=Path(runner.config.artifact_dir),
                          seconds=seconds, failures=collector.failures, changes=collector.changes)

