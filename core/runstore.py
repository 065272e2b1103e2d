"""The run store: one directory per run, never overwritten.

Layout of ``RUNS/<run id>/``::

    spec.yaml          the resolved experiment spec
    metadata.json      version, git commit, host, packages, start/end, status (rewritten atomically)
    events.jsonl       append-only event log, one JSON object per line, fsynced
    samples/           QoS samples as Parquet parts, one file per flush (written then renamed)
    models/            slice-model checkpoints
    plots/             PNG figures
    report.md, report.html

The runs root is ``--runs-dir``, else ``$SLICEBED_RUNS``, else ``runs/``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from core.errors import InputError, RunStopped
from core.provenance import git_commit, host_info, package_versions, slicebed_version

RUNS_ENV = "SLICEBED_RUNS"
DEFAULT_RUNS_DIR = "runs"
METADATA = "metadata.json"
EVENTS = "events.jsonl"
SAMPLES = "samples"


def runs_root(explicit: str | Path | None = None) -> Path:
    """The runs root: ``explicit`` if given, else ``$SLICEBED_RUNS``, else ``runs``."""
    return Path(explicit or os.environ.get(RUNS_ENV) or DEFAULT_RUNS_DIR)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON to ``path`` through a temporary file, fsync and rename, so readers never see half."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class Run:
    """A run directory and the operations that keep it consistent."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def models_dir(self) -> Path:
        return self.path / "models"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    def metadata(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / METADATA).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{self.path}: not a readable slicebed run ({type(exc).__name__})") from None

    def update_metadata(self, **fields: Any) -> None:
        """Merge ``fields`` into metadata.json (atomic rewrite)."""
        document = self.metadata()
        document.update(fields)
        write_json_atomic(self.path / METADATA, document)

    def finish(self, status: str, **fields: Any) -> None:
        """Record the end time and final status (completed, failed, interrupted)."""
        self.update_metadata(status=status, finished=utc_now(), **fields)
        self.log_event("run_finished", status=status)

    @contextmanager
    def finishing_on_error(self) -> Iterator[None]:
        """If the block raises, record the run as ``interrupted`` (Ctrl-C, SIGTERM), ``stopped`` (a resumable
        :class:`RunStopped`) or ``failed`` (anything else), then let the error go on.

        The record is skipped if the disk refuses it (it may be full): the block's error is the one to report.
        """
        try:
            yield
        except KeyboardInterrupt:
            self._finish_quietly("interrupted")
            raise
        except RunStopped as exc:
            self._finish_quietly("stopped", error=str(exc))
            raise
        except BaseException as exc:
            self._finish_quietly("failed", error=f"{type(exc).__name__}: {exc}")
            raise

    def _finish_quietly(self, status: str, **fields: Any) -> None:
        with suppress(OSError):
            self.finish(status, **fields)

    def log_event(self, event: str, **fields: Any) -> None:
        """Append one event to events.jsonl and fsync it."""
        record = {"time": utc_now(), "event": event, **fields}
        line = (json.dumps(record, default=str) + "\n").encode("utf-8")
        with (self.path / EVENTS).open("a+b") as handle:
            if handle.seek(0, os.SEEK_END) > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a crash left a torn last line: end it so this event stays whole
                    line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def events(self) -> Iterator[dict[str, Any]]:
        """The events logged so far, in order (a torn last line from a crash is skipped)."""
        path = self.path / EVENTS
        if not path.exists():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue

    def append_samples(self, frame: pd.DataFrame, table: str = SAMPLES) -> Path:
        """Write ``frame`` as the next Parquet part of ``table`` (e.g. samples, validation)."""
        directory = self.path / table
        directory.mkdir(exist_ok=True)
        index = len(list(directory.glob("part-*.parquet")))
        path = directory / f"part-{index:06d}.parquet"
        temporary = directory / f".part-{index:06d}.parquet.tmp"
        frame.to_parquet(temporary, index=False)
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        temporary.replace(path)
        _fsync_directory(directory)
        return path

    def read_samples(self, table: str = SAMPLES) -> pd.DataFrame:
        """All parts of ``table`` concatenated in write order (empty frame if none)."""
        parts = sorted((self.path / table).glob("part-*.parquet"))
        if not parts:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)


class RunStore:
    """Creates and finds runs under a root directory."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = runs_root(root)

    def create(self, name: str, spec: dict[str, Any], kind: str = "loop") -> Run:
        """Make a fresh run directory (never reusing one) with spec.yaml, metadata.json and events.jsonl."""
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        while True:
            path = self.root / f"{stamp}-{name}-{secrets.token_hex(3)}"
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        for sub in ("models", "plots"):
            (path / sub).mkdir()
        (path / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        run = Run(path)
        write_json_atomic(path / METADATA, {
            "run_id": run.id,
            "name": name,
            "kind": kind,
            "status": "running",
            "started": utc_now(),
            "finished": None,
            "slicebed_version": slicebed_version(),
            "git_commit": git_commit(),
            "host": host_info(),
            "packages": package_versions(),
            "pid": os.getpid(),
        })
        run.log_event("run_started", name=name, kind=kind)
        return run

    def open(self, run_id: str | Path) -> Run:
        """An existing run, by id under the root or by path."""
        path = Path(run_id)
        if not (path / METADATA).is_file():
            path = self.root / str(run_id)
        if not (path / METADATA).is_file():
            raise InputError(f"{run_id}: no such run under {self.root}")
        return Run(path)

    def list(self) -> list[Run]:
        """Every run under the root, oldest first."""
        if not self.root.is_dir():
            return []
        return [Run(path) for path in sorted(self.root.iterdir()) if (path / METADATA).is_file()]
