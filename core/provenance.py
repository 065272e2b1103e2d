"""Where a result came from: slicebed version, git commit, host and package versions."""

from __future__ import annotations

import platform
import socket
from importlib import metadata
from pathlib import Path

from core.commands import CommandError, CommandRunner, LocalRunner

TRACKED_PACKAGES: tuple[str, ...] = (
    "torch", "numpy", "scipy", "pandas", "pyarrow", "pydantic", "PyYAML", "matplotlib", "rich",
)


def slicebed_version() -> str:
    """The installed slicebed version, or ``unknown`` when run from an uninstalled tree."""
    try:
        return metadata.version("slicebed")
    except metadata.PackageNotFoundError:
        return "unknown"


def git_commit(directory: Path | None = None, runner: CommandRunner | None = None) -> str | None:
    """The commit of the slicebed source tree (with ``-dirty`` if it has changes), if it is a git tree."""
    git = ["git", "-C", str(directory or Path(__file__).resolve().parent.parent)]
    runner = runner or LocalRunner()
    try:
        commit = runner.output([*git, "rev-parse", "HEAD"], timeout_s=5).strip()
        dirty = runner.output([*git, "status", "--porcelain", "--untracked-files=no"], timeout_s=5).strip()
    except CommandError:  # no git, or not a git tree
        return None
    return f"{commit}-dirty" if dirty else commit


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages results depend on."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def host_info() -> dict[str, str]:
    """Host name, OS, kernel and Python version."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
