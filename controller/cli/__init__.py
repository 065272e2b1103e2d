"""The ``slicebed`` command line.

Bad input ends with one line on stderr (``slicebed: error: ...``) and exit status 2, never a traceback.
Each command group lives in its own module with a ``register(parser)`` function.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from controller.cli.common import EXIT_BAD_INPUT, OneLineErrorParser
from core.errors import SlicebedError
from core.provenance import slicebed_version

COMMAND_GROUPS: dict[str, str] = {
    "model": "train and evaluate slice models",
    "optimize": "compute an allocation for one slice",
    "loop": "closed-loop experiments",
    "campaign": "dataset-collection campaigns",
    "runs": "list, describe and export runs",
    "reproduce": "rerun a paper's experiments",
    "testbed": "deploy, inspect, measure and remove a testbed (local or lab inventory)",
    "provision": "create lab VMs, networks and an inventory on OpenStack",
    "sharing": "robust resource sharing by hypothesis testing: trial phase, schemes, anomalies",
    "place": "place slices' VNFs over edge, regional and central tiers (SlicePilot)",
    "profile": "measure each slice type's VNF cores and memory against its users on the local testbed",
}
"""Command group -> one-line help. Group ``NAME`` lives in ``controller.cli.NAME`` with ``register(parser)``."""

GLOBAL_OPTIONS_WITH_VALUE = ("--runs-dir",)


def build_parser(group: str | None) -> argparse.ArgumentParser:
    """The ``slicebed`` parser with the options of ``group`` only: the other groups are listed by name and
    their modules are not imported, so each command imports only what it needs (torch is slow to import)."""
    parser = OneLineErrorParser(prog="slicebed", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"slicebed {slicebed_version()}")
    parser.add_argument("--runs-dir", help="runs root (default: $SLICEBED_RUNS or ./runs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary in COMMAND_GROUPS.items():
        group_parser = commands.add_parser(name, help=summary, description=summary)
        if name == group:
            import_module(f"controller.cli.{name}").register(group_parser)
    return parser


def command_group(argv: Sequence[str]) -> str | None:
    """The command group named in ``argv`` (the first word that is not a global option or its value)."""
    words = iter(argv)
    for word in words:
        if word in GLOBAL_OPTIONS_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMAND_GROUPS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slicebed`` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(command_group(argv)).parse_args(argv)
    try:
        return int(args.handler(args))
    except SlicebedError as exc:
        print(f"slicebed: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a path that cannot be written or read: --out, --runs-dir, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"slicebed: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("slicebed: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
