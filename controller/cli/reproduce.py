"""``slicebed reproduce microopt|sharing|slicepilot``: rerun a paper's comparison of methods (MicroOpt: allocation
on one model; robust sharing; SlicePilot: slice placement)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from analysis.slice_model import load_model, pick_device
from collectors.milan import traffic_variation
from controller.cli.common import (
    add_device,
    add_json,
    add_tbs_table,
    completion,
    console,
    print_result,
    print_table,
    progress_bar,
    terminate_as_interrupt,
)
from controller.reproduce.cases import DEFAULT_SIGMA_MAX, DEFAULT_SIGMA_MEAN, ReproduceConfig
from controller.reproduce.outputs import write_outputs
from controller.reproduce.runner import run_reproduction, solves
from core.errors import InputError
from core.runstore import RunStore


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``reproduce microopt``, ``reproduce sharing`` and ``reproduce slicepilot``."""
    reproduce = parser.add_subparsers(
        dest="paper", required=True)
    microopt = reproduce.add_parser("microopt", help="MicroOpt vs Atlas(+), CaDRL(+), Peak-alloc and ablations: "
                                    "Table I and Figs. 6-10")
    microopt.add_argument("--model", required=True, type=Path, help="trained slice model directory")
    microopt.add_argument("--out", type=Path, help="directory the run directory is created in (default: runs root)")
    microopt.add_argument("--quick", action="store_true", help="CI-sized run: smaller grid and budgets")
    microopt.add_argument("--milan", nargs="+", type=Path, metavar="FILE",
                          help="Telecom Italia sms-call-internet-mi-*.txt files: derive the traffic spreads")
    microopt.add_argument("--milan-square", type=int, help="cell (square_id) to use; default the busiest")
    microopt.add_argument("--sigma-mean", type=float, help=f"traffic std sigma_mean, users/s "
                          f"(default {DEFAULT_SIGMA_MEAN} unless --milan)")
    microopt.add_argument("--sigma-max", type=float, help=f"traffic std sigma_max, users/s "
                          f"(default {DEFAULT_SIGMA_MAX} unless --milan)")
    microopt.add_argument("--seeds", type=int, help="seeds of the randomized methods (default 5, 2 with --quick)")
    microopt.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_device(microopt)
    add_json(microopt)
    microopt.set_defaults(handler=cmd_reproduce_microopt)
    sharing = reproduce.add_parser("sharing", help="robust sharing by hypothesis testing: three test scenarios, "
                                   "Tables I-VII and Figs. 7-14")
    sharing.add_argument("--quick", action="store_true", help="CI-sized run: 2-hour days, windows 50 and 100, "
                         "two anomaly levels, one seed")
    sharing.add_argument("--seeds", type=int, help="number of seeds (default 5, or 1 with --quick)")
    sharing.add_argument("--madrid", type=Path, metavar="DIR", help="directory with the Madrid LTE dataset's "
                         "users_*.csv and *-raw-df-ms.parquet files: use the paper's cells instead of synthetic chains")
    sharing.add_argument("--out", type=Path, help="directory the run directory is created in (default: runs root)")
    add_tbs_table(sharing)
    add_json(sharing)
    sharing.set_defaults(handler=cmd_reproduce_sharing)

    slicepilot = reproduce.add_parser("slicepilot", help="SlicePilot placement: ILP, per-type and monolithic "
                                      "double DQN, heuristics at 5/10/15 slices (Sec. V-C, Fig. 8)")
    slicepilot.add_argument("--spec", type=Path, help="placement spec YAML (default: the paper's setting)")
    slicepilot.add_argument("--agents", type=Path, help="trained agents to use (default: train them in the run)")
    slicepilot.add_argument("--trials", type=int, help="instances per slice count (default 10, 2 with --quick)")
    slicepilot.add_argument("--episodes", type=int, help="training episodes per agent (default 1000, 150 with "
                            "--quick)")
    slicepilot.add_argument("--seed", type=int, default=0, help="seed of the instances and the training")
    slicepilot.add_argument("--out", type=Path, help="directory the run directory is created in (default: runs "
                            "root)")
    slicepilot.add_argument("--quick", action="store_true", help="CI-sized run: 2 trials, short training")
    add_json(slicepilot)
    slicepilot.set_defaults(handler=cmd_reproduce_slicepilot)


def cmd_reproduce_sharing(args: argparse.Namespace) -> int:
    from controller.cli.sharing import run_and_report
    from controller.sharing.scenarios import reproduction_scenarios

    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 5)
    if seeds < 1:
        raise InputError(f"--seeds must be >= 1, got {seeds}")
    if args.madrid is not None and not args.madrid.is_dir():
        raise InputError(f"--madrid {args.madrid}: no such directory")
    specs = reproduction_scenarios(args.quick, list(range(seeds)), args.madrid)
    source = "Madrid LTE dataset" if args.madrid is not None else "synthetic Markov chains"
    return run_and_report(args, specs, "reproduce-sharing", f"Robust sharing by hypothesis testing ({source})",
                          args.tbs_table)


def config_from_args(args: argparse.Namespace) -> ReproduceConfig:
    """The run's configuration; bad numbers or files raise InputError naming the option."""
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    if args.seeds is not None and args.seeds < 1:
        raise InputError(f"--seeds must be >= 1, got {args.seeds}")
    if args.milan and (args.sigma_mean is not None or args.sigma_max is not None):
        raise InputError("--milan derives sigma_mean and sigma_max; drop --sigma-mean/--sigma-max or --milan")
    fields: dict[str, object] = {}
    if args.milan:
        variation = traffic_variation(args.milan, args.milan_square)
        if variation.sigma_mean <= 0:
            raise InputError(f"--milan: square {variation.square_id} has the same traffic throughout every hour, so "
                             "no spread can be derived; choose another cell with --milan-square")
        fields = {"sigma_mean": variation.sigma_mean, "sigma_max": variation.sigma_max,
                  "sigma_source": f"Milan CDR square {variation.square_id}, {variation.hours} hours "
                                  f"in {len(args.milan)} file(s)"}
    elif args.sigma_mean is not None or args.sigma_max is not None:
        mean = args.sigma_mean if args.sigma_mean is not None else DEFAULT_SIGMA_MEAN
        maximum = args.sigma_max if args.sigma_max is not None else DEFAULT_SIGMA_MAX
        if not (math.isfinite(mean) and math.isfinite(maximum) and 0 < mean <= maximum):
            raise InputError(f"--sigma-mean/--sigma-max must satisfy 0 < sigma_mean <= sigma_max, "
                             f"got {mean:g} and {maximum:g}")
        fields = {"sigma_mean": mean, "sigma_max": maximum, "sigma_source": "given on the command line"}
    if args.seeds is not None:
        fields["seeds"] = tuple(range(args.seeds))
    return ReproduceConfig.quick(**fields) if args.quick else ReproduceConfig(**fields)


def cmd_reproduce_microopt(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    device = pick_device(args.device)
    model = load_model(args.model, device)
    torch.set_num_threads(args.threads)
    store = RunStore(args.out if args.out is not None else args.runs_dir)
    with terminate_as_interrupt():
        run = store.create("reproduce-microopt", {"model": str(args.model.resolve()), "quick": args.quick,
                                                  "threads": args.threads, **config.model_dump(mode="json")},
                           kind="reproduce")
        console.print(f"run [bold]{run.id}[/] in {run.path}")
        with run.finishing_on_error():
            with progress_bar(args.quiet) as progress:
                task = progress.add_task("reproduce microopt", total=solves(config))
                result = run_reproduction(model, config, device,
                                          lambda label: progress.update(task, advance=1, description=label))
            summary = write_outputs(run, config, result)
        run.finish("completed", seconds=result.seconds)

    def human() -> None:
        print_table("per method (all cases)", [{"method": method, **values}
                                               for method, values in summary["methods"].items()])
        print(f"report: {run.path / 'report.md'}")

    print_result(args, summary, human)
    return 0


def cmd_reproduce_slicepilot(args: argparse.Namespace) -> int:
    from controller.placement import outputs as placement_outputs
    from controller.placement import reproduce as placement
    from controller.placement.problem import build_problem
    from controller.placement.rl.training import TrainingSettings, agent_names, load_agents, train_agent
    from controller.placement.spec import load_placement_spec

    for option in ("trials", "episodes"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise InputError(f"--{option} must be >= 1, got {value}")
    problem = build_problem(load_placement_spec(args.spec), args.spec or "default placement spec")
    fields = {"trials": args.trials} if args.trials is not None else {}
    config = placement.ReproduceConfig.quick(seed=args.seed, **fields) if args.quick else \
        placement.ReproduceConfig(seed=args.seed, **fields)
    training_fields = {"seed": args.seed, **({"episodes": args.episodes} if args.episodes is not None else {})}
    training = TrainingSettings.quick(**training_fields) if args.quick else TrainingSettings(**training_fields)
    agents = load_agents(problem, args.agents) if args.agents is not None else None
    store = RunStore(args.out if args.out is not None else args.runs_dir)
    with terminate_as_interrupt():
        run = store.create("reproduce-slicepilot", {
            "spec": str(args.spec) if args.spec else None, "agents": str(args.agents) if args.agents else None,
            "quick": args.quick, **config.model_dump(mode="json"), "training": training.model_dump(mode="json")},
            kind="reproduce")
        console.print(f"run [bold]{run.id}[/] in {run.path}")
        with run.finishing_on_error(), progress_bar(args.quiet) as progress:
            summaries = []
            if agents is None:
                for name in agent_names(problem):
                    task = progress.add_task(f"train {name}", total=training.episodes)
                    summaries.append(train_agent(problem, name, training, run.models_dir,
                                                 completion(progress, task)))
                agents = load_agents(problem, run.models_dir)
            else:
                summaries = [agent.meta["summary"] for agent in agents.values()]
            task = progress.add_task("place", total=len(config.slices) * config.trials)
            result = placement.run_reproduction(problem, agents, config,
                                                lambda label: progress.update(task, advance=1, description=label))
            summary = placement_outputs.write_outputs(run, problem, config, result, summaries)
        run.finish("completed", seconds=result.seconds)

    def human() -> None:
        print_table("targets", summary["targets"])
        print(f"report: {run.path / 'report.md'}")

    print_result(args, summary, human)
    return 0
