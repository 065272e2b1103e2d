"""Helpers shared by every ``slicebed`` sub-command: console, progress, tables, one-line errors, output rule.

The output rule: a command prints its result on stdout, with ``--json`` as exactly one JSON object, else as
a rich table or text for people; progress bars and messages go to stderr (``console``).
"""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
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


def completion(progress: Progress, task: TaskID) -> Callable[[int], None]:
    """A callback that sets ``task``'s completed count (for loops that report how far they are)."""
    def update(done: int) -> None:
        progress.update(task, completed=done)
    return update


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, unless it has none worth showing (None, False or empty)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or (isinstance(default, list | tuple) and not default):
            return action.help
        return super()._get_help_string(action)


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``slicebed: error:`` line (exit 2), like every other error.

    Its sub-command parsers are of the same class, so every command's help shows the options' defaults.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"slicebed: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def add_json(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` option every command has (see the module docstring for the output rule)."""
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object on stdout instead of a table")


def print_result(args: argparse.Namespace, document: dict[str, Any], human: Callable[[], None]) -> None:
    """Print ``document`` as one JSON object if ``--json`` was given, else call ``human`` to print it for people."""
    if args.json:
        print(json.dumps(document, default=str))
    else:
        human()


def add_settle(parser: argparse.ArgumentParser) -> None:
    """The ``--settle-s`` option of every command that reads MicroOpt CSVs."""
    parser.add_argument("--settle-s", type=float, default=DEFAULT_SETTLE_S,
                        help="drop samples this many seconds after each grid change (0 keeps all)")


def add_tbs_table(parser: argparse.ArgumentParser) -> None:
    """The ``--tbs-table`` option of every command that turns states into PRB demands."""
    parser.add_argument("--tbs-table", type=Path, help="3GPP TBS table CSV (default: $SLICEBED_TBS_TABLE, else "
                        "shared/datasets/robust_sharing/tbs_table_x2_from_pickle.csv beside the checkout)")


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


def print_fields(title: str, fields: dict[str, Any]) -> None:
    """Print one record as a two-column (field, value) rich table on stdout."""
    print_table(title, [{"field": key, "value": value} for key, value in fields.items()])
