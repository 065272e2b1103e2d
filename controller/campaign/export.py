"""A campaign's dataset: the parts its journal vouches for, exported as Parquet (with run metadata) and CSV."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from collectors.dataset import write_qos_csv
from collectors.prometheus import PrometheusReader
from controller.campaign.journal import journaled_parts
from core.runstore import Run

METADATA_KEY = b"slicebed"
"""Parquet schema-metadata key holding the run's metadata as JSON."""


def journaled_table(run: Run, table: str = "samples") -> pd.DataFrame:
    """Every journaled part of ``table`` in point order (a loop's: round by round; empty frame if none)."""
    parts = [part for part in journaled_parts(run) if part.parent.name == table]
    if not parts:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
    order = [column for column in ("round", "point_index", "slice", "time") if column in frame.columns]
    return frame.sort_values(order, kind="stable", ignore_index=True)


def run_provenance(run: Run) -> dict[str, Any]:
    """The metadata written into exported files: run id, spec name, version, commit, host, times, status."""
    keys = ("run_id", "name", "kind", "status", "started", "finished", "slicebed_version", "git_commit", "host",
            "testbed")
    metadata = run.metadata()
    return {key: metadata.get(key) for key in keys}


def write_parquet(frame: pd.DataFrame, path: Path, metadata: dict[str, Any]) -> Path:
    """Write ``frame`` with ``metadata`` in the schema (temp + fsync + rename: never a half file)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema_metadata = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata, default=str).encode()}
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(table.replace_schema_metadata(schema_metadata), temporary)
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_parquet_metadata(path: Path) -> dict[str, Any]:
    """The slicebed metadata stored by :func:`write_parquet`."""
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])


def export_dataset(run: Run, directory: Path, formats: tuple[str, ...] = ("parquet", "csv")) -> list[Path]:
    """Write the campaign's journaled samples to ``directory`` (see :func:`export_samples`)."""
    return export_samples(journaled_table(run), directory, run_provenance(run), formats)


def export_samples(samples: pd.DataFrame, directory: Path, metadata: dict[str, Any],
                   formats: tuple[str, ...] = ("parquet", "csv")) -> list[Path]:
    """``dataset.parquet`` (with ``metadata``) and one MicroOpt CSV per slice, ``dataset-<slice>.csv``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if "parquet" in formats:
        written.append(write_parquet(samples, directory / "dataset.parquet", metadata))
    if "csv" in formats and "slice" in samples.columns:
        for slice_name, frame in samples.groupby("slice", sort=True):
            path = directory / f"dataset-{slice_name}.csv"
            write_qos_csv(frame, path)
            written.append(path)
    return written


def export_prometheus(reader: PrometheusReader, queries: dict[str, str], start: datetime, end: datetime,
                      step_s: float, directory: Path, metadata: dict[str, Any],
                      formats: tuple[str, ...] = ("parquet", "csv")) -> list[Path]:
    """Range-export each query over [start, end] (chunked under Prometheus' point cap) as ``prometheus-NAME``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, query in queries.items():
        frame = reader.range(query, start, end, step_s)
        details = {**metadata, "query": query, "start": start.isoformat(), "end": end.isoformat(), "step_s": step_s,
                   "prometheus": reader.url}
        if "parquet" in formats:
            written.append(write_parquet(frame, directory / f"prometheus-{name}.parquet", details))
        if "csv" in formats:
            path = directory / f"prometheus-{name}.csv"
            temporary = path.with_name(f".{path.name}.tmp")
            frame.to_csv(temporary, index=False)
            temporary.replace(path)
            written.append(path)
    return written
