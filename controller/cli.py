"""The ``slicebed`` command line.

Bad input ends with one line on stderr (``slicebed: error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from analysis.evaluation import evaluate
from analysis.slice_model import ModelConfig, load_model, pick_device
from analysis.training import TrainingConfig, save_training, train
from collectors.dataset import DEFAULT_SETTLE_S, load_qos_csv, load_qos_csvs
from collectors.errors import InputError, SlicebedError
from collectors.provenance import slicebed_version
from collectors.runstore import RunStore
from controller.loop import ClosedLoop, LoopInputs
from controller.loop_report import write_loop_report
from controller.optimizers import SOLVERS, solve
from controller.problem import DEFAULT_ETA, Problem, SliceProblem
from controller.spec import TrafficSpec, load_spec, spec_document
from controller.testbeds import BACKENDS, open_testbed
from controller.traffic import constant

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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="slicebed", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"slicebed {slicebed_version()}")
    parser.add_argument("--runs-dir", help="runs root (default: $SLICEBED_RUNS or ./runs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)

    model = commands.add_parser("model", help="train and evaluate slice models").add_subparsers(
        dest="action", required=True)
    train_parser = model.add_parser("train", help="train a slice model on MicroOpt-format CSVs")
    train_parser.add_argument("--data", action="append", required=True, type=Path, help="CSV (repeatable)")
    train_parser.add_argument("--out", required=True, type=Path, help="directory for model.pt and metrics.json")
    train_parser.add_argument("--epochs", type=int, default=TrainingConfig.epochs)
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--batch-size", type=int, default=TrainingConfig.batch_size)
    train_parser.add_argument("--validation-fraction", type=float, default=TrainingConfig.validation_fraction)
    train_parser.add_argument("--width", type=int, default=ModelConfig.width)
    train_parser.add_argument("--depth", type=int, default=ModelConfig.depth)
    train_parser.add_argument("--head-width", type=int, default=ModelConfig.head_width)
    _add_settle(train_parser)
    _add_device(train_parser)
    train_parser.set_defaults(handler=cmd_model_train)

    eval_parser = model.add_parser("eval", help="fit metrics of a slice model on a CSV")
    eval_parser.add_argument("--model", required=True, type=Path)
    eval_parser.add_argument("--data", required=True, type=Path)
    eval_parser.add_argument("--json", action="store_true", help="print one JSON object")
    _add_settle(eval_parser)
    eval_parser.set_defaults(handler=cmd_model_eval)

    optimize = commands.add_parser("optimize", help="compute an allocation for one slice")
    optimize.add_argument("--model", required=True, type=Path)
    traffic = optimize.add_mutually_exclusive_group(required=True)
    traffic.add_argument("--users", type=float, help="constant traffic, users/s")
    traffic.add_argument("--traffic", help="traffic profile: a YAML file or inline YAML, e.g. "
                         "'{kind: truncated_normal, mean: 3, std: 1, low: 1, high: 5}'")
    optimize.add_argument("--q-thresh", required=True, type=float, help="QoS threshold, Mbps per user")
    optimize.add_argument("--beta", required=True, type=float, help="allowed expected degradation, (0, 1)")
    optimize.add_argument("--method", choices=sorted(SOLVERS), default="microopt")
    optimize.add_argument("--cpu-bounds", nargs=2, type=float, default=(500.0, 4500.0), metavar=("MIN", "MAX"))
    optimize.add_argument("--bw-bounds", nargs=2, type=float, default=(5.0, 50.0), metavar=("MIN", "MAX"))
    optimize.add_argument("--json", action="store_true", help="print one JSON object")
    _add_device(optimize)
    optimize.set_defaults(handler=cmd_optimize)

    loop = commands.add_parser("loop", help="closed-loop experiments").add_subparsers(dest="action", required=True)
    loop_run = loop.add_parser("run", help="sweep, retrain, optimize, apply and validate")
    loop_run.add_argument("spec", type=Path, help="experiment spec (YAML)")
    loop_run.add_argument("--testbed", choices=BACKENDS, help="override the spec's testbed backend")
    _add_device(loop_run)
    loop_run.set_defaults(handler=cmd_loop_run)
    return parser


def _add_settle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settle-s", type=float, default=DEFAULT_SETTLE_S,
                        help="drop samples this many seconds after each grid change (0 keeps all)")


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")


def cmd_model_train(args: argparse.Namespace) -> int:
    frame = load_qos_csvs(args.data, settle_s=args.settle_s)
    config = TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, validation_fraction=args.validation_fraction,
        seed=args.seed, model=ModelConfig(args.width, args.depth, args.head_width),
    )
    with progress_bar(args.quiet) as progress:
        task = progress.add_task("training", total=config.epochs)
        result = train(frame, config, device=pick_device(args.device),
                       progress=lambda epoch, _total, _loss: progress.update(task, completed=epoch))
    save_training(result, args.out, extra={
        "files": [str(path) for path in args.data], "settle_s": args.settle_s,
    })
    document = result.metrics_document()
    print(json.dumps({"model": str(args.out / "model.pt"), "train": document["train"],
                      "validation": document["validation"], "seconds": round(result.seconds, 2)}, indent=2))
    return 0


def cmd_model_eval(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    metrics = evaluate(model, load_qos_csv(args.data, settle_s=args.settle_s)).as_dict()
    if args.json:
        print(json.dumps(metrics))
    else:
        _print_table("model evaluation", [metrics])
    return 0


def check_optimize_args(args: argparse.Namespace) -> None:
    """Reject out-of-range numbers before loading anything, naming the option."""
    if args.users is not None and not (math.isfinite(args.users) and args.users > 0):
        raise InputError(f"--users must be a finite number > 0, got {args.users:g}")
    if not (math.isfinite(args.q_thresh) and args.q_thresh > 0):
        raise InputError(f"--q-thresh must be a finite number > 0 (Mbps per user), got {args.q_thresh:g}")
    if not 0 < args.beta < 1:
        raise InputError(f"--beta must be in (0, 1), got {args.beta:g}")
    for option, (low, high) in (("--cpu-bounds", args.cpu_bounds), ("--bw-bounds", args.bw_bounds)):
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            raise InputError(f"{option} must be finite with 0 < MIN <= MAX, got {low:g} {high:g}")


def cmd_optimize(args: argparse.Namespace) -> int:
    check_optimize_args(args)
    model = load_model(args.model, pick_device(args.device))
    distribution = constant(args.users) if args.users is not None else parse_traffic(args.traffic).distribution()
    problem = Problem((SliceProblem(
        name="slice", model=model, traffic=distribution, q_thresh=args.q_thresh, beta_thresh=args.beta,
        lower=(args.cpu_bounds[0], args.bw_bounds[0]), upper=(args.cpu_bounds[1], args.bw_bounds[1]),
    ),), eta=DEFAULT_ETA)
    solution = solve(problem, args.method, device=pick_device(args.device))
    result = {
        "method": args.method,
        "cpu_millicores": round(float(solution.allocation[0, 0]), 3),
        "bandwidth_mbps": round(float(solution.allocation[0, 1]), 4),
        "normalized": round(solution.normalized, 6),
        "expected_degradation": round(float(solution.expected_degradation[0]), 6),
        "feasible": solution.feasible,
        "seconds": round(solution.seconds, 4),
    }
    if args.json:
        print(json.dumps(result))
    else:
        _print_table("allocation", [result])
        if not solution.feasible:
            console.print("[yellow]infeasible: no allocation within the bounds meets beta; "
                          "this is the best effort (least violation)")
    return 0


def parse_traffic(text: str) -> Any:
    """A traffic profile from inline YAML (a ``{...}`` mapping) or a YAML file."""
    if text.lstrip().startswith("{") or "\n" in text:
        source = text
    else:
        try:
            source = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--traffic: {text}: not a readable YAML file nor an inline mapping "
                             f"'{{kind: ..., ...}}' ({type(exc).__name__})") from None
    try:
        document = yaml.safe_load(source)
        return TypeAdapter(TrafficSpec).validate_python(document)
    except yaml.YAMLError:
        raise InputError(f"--traffic: not YAML: {text!r}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = "".join(f"{part}: " for part in first["loc"])
        raise InputError(f"--traffic: {where}{first['msg']}") from None


def cmd_loop_run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    backend = args.testbed or spec.testbed.backend
    try:
        inputs = LoopInputs.load(spec)
        testbed = open_testbed(spec, backend)
    except InputError as exc:
        raise InputError(f"{args.spec}: {exc}") from None
    store = RunStore(args.runs_dir)
    device = pick_device(args.device)
    with testbed, terminate_as_interrupt():
        run = store.create(spec.name, spec_document(spec), kind="loop")
        console.print(f"run [bold]{run.id}[/] in {run.path}")
        try:
            run.update_metadata(testbed=backend, spec_file=str(args.spec))
            with progress_bar(args.quiet) as progress:
                loop = ClosedLoop(spec, inputs, testbed, run, progress, device)
                results = loop.execute()
            markdown_path, html_path = write_loop_report(run, spec, results, loop.final_rounds, backend)
        except KeyboardInterrupt:
            run.finish("interrupted")
            raise
        except BaseException as exc:
            run.finish("failed", error=f"{type(exc).__name__}: {exc}")
            raise
        run.finish("completed")
    _print_table("closed-loop results", results[[
        "round", "slice", "traffic", "cpu_millicores", "bandwidth_mbps", "expected_degradation",
        "achieved_degradation", "beta_thresh"]].to_dict("records"))
    print(json.dumps({"run": str(run.path), "report": str(markdown_path), "html": str(html_path)}))
    return 0


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


def _print_table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*(f"{value:.4g}" if isinstance(value, float) else str(value) for value in row.values()))
    Console().print(table)


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
