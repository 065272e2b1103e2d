"""Benchmark slice placement (issue 14): CP-SAT proof times, and the SlicePilot reproduction's targets.

1. CP-SAT on 15 slices (75 % load, ``--instances`` draws): the slowest time to a proven optimum (target <= 1 s).
2. CP-SAT on 200 slices on tiers scaled x 200/15 (same 75 % load): time to within 1 % of the bound (<= 5 s).
3. Unless ``--skip-rl``: train every agent (``--episodes`` each; or load ``--agents``), then run the reproduction
   (5/10/15 slices, ``--trials`` each): per-type DDQN cost gap to the ILP and SLA violations per load (target
   <= 10 % and none), the monolithic agent against the per-type agents, and every method's decision time side by
   side from that one run.

    .venv/bin/python benchmarks/bench_placement.py                  # everything, about 5 min on 2 cores
    .venv/bin/python benchmarks/bench_placement.py --skip-rl        # the CP-SAT figures only (seconds)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from controller.placement.ilp import IlpSettings, solve_batch
from controller.placement.problem import Problem, build_problem, draw_requests
from controller.placement.reproduce import (
    ReproduceConfig,
    check_targets,
    decision_times,
    run_reproduction,
    summary_by_load,
)
from controller.placement.rl.training import TrainingSettings, agent_names, load_agents, train_agent
from controller.placement.spec import PlacementSpec


def scaled(spec: PlacementSpec, factor: float) -> Problem:
    """The problem with every tier's capacity multiplied by ``factor``."""
    return build_problem(spec.model_copy(update={"tiers": [tier.model_copy(update={
        "cpu_cores": tier.cpu_cores * factor, "memory_gib": tier.memory_gib * factor}) for tier in spec.tiers]}))


def bench_ilp(problem: Problem, slices: int, instances: int, settings: IlpSettings) -> tuple[float, float, str]:
    """Slowest wall time, largest gap and the statuses over ``instances`` draws of ``slices`` slices."""
    rng = np.random.default_rng(0)
    times, gaps, statuses = [], [], set()
    for _ in range(instances):
        requests = draw_requests(problem, slices, rng)
        placement = solve_batch(problem, requests, settings)
        times.append(placement.decision_s)
        gaps.append(placement.details.get("gap", float("nan")))
        statuses.add(placement.details["status"])
    return max(times), max(gaps), ",".join(sorted(statuses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=20, help="draws per CP-SAT size (default 20)")
    parser.add_argument("--trials", type=int, default=10, help="reproduction trials per slice count (default 10)")
    parser.add_argument("--episodes", type=int, help="training episodes per agent (default: TrainingSettings)")
    parser.add_argument("--agents", type=Path, help="use these trained agents instead of training")
    parser.add_argument("--skip-rl", action="store_true", help="only the CP-SAT figures")
    args = parser.parse_args()
    spec = PlacementSpec()
    problem = build_problem(spec)
    worst, gap, statuses = bench_ilp(problem, 15, args.instances, IlpSettings())
    print(f"CP-SAT 15 slices x {args.instances}: slowest {worst:.3f} s to {statuses}, largest gap {gap:.2%} "
          f"(target <= 1 s, proven)")
    large = scaled(spec, 200 / 15)
    worst, gap, statuses = bench_ilp(large, 200, max(1, args.instances // 4),
                                     IlpSettings(relative_gap=0.01, time_limit_s=5))
    print(f"CP-SAT 200 slices x {max(1, args.instances // 4)}: slowest {worst:.3f} s to {statuses}, largest gap "
          f"{gap:.2%} (target <= 5 s within 1 %)")
    if args.skip_rl:
        return
    torch.set_num_threads(1)
    if args.agents is None:
        settings = TrainingSettings(**({"episodes": args.episodes} if args.episodes else {}))
        directory = Path(tempfile.mkdtemp(prefix="slicebed-agents-"))
        started = time.perf_counter()
        for name in agent_names(problem):
            summary = train_agent(problem, name, settings, directory)
            print(f"trained {name}: {summary['episodes']} episodes in {summary['seconds']:.1f} s")
        print(f"training: {time.perf_counter() - started:.1f} s for {len(agent_names(problem))} agents "
              f"(saved in {directory})")
    else:
        directory = args.agents
    agents = load_agents(problem, directory)
    result = run_reproduction(problem, agents, ReproduceConfig(trials=args.trials))
    table = summary_by_load(result.rows)
    print(f"reproduction: {result.seconds:.1f} s, {len(result.infeasible)} infeasible draws redrawn")
    for row in check_targets(result.rows, table).to_dict(orient="records"):
        print(f"[{'ok' if row['holds'] else 'MISSED'}] {row['target']}: {row['measured']}")
    print("cost gap to the ILP (%), SLA violations + rejections (%):")
    print(table.pivot(index="slices", columns="method", values="cost_gap_pct").round(2).to_string())
    print(table.pivot(index="slices", columns="method", values="sla_violation_pct").round(2).to_string())
    print("decision time per slice (ms), one run:")
    print(decision_times(table).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
