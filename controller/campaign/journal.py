"""The sweep journal: completed and incomplete points, recorded in the run's fsynced event log.

Campaigns and closed loops keep one (a loop's point ids name their round).

A point counts as done only once its ``point_completed`` event is on disk (appended and fsynced after
its Parquet parts were renamed into place). A crash before that leaves at most orphan parts, which
:func:`remove_orphans` deletes before a resume redoes the point; a torn last line is skipped when read.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from controller.campaign.plan import Point
from core.runstore import Run

COMPLETED = "point_completed"
INCOMPLETE = "point_incomplete"
TABLES = ("samples", "metrics")
"""The Parquet tables a sweep writes parts to."""


def record_completed(run: Run, point: Point, parts: list[Path], rows: int, end: object) -> None:
    """Journal ``point`` as completed: its durable ``parts``, sample count and last sample time."""
    run.log_event(COMPLETED, point=point.id, index=point.index, rows=rows, end=str(end),
                  parts=[str(part.relative_to(run.path)) for part in parts])


def record_incomplete(run: Run, point: Point, reason: str) -> None:
    run.log_event(INCOMPLETE, point=point.id, index=point.index, reason=reason)


def completed_points(run: Run) -> dict[str, dict[str, Any]]:
    """The journal entry of every completed point, by point id (the first entry wins)."""
    completed: dict[str, dict[str, Any]] = {}
    for event in run.events():
        if event.get("event") == COMPLETED:
            completed.setdefault(event["point"], event)
    return completed


def incomplete_points(run: Run) -> dict[str, str]:
    """Points that failed and were never completed afterwards, with the last reason."""
    reasons = {event["point"]: event.get("reason", "") for event in run.events() if event.get("event") == INCOMPLETE}
    done = completed_points(run)
    return {point: reason for point, reason in reasons.items() if point not in done}


def last_sample_time(run: Run) -> datetime | None:
    """The time of the last sample a completed point recorded (None before the first one)."""
    ends = [pd.Timestamp(entry["end"]) for entry in completed_points(run).values() if entry.get("end")]
    return max(ends).to_pydatetime() if ends else None


def journaled_parts(run: Run) -> list[Path]:
    """The Parquet parts the journal vouches for, in completion order."""
    return [run.path / part for entry in completed_points(run).values() for part in entry["parts"]]


def remove_orphans(run: Run) -> list[Path]:
    """Delete parts no completed point refers to (a crash between rename and journal) and temp files."""
    kept = set(journaled_parts(run))
    removed = []
    for table in TABLES:
        directory = run.path / table
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") or (path.suffix == ".parquet" and path not in kept):
                path.unlink()
                removed.append(path)
    return removed
