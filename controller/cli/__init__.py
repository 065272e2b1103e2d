"""The ``slicebed`` command line.

Bad input ends with one line on stderr (``slicebed: error: ...``) and exit status 2, never a traceback.
Each command group lives in its own module with a ``register(commands)`` function.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from collectors.errors import SlicebedError
from collectors.provenance import slicebed_version
from controller.cli import campaign, loop, model, optimize, provision, reproduce, runs, testbed
from controller.cli.common import EXIT_BAD_INPUT, OneLineErrorParser

COMMAND_GROUPS = (model, optimize, loop, campaign, runs, reproduce, provision, testbed)


def build_parser() -> argparse.ArgumentParser:
    """The full ``slicebed`` parser with every command group registered."""
    parser = OneLineErrorParser(prog="slicebed", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"slicebed {slicebed_version()}")
    parser.add_argument("--runs-dir", help="runs root (default: $SLICEBED_RUNS or ./runs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slicebed`` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
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
