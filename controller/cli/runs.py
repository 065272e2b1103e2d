"""``slicebed runs list|show|export``: what is in the run store, and its data as Parquet/CSV."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from collectors.prometheus import PrometheusReader
from controller.campaign.export import (
    export_prometheus,
    export_samples,
    journaled_table,
    run_provenance,
)
from controller.campaign.journal import completed_points, incomplete_points
from controller.cli.common import add_json, print_fields, print_result, print_table
from core.errors import InputError
from core.runstore import Run, RunStore, write_json_atomic

FORMATS = {"parquet": ("parquet",), "csv": ("csv",), "both": ("parquet", "csv")}


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``runs list``, ``runs show`` and ``runs export``."""
    runs = parser.add_subparsers(
        dest="action", required=True)
    listing = runs.add_parser("list", help="every run under the runs root")
    add_json(listing)
    listing.set_defaults(handler=cmd_runs_list)

    show = runs.add_parser("show", help="one run: status, points, events, files")
    show.add_argument("run", help="run id or directory")
    add_json(show)
    show.set_defaults(handler=cmd_runs_show)

    export = runs.add_parser("export", help="a run's samples (and Prometheus series) as Parquet/CSV")
    export.add_argument("run", help="run id or directory")
    export.add_argument("--out", type=Path, required=True, help="directory for the exported files")
    export.add_argument("--format", choices=sorted(FORMATS), default="both", help="file formats to write")
    export.add_argument("--prometheus-url", help="also export Prometheus series from this server")
    export.add_argument("--query", action="append", default=[], metavar="NAME=PROMQL",
                        help="a series to export (repeatable; needs --prometheus-url)")
    export.add_argument("--start", help="window start, ISO 8601 with time zone (default: the run's start)")
    export.add_argument("--end", help="window end, ISO 8601 with time zone (default: the run's end, or now)")
    export.add_argument("--step", type=float, default=1.0, help="seconds between exported points")
    add_json(export)
    export.set_defaults(handler=cmd_runs_export)


def summary(run: Run) -> dict[str, Any]:
    """One row describing ``run`` (campaigns: points completed / total; unreadable runs say so)."""
    try:
        metadata = run.metadata()
    except InputError:
        metadata = {"run_id": run.id, "status": "unreadable metadata.json"}
    row = {key: metadata.get(key) for key in ("run_id", "kind", "name", "status", "started", "finished")}
    row["run_id"] = row["run_id"] or run.id
    campaign = metadata.get("kind") == "campaign"
    row["points"] = f"{len(completed_points(run))}/{metadata.get('points_total', '?')}" if campaign else ""
    return row


def cmd_runs_list(args: argparse.Namespace) -> int:
    store = RunStore(args.runs_dir)
    rows = [summary(run) for run in store.list()]

    def human() -> None:
        if rows:
            print_table("runs", rows)
        else:
            print(f"no runs under {store.root}")

    print_result(args, {"root": str(store.root), "runs": rows}, human)
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    run = RunStore(args.runs_dir).open(args.run)
    document: dict[str, Any] = {**run.metadata(), "path": str(run.path)}
    events = list(run.events())
    document["events"] = len(events)
    document["last_event"] = events[-1] if events else None
    if document.get("kind") == "campaign":
        document["points_completed"] = len(completed_points(run))
        document["points_incomplete"] = incomplete_points(run)
    document["files"] = sorted(str(path.relative_to(run.path)) for path in run.path.rglob("*") if path.is_file())

    def human() -> None:
        keys = ("run_id", "kind", "name", "status", "started", "finished", "testbed", "points_total",
                "points_completed", "git_commit", "path")
        print_fields(f"run {run.id}", {key: document[key] for key in keys if key in document})
        for point, reason in document.get("points_incomplete", {}).items():
            print(f"incomplete {point}: {reason}")

    print_result(args, document, human)
    return 0


def cmd_runs_export(args: argparse.Namespace) -> int:
    run = RunStore(args.runs_dir).open(args.run)
    queries = parse_queries(args.query)
    if queries and not args.prometheus_url:
        raise InputError("--query needs --prometheus-url (the server to export from)")
    if args.step <= 0:
        raise InputError(f"--step {args.step:g}: expected a positive number of seconds")
    formats = FORMATS[args.format]
    metadata = run_provenance(run)
    samples = journaled_table(run) if metadata.get("kind") == "campaign" else run.read_samples()
    if samples.empty and not queries:
        raise InputError(f"{run.path}: the run has no samples to export")
    written = export_samples(samples, args.out, metadata, formats) if not samples.empty else []
    window = None
    if args.prometheus_url:
        if not queries:
            raise InputError("--prometheus-url needs at least one --query NAME=PROMQL")
        start = parse_time("--start", args.start) or parse_time("the run's start", metadata.get("started"))
        end = parse_time("--end", args.end) or parse_time("the run's end", metadata.get("finished")) \
            or datetime.now(UTC)
        if start is None:
            raise InputError(f"{run.path}: the run records no start time; pass --start")
        if end < start:
            raise InputError(f"--end {end.isoformat()} is before --start {start.isoformat()}")
        with PrometheusReader(args.prometheus_url) as reader:
            written += export_prometheus(reader, queries, start, end, args.step, args.out, metadata, formats)
        window = {"start": start.isoformat(), "end": end.isoformat(), "step_s": args.step}
    manifest = args.out / "export.json"
    write_json_atomic(manifest, {**metadata, "exported": [path.name for path in written], "window": window,
                                 "rows": len(samples)})
    files = [*written, manifest]
    print_result(args, {"out": str(args.out), "rows": len(samples), "files": [str(path) for path in files]},
                 lambda: print("\n".join(f"wrote {path}" for path in files)))
    return 0


def parse_queries(values: list[str]) -> dict[str, str]:
    """``NAME=PROMQL`` options as a dict (names unique, identifiers)."""
    queries: dict[str, str] = {}
    for value in values:
        name, separator, query = value.partition("=")
        if not separator or not name.isidentifier() or not query.strip():
            raise InputError(f"--query {value!r}: expected NAME=PROMQL, e.g. cpu=rate(process_cpu_seconds_total[1m])")
        if name in queries:
            raise InputError(f"--query {value!r}: the name {name!r} is given twice")
        queries[name] = query
    return queries


def parse_time(option: str, text: str | None) -> datetime | None:
    """An ISO 8601 time with a time zone, or None if ``text`` is empty."""
    if not text:
        return None
    try:
        moment = pd.Timestamp(text)
    except ValueError:
        raise InputError(f"{option} {text!r}: not an ISO 8601 time such as 2026-11-21T10:00:00Z") from None
    if moment.tzinfo is None:
        raise InputError(f"{option} {text!r}: give a time zone (e.g. a trailing Z for UTC)")
    return moment.to_pydatetime()
