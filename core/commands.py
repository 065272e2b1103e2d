"""Run commands on a node: here (a subprocess, optionally inside a network namespace) or, in the lab, over SSH."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import SlicebedError


class CommandError(SlicebedError):
    """A command could not run, failed, or a file on the node could not be read or written."""


@dataclass(frozen=True)
class CommandResult:
    """What a command printed and how it ended."""

    returncode: int
    stdout: str
    stderr: str


class CommandRunner(ABC):
    """Runs argv-style commands on one node."""

    node: str

    @abstractmethod
    def run(self, argv: Sequence[str], timeout_s: float = 30.0) -> CommandResult:
        """Run ``argv`` and return its result (a non-zero exit is returned, not raised)."""

    @abstractmethod
    def read_file(self, path: str) -> str:
        """The text of ``path`` on the node."""

    @abstractmethod
    def write_file(self, path: str, text: str) -> None:
        """Write ``text`` to ``path`` on the node (e.g. a cgroup control file)."""

    def output(self, argv: Sequence[str], timeout_s: float = 30.0) -> str:
        """Run ``argv``; return stdout, or raise :class:`CommandError` with its stderr on failure."""
        result = self.run(argv, timeout_s)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise CommandError(f"{self.node}: `{' '.join(argv)}` failed with exit {result.returncode}"
                                f"{': ' + detail[-1] if detail else ''}")
        return result.stdout


class LocalRunner(CommandRunner):
    """Commands on this host, inside network namespace ``netns`` when given."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.node = f"netns {netns}" if netns else "localhost"

    def run(self, argv: Sequence[str], timeout_s: float = 30.0) -> CommandResult:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        try:
            done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout_s, check=False)
        except FileNotFoundError as exc:
            raise CommandError(f"{self.node}: {exc.filename} is not installed") from None
        except subprocess.TimeoutExpired:
            raise CommandError(f"{self.node}: `{' '.join(argv)}` did not finish within {timeout_s:g} s") from None
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def read_file(self, path: str) -> str:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read()
        except OSError as exc:
            raise CommandError(f"{self.node}: cannot read {path}: {exc.strerror}") from None

    def write_file(self, path: str, text: str) -> None:
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise CommandError(f"{self.node}: cannot write {text.strip()!r} to {path}: {exc.strerror}") from None
