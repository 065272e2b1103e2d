"""Where a result came from: slicebed version, git commit, host and package versions."""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

TRACKED_PACKAGES: tuple[str, ...] = (
    "torch", "numpy", "scipy", "pandas", "pyarrow", "pydantic", "PyYAML", "matplotlib", "rich",
)


def slicebed_version() -> str:
    """The installed slicebed version, or ``unknown`` when run from an uninstalled tree."""
    try:
        return metadata.version("slicebed")
    except metadata.PackageNotFoundError:
        return "unknown"


def git_commit(directory: Path | None = None) -> str | None:
    """The commit of the slicebed source tree (with ``-dirty`` if it has changes), if it is a git tree."""
    directory = directory or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
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
