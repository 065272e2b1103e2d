"""``slicebed place``: place slices over edge, regional and central tiers; train the RL agents; render lab manifests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from controller.cli.common import (
    add_json,
    completion,
    console,
    print_result,
    print_table,
    progress_bar,
    terminate_as_interrupt,
)
from controller.placement.ilp import IlpSettings, solve_batch, solve_online
from controller.placement.placement import Placement, score
from controller.placement.problem import Problem, Requests, build_problem, draw_requests
from controller.placement.spec import load_placement_spec
from core.errors import InputError
from core.runstore import write_json_atomic

METHOD_CHOICES = ("ilp", "ilp-online", "slicepilot", "monolithic", "cost-aware", "performance-aware", "random",
                  "load-balancing")


def add_spec(parser: argparse.ArgumentParser) -> None:
    """The ``--spec`` option of every placement command."""
    parser.add_argument("--spec", type=Path, help="placement spec YAML (default: the SlicePilot setting, "
                        "docs/placement.md)")


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``place solve``, ``place train``, ``place manifests`` and ``place deploy``."""
    actions = parser.add_subparsers(dest="action", required=True)
    solve = actions.add_parser("solve", help="place slices with one method and write the placement",
                               description="Place the spec's slices (or --slices drawn ones) and print cost, SLA "
                               "and decision time; --out writes the placement (slice -> VNF -> tier) as JSON.")
    add_spec(solve)
    solve.add_argument("--slices", type=int, help="draw this many slices (types 0.2 URLLC / 0.3 eMBB / 0.5 mMTC) "
                       "instead of the spec's `slices`")
    solve.add_argument("--seed", type=int, default=0, help="seed of the drawn slices and the random method")
    solve.add_argument("--method", choices=METHOD_CHOICES, default="ilp", help="placement method")
    solve.add_argument("--agents", type=Path, help="directory of trained agents (slicepilot, monolithic)")
    solve.add_argument("--time-limit", type=float, default=10.0, help="ILP search limit in seconds")
    solve.add_argument("--gap", type=float, default=0.0, help="ILP: stop within this relative gap")
    solve.add_argument("--out", type=Path, help="write the placement document (JSON) here")
    add_json(solve)
    solve.set_defaults(handler=cmd_place_solve)

    train = actions.add_parser("train", help="train the per-slice-type double-DQN agents and the monolithic one",
                               description="Train one double-DQN agent per slice type and a monolithic agent "
                               "(seeded, checkpointed: rerun the same command to resume).")
    add_spec(train)
    train.add_argument("--out", type=Path, required=True, help="directory the agents (<name>.pt) are written to")
    train.add_argument("--agent", action="append", help="train only this agent (a slice type or monolithic; "
                       "repeatable)")
    train.add_argument("--episodes", type=int, help="episodes per agent (default 1000, 150 with --quick)")
    train.add_argument("--seed", type=int, default=0, help="training seed")
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    train.add_argument("--quick", action="store_true", help="CI-sized training: few episodes, small networks")
    add_json(train)
    train.set_defaults(handler=cmd_place_train)

    manifests = actions.add_parser("manifests", help="render a placement as per-slice kustomize overlays",
                                   description="Render per-slice kustomize overlays pinning each VNF to its tier's "
                                   "nodes (node affinity on slicebed.io/tier), for `kubectl apply -k`.")
    manifests.add_argument("placement", type=Path, help="placement document written by `place solve --out`")
    add_spec(manifests)
    manifests.add_argument("--out", type=Path, required=True, help="directory to write base/ and one overlay "
                           "per slice into")
    manifests.add_argument("--namespace", default="slicebed", help="Kubernetes namespace")
    add_json(manifests)
    manifests.set_defaults(handler=cmd_place_manifests)

    deploy = actions.add_parser("deploy", help="apply rendered overlays to a lab cluster with the Kubernetes client",
                                description="Create or replace the Deployments of each overlay directory (rendered "
                                "by `place manifests`) through the Kubernetes API.")
    deploy.add_argument("overlays", type=Path, nargs="+", help="overlay directories (<out>/<slice>)")
    deploy.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig of the lab cluster")
    deploy.add_argument("--context", help="kubeconfig context (default: its current context)")
    add_json(deploy)
    deploy.set_defaults(handler=cmd_place_deploy)


def _problem(args: argparse.Namespace) -> Problem:
    spec = load_placement_spec(args.spec)
    return build_problem(spec, args.spec or "default placement spec")


def _requests(problem: Problem, args: argparse.Namespace) -> Requests:
    if args.slices is not None:
        if not 1 <= args.slices <= 10000:
            raise InputError(f"--slices must be between 1 and 10000, got {args.slices}")
        return draw_requests(problem, args.slices, np.random.default_rng(args.seed))
    if not problem.spec.slices:
        raise InputError(f"{args.spec or 'default placement spec'}: no `slices` to place; list them in the spec or "
                         "pass --slices N")
    return Requests.from_spec(problem, problem.spec.slices)


def place(problem: Problem, requests: Requests, args: argparse.Namespace) -> Placement:
    """Run the method ``args.method`` on ``requests``."""
    if args.method in ("ilp", "ilp-online"):
        if args.time_limit <= 0 or not 0 <= args.gap <= 1:
            raise InputError("--time-limit must be > 0 and --gap between 0 and 1")
        settings = IlpSettings(time_limit_s=args.time_limit, relative_gap=args.gap, seed=args.seed)
        return (solve_batch if args.method == "ilp" else solve_online)(problem, requests, settings)
    if args.method in ("slicepilot", "monolithic"):
        from controller.placement.rl.training import MONOLITHIC, load_agents, place_with_agents

        if args.agents is None:
            raise InputError(f"--method {args.method} needs --agents DIR (train them with `slicebed place train`)")
        monolithic = args.method == "monolithic"
        agents = load_agents(problem, args.agents, [MONOLITHIC] if monolithic else list(problem.types))
        return place_with_agents(problem, requests, agents, monolithic, args.method)
    from controller.placement.heuristics import place_heuristic

    return place_heuristic(problem, requests, args.method, args.seed)


def cmd_place_solve(args: argparse.Namespace) -> int:
    problem = _problem(args)
    requests = _requests(problem, args)
    placement = place(problem, requests, args)
    if placement.details.get("status") == "INFEASIBLE":
        binding = placement.details.get("binding") or ["(none isolated)"]
        raise InputError(f"no placement of the {len(requests)} slices meets every constraint; binding: "
                         f"{'; '.join(binding)}")
    result = score(problem, requests, placement)
    document = placement.document(problem, requests)
    if args.out is not None:
        write_json_atomic(args.out, document)

    def human() -> None:
        rows: list[dict[str, Any]] = []
        for name, entry in document["slices"].items():
            by_tier = {tier: [vnf for vnf, chosen in (entry["vnfs"] or {}).items() if chosen == tier]
                       for tier in problem.tiers}
            rows.append({"slice": name, "type": entry["type"],
                         **{tier: " ".join(vnfs) for tier, vnfs in by_tier.items()},
                         "latency_ms": entry["latency_ms"] if entry["vnfs"] else "rejected"})
        print_table(f"placement ({args.method}): VNFs per tier", rows)
        print_table("result", [{"metric": key, "value": value} for key, value in result.items() if key != "method"])

    print_result(args, {"score": result, **document}, human)
    if "status" in placement.details:
        details = placement.details
        console.print(f"CP-SAT: {details['status']}" + (f", gap {details['gap']:.2%}" if "gap" in details else ""))
    if args.out is not None:
        console.print(f"placement written to {args.out}")
    return 0


def cmd_place_train(args: argparse.Namespace) -> int:
    from controller.placement.rl.training import TrainingSettings, agent_names, train_agent

    problem = _problem(args)
    names = args.agent or agent_names(problem)
    unknown = [name for name in names if name not in agent_names(problem)]
    if unknown:
        raise InputError(f"--agent {unknown[0]}: not an agent of this spec; choose from "
                         f"{', '.join(agent_names(problem))}")
    if (args.episodes is not None and args.episodes < 1) or args.threads < 1:
        raise InputError("--episodes and --threads must be >= 1")
    fields = {"seed": args.seed, "threads": args.threads}
    if args.episodes is not None:
        fields["episodes"] = args.episodes
    settings = TrainingSettings.quick(**fields) if args.quick else TrainingSettings(**fields)
    summaries = []
    with terminate_as_interrupt(), progress_bar(args.quiet) as progress:
        for name in names:
            task = progress.add_task(f"train {name}", total=settings.episodes)
            summaries.append(train_agent(problem, name, settings, args.out,
                                         completion(progress, task)))
    print_result(args, {"out": str(args.out), "agents": summaries}, lambda: print_table("trained agents", summaries))
    return 0


def cmd_place_manifests(args: argparse.Namespace) -> int:
    from controller.placement.manifests import read_placement, render_overlays

    problem = _problem(args)
    placement = read_placement(args.placement, problem)
    written = render_overlays(problem, placement, args.out, args.namespace)
    print_result(args, {"out": str(args.out), "overlays": {name: str(path) for name, path in written.items()}},
                 lambda: print_table("overlays", [{"slice": name, "kustomization": str(path)}
                                                  for name, path in written.items()]))
    return 0


def cmd_place_deploy(args: argparse.Namespace) -> int:
    from controller.placement.manifests import apply_overlays

    for overlay in args.overlays:
        if not (overlay / "kustomization.yaml").is_file():
            raise InputError(f"{overlay}: no kustomization.yaml; render overlays with `slicebed place manifests`")
    applied = apply_overlays(args.overlays, args.kubeconfig, args.context)
    print_result(args, {"applied": applied}, lambda: print_table("applied", [{"deployment": name} for name in applied]))
    return 0
