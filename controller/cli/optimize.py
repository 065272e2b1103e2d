"""``slicebed optimize``: an allocation for one slice from a trained slice model."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import yaml

from analysis.slice_model import load_model, pick_device
from controller.cli.common import add_device, add_json, console, print_result, print_table
from controller.optimizer_settings import DEFAULT_ETA
from controller.optimizers import SOLVERS, solve
from controller.problem import Problem, SliceProblem
from controller.spec import TrafficSpec
from controller.support import data_bounds
from controller.traffic import constant
from core.errors import InputError
from core.validation import validate


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``optimize``."""
    optimize = parser
    optimize.add_argument("--model", required=True, type=Path, help="trained slice model directory")
    traffic = optimize.add_mutually_exclusive_group(required=True)
    traffic.add_argument("--users", type=float, help="constant traffic, users/s")
    traffic.add_argument("--traffic", help="traffic profile: a YAML file or inline YAML, e.g. "
                         "'{kind: truncated_normal, mean: 3, std: 1, low: 1, high: 5}'")
    optimize.add_argument("--q-thresh", required=True, type=float, help="QoS threshold, Mbps per user")
    optimize.add_argument("--beta", required=True, type=float, help="allowed expected degradation, (0, 1)")
    optimize.add_argument("--method", choices=sorted(SOLVERS), default="exact",
                          help="exact, MicroOpt (microopt-alg1: Algorithm 1 as published), an ablation or a baseline")
    optimize.add_argument("--cpu-bounds", nargs=2, type=float, metavar=("MIN", "MAX"),
                          help="allowed CPU, millicores (default: the model's training data)")
    optimize.add_argument("--bw-bounds", nargs=2, type=float, metavar=("MIN", "MAX"),
                          help="allowed bandwidth, Mbps (default: the model's training data)")
    optimize.add_argument("--allow-extrapolation", action="store_true",
                          help="use the bounds and traffic as given even where they leave the model's training "
                          "data (answers there are flagged extrapolated); default: cut the bounds to the data "
                          "and refuse traffic outside it")
    add_json(optimize)
    add_device(optimize)
    optimize.set_defaults(handler=cmd_optimize)


def check_optimize_args(args: argparse.Namespace) -> None:
    """Reject out-of-range numbers before loading anything, naming the option."""
    if args.users is not None and not (math.isfinite(args.users) and args.users > 0):
        raise InputError(f"--users must be a finite number > 0, got {args.users:g}")
    if not (math.isfinite(args.q_thresh) and args.q_thresh > 0):
        raise InputError(f"--q-thresh must be a finite number > 0 (Mbps per user), got {args.q_thresh:g}")
    if not 0 < args.beta < 1:
        raise InputError(f"--beta must be in (0, 1), got {args.beta:g}")
    for option, bounds in (("--cpu-bounds", args.cpu_bounds), ("--bw-bounds", args.bw_bounds)):
        if bounds is None:
            continue
        low, high = bounds
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            raise InputError(f"{option} must be finite with 0 < MIN <= MAX, got {low:g} {high:g}")


def cmd_optimize(args: argparse.Namespace) -> int:
    check_optimize_args(args)
    model = load_model(args.model, pick_device(args.device))
    distribution = constant(args.users) if args.users is not None else parse_traffic(args.traffic).distribution()
    lower, upper = data_bounds(model.support)
    if args.cpu_bounds is not None:
        lower, upper = (args.cpu_bounds[0], lower[1]), (args.cpu_bounds[1], upper[1])
    if args.bw_bounds is not None:
        lower, upper = (lower[0], args.bw_bounds[0]), (upper[0], args.bw_bounds[1])
    slice_problem = SliceProblem(name="slice", model=model, traffic=distribution, q_thresh=args.q_thresh,
                                 beta_thresh=args.beta, lower=lower, upper=upper,
                                 allow_extrapolation=args.allow_extrapolation)
    if (slice_problem.lower, slice_problem.upper) != (lower, upper):
        console.print(f"bounds cut to the model's training data: cpu {slice_problem.lower[0]:g}-"
                      f"{slice_problem.upper[0]:g} millicores, bandwidth {slice_problem.lower[1]:g}-"
                      f"{slice_problem.upper[1]:g} Mbps (--allow-extrapolation keeps them)")
    problem = Problem((slice_problem,), eta=DEFAULT_ETA)
    solution = solve(problem, args.method, device=pick_device(args.device))
    result = {
        "method": args.method,
        "cpu_millicores": round(float(solution.allocation[0, 0]), 3),
        "bandwidth_mbps": round(float(solution.allocation[0, 1]), 4),
        "normalized": round(solution.normalized, 6),
        "expected_degradation": round(float(solution.expected_degradation[0]), 6),
        "feasible": solution.feasible,
        "extrapolated": bool(solution.extrapolated[0]),
        "seconds": round(solution.seconds, 4),
        **{key: round(value, 6) for key, value in solution.certificate.items()},
    }
    print_result(args, result, lambda: print_table("allocation", [result]))
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
    except yaml.YAMLError:
        raise InputError(f"--traffic: not YAML: {text!r}") from None
    return validate(TrafficSpec, document, "--traffic")
