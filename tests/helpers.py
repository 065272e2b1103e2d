"""What the test modules share: repository paths, the ``slicebed`` command (in-process and as a process),
the one-error-line contract, free loopback ports, waiting for a server, dotted spec edits and file writing.

Fixtures live in ``conftest.py``; local-testbed helpers in ``local_testbed.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from controller.cli import main
from core.retry import Attempts

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
"""The read-only material next to the checkout (datasets, papers); never copied into the repository."""
VENV_BIN = Path(sys.executable).parent
SLICEBED = VENV_BIN / "slicebed"

QOS_CSV_HEADER = "time,total_bandwidth_usage,cpu,bw,n_users,qos"
GOOD_QOS_ROWS = [f"2024-05-18 11:00:{second:02d}.5,19.8,2000.0,25.0,3.0,6.6" for second in range(20)]
"""One grid point for 20 s of a MicroOpt-format CSV (the CLI's default --settle-s 10 keeps the last 10 rows)."""
GOOD_QOS_CSV = "\n".join([QOS_CSV_HEADER, *GOOD_QOS_ROWS]) + "\n"

HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
"""Categories Python does not print by default outside ``__main__``: a user never sees them."""

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, OvS); CI runs as root")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (``[0]`` is the state: R, S, Z...; ``[11]`` and
    ``[12]`` user and system CPU ticks), or None when no such process exists."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()  # the command name in parentheses may itself hold spaces and ")"


def venv_environment(**extra: str) -> dict[str, str]:
    """This process's environment with the virtualenv's bin/ first on PATH (ansible-playbook, kubectl), plus
    ``extra``."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def slicebed_argv(*args: str, runs: Path | None = None) -> list[str]:
    """``slicebed --quiet [--runs-dir RUNS] ARGS...`` for the installed command."""
    return [str(SLICEBED), "--quiet", *(["--runs-dir", str(runs)] if runs is not None else []), *args]


def run_slicebed(*args: str, runs: Path | None = None, cwd: Path = REPO, timeout_s: float = 900,
                 environment: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed ``slicebed --quiet [--runs-dir RUNS] ARGS...`` as a process, one torch thread, with
    ``environment`` added to this process's."""
    return subprocess.run(slicebed_argv(*args, runs=runs), capture_output=True, text=True, timeout=timeout_s,
                          env=venv_environment(OMP_NUM_THREADS="1", **(environment or {})), cwd=cwd, check=False)


def run_cli(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``slicebed --quiet ARGV`` in-process: (exit status, stdout, stderr).

    Warnings a user would see on stderr fail the test; they are recorded, not raised, so the code under test
    takes the path it takes for a user.
    """
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        for category in HIDDEN_WARNINGS:
            warnings.simplefilter("ignore", category)
        try:
            code = main(["--quiet", *argv])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    out, err = capfd.readouterr()
    assert not shown, f"warnings leaked to the user: {[f'{w.category.__name__}: {w.message}' for w in shown]}"
    return int(code or 0), out, err


def assert_one_error_line(stderr: str, *fragments: str) -> str:
    """stderr is exactly one ``slicebed: error:`` line holding every fragment, with no traceback; returns it."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("slicebed: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def lab_example_on_loopback() -> dict[str, Any]:
    """The shipped lab inventory with its documentation addresses (refused as they stand) moved to loopback."""
    document: dict[str, Any] = yaml.safe_load((REPO / "inventory" / "lab.example.yml").read_text())
    document["all"]["vars"]["underlay_cidr"] = "127.0.0.0/8"
    for tier in ("edge", "regional", "central"):
        for host in document["all"]["children"][tier]["hosts"].values():
            host["ansible_host"] = "127.0.0.1"
    return document


def set_dotted(document: Any, dotted: str, value: Any) -> None:
    """Set the key ``dotted`` (``slices.0.q_thresh``: list indexes as numbers) to ``value``; ``...`` deletes it."""
    *parents, last = (int(part) if part.isdigit() else part for part in dotted.split("."))
    for part in parents:
        document = document[part]
    if value is ...:
        del document[last]
    else:
        document[last] = value


def write_file(path: Path, content: Any) -> Path:
    """Write ``content`` to ``path``: bytes and text as they are, anything else as YAML, None writes nothing."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def wait_until_ready(ready: Callable[[], bool], process: subprocess.Popen[Any], what: str,
                     timeout_s: float = 30, log: Path | None = None) -> None:
    """Poll ``ready()`` until it is true; fail the test (with the process's log or stderr) if ``process``
    exits first or ``timeout_s`` passes."""
    for _ in Attempts(timeout_s, 0.05):
        if ready():
            return
        if process.poll() is not None:
            break
    if process.poll() is None:
        process.kill()
    detail = log.read_text(errors="replace") if log is not None else (
        process.communicate()[1] if process.stderr else "")
    if isinstance(detail, bytes):
        detail = detail.decode(errors="replace")
    pytest.fail(f"{what} did not start in {timeout_s} s (exit status {process.poll()}): {detail[-2000:]}")


def answers_http(url: str) -> Callable[[], bool]:
    """A readiness probe: ``url`` gives any HTTP answer."""
    def probe() -> bool:
        try:
            requests.get(url, timeout=1)
        except requests.RequestException:
            return False
        return True
    return probe


def accepts_connections(port: int) -> Callable[[], bool]:
    """A readiness probe: something accepts TCP connections on 127.0.0.1:``port``."""
    def probe() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True
    return probe


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize DIRECTORY`` renders (the virtualenv's kubectl)."""
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True,
                          env=venv_environment(), check=True, timeout=120)
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]
