"""Helpers shared by every ``slicebed`` sub-command: console, progress, tables, one-line errors."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from collectors.dataset import DEFAULT_SETTLE_S

EXIT_BAD_INPUT = 2

console = Console(stderr=True)


def progress_bar(quiet: bool) -> Progress:
    """A rich progress display on stderr (disabled with --quiet)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=quiet, transient=False,
    )


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``slicebed: error:`` line (exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"slicebed: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def add_settle(parser: argparse.ArgumentParser) -> None:
    """The ``--settle-s`` option of every command that reads MicroOpt CSVs."""
    parser.add_argument("--settle-s", type=float, default=DEFAULT_SETTLE_S,
                        help="drop samples this many seconds after each grid change (0 keeps all)")


def add_device(parser: argparse.ArgumentParser) -> None:
    """The ``--device`` option of every command that runs a slice model."""
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the block, so a killed run is recorded as interrupted."""

    def interrupt(_signal: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def print_table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    """Print rows (dicts with the same keys) as a rich table on stdout."""
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*(f"{value:.4g}" if isinstance(value, float) else str(value) for value in row.values()))
    Console().print(table)
