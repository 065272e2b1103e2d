"""SlicePilot's evaluation (Sec. V-C): every method on the same instances of 5, 10 and 15 slices.

Slice types are drawn multinomially (0.2 URLLC, 0.3 eMBB, 0.5 mMTC) for each trial. An instance that no placement
can serve (the batch ILP proves it infeasible: e.g. more URLLC slices than the edge holds) is recorded with
its binding constraints and drawn again, so that every method is compared against a proven optimum.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from controller.placement.heuristics import HEURISTICS, place_heuristic
from controller.placement.ilp import IlpSettings, solve_batch, solve_online
from controller.placement.placement import Placement, score
from controller.placement.problem import Problem, Requests, draw_requests
from controller.placement.rl.training import TrainedAgent, place_with_agents
from core.validation import StrictModel

METHODS = ("ilp", "ilp-online", "slicepilot", "monolithic", *HEURISTICS)
MAX_REDRAWS = 50


class ReproduceConfig(StrictModel):
    """The instance grid: slice counts, trials per count, seed, and the ILP's budget."""

    slices: tuple[int, ...] = (5, 10, 15)
    trials: int = Field(10, ge=1, le=1000)
    seed: int = 0
    ilp: IlpSettings = IlpSettings()

    @classmethod
    def quick(cls, **fields: Any) -> ReproduceConfig:
        return cls(**{"trials": 2, **fields})


@dataclass
class ReproductionResult:
    """Per (instance, method) rows and the instances redrawn because no placement could serve them."""

    rows: pd.DataFrame
    infeasible: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def run_methods(problem: Problem, requests: Requests, agents: dict[str, TrainedAgent], ilp: IlpSettings,
                seed: int) -> list[Placement]:
    """Every method of :data:`METHODS` on one instance (the batch ILP first)."""
    placements = [solve_batch(problem, requests, ilp), solve_online(problem, requests, ilp),
                  place_with_agents(problem, requests, agents, monolithic=False, method="slicepilot"),
                  place_with_agents(problem, requests, agents, monolithic=True, method="monolithic")]
    placements += [place_heuristic(problem, requests, name, seed) for name in HEURISTICS]
    return placements


def run_reproduction(problem: Problem, agents: dict[str, TrainedAgent], config: ReproduceConfig,
                     on_instance: Callable[[str], None] = lambda _label: None) -> ReproductionResult:
    """Draw the instances, run every method on each, and score them against the batch ILP."""
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    rows, infeasible = [], []
    for count in config.slices:
        for trial in range(config.trials):
            for _draw in range(MAX_REDRAWS):
                requests = draw_requests(problem, count, rng)
                placements = run_methods(problem, requests, agents, config.ilp, config.seed + trial)
                optimum = placements[0]
                if optimum.details["status"] in ("OPTIMAL", "FEASIBLE"):
                    break
                infeasible.append({"slices": count, "trial": trial, "status": optimum.details["status"],
                                   "types": ",".join(problem.types[t] for t in requests.types),
                                   "binding": "; ".join(optimum.details.get("binding", []))})
            else:
                raise RuntimeError(f"{MAX_REDRAWS} draws of {count} slices in a row were infeasible")
            demand = sum(problem.cpu[t].sum() for t in requests.types) / problem.cap_cpu.sum()
            ilp_cost = score(problem, requests, optimum)["cost_per_hour"]
            for placement in placements:
                row = score(problem, requests, placement)
                row.update(trial=trial, load_pct=100.0 * float(demand), ilp_status=optimum.details["status"],
                           ilp_gap=optimum.details.get("gap", float("nan")),
                           cost_gap_pct=100.0 * (row["cost_per_hour"] - ilp_cost) / ilp_cost)
                rows.append(row)
            on_instance(f"{count} slices, trial {trial + 1}")
    return ReproductionResult(pd.DataFrame(rows), infeasible, time.perf_counter() - started)


PAPER_GAP_PCT = {5: 2.04, 10: 7.8, 15: 4.1}
"""SlicePilot's cost above the ILP at 25 / 50 / 75 % load (Sec. V-C)."""
PAPER_SPEEDUP = {5: 16, 10: 19, 15: 17}
"""SlicePilot's decision-time speed-up over the ILP (Fig. 8b)."""


def summary_by_load(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per slice count and method, with the speed-up over the batch ILP."""
    metrics = ["load_pct", "cost_per_hour", "cost_gap_pct", "sla_violation_pct", "sla_violations", "rejected",
               "decision_ms_per_slice", *[c for c in rows.columns if c.startswith(("cpu_pct_", "mem_pct_"))]]
    table = rows.groupby(["slices", "method"], sort=False)[metrics].mean().reset_index()
    ilp_time = table[table["method"] == "ilp"].set_index("slices")["decision_ms_per_slice"]
    table["speedup_vs_ilp"] = ilp_time.reindex(table["slices"]).to_numpy() / table["decision_ms_per_slice"]
    return table


def check_targets(rows: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The issue's targets that a reproduction measures, each with its figure and whether it holds."""
    targets = []
    ilp = rows[rows["method"] == "ilp"]
    largest = int(rows["slices"].max())
    worst = ilp[ilp["slices"] == largest]["decision_s"].max()
    proved = bool((ilp["ilp_status"] == "OPTIMAL").all())
    targets.append({"target": f"CP-SAT proves the optimum of {largest} slices in <= 1 s",
                    "measured": f"slowest {worst:.3f} s, all optimal: {proved}", "holds": proved and worst <= 1.0})
    by = table.set_index(["slices", "method"])
    for count in sorted(rows["slices"].unique()):
        gap = by.loc[(count, "slicepilot"), "cost_gap_pct"]
        broken = rows[(rows["slices"] == count) & (rows["method"] == "slicepilot")][["sla_violations",
                                                                                    "rejected"]].to_numpy().sum()
        paper = PAPER_GAP_PCT.get(int(count))
        targets.append({"target": f"per-type DDQN within 10 % of the ILP cost with no SLA violation, {count} slices"
                                  + (f" (paper {paper} %)" if paper else ""),
                        "measured": f"{gap:.2f} % above, {int(broken)} slices violating or rejected",
                        "holds": bool(gap <= 10.0 and broken == 0)})
    per_type = rows[rows["method"] == "slicepilot"]
    mono = rows[rows["method"] == "monolithic"]
    per_type_bad = per_type["cost_gap_pct"].mean() + per_type["sla_violation_pct"].mean()
    mono_bad = mono["cost_gap_pct"].mean() + mono["sla_violation_pct"].mean()
    targets.append({"target": "the monolithic agent does worse than the per-type agents (cost gap + SLA violations)",
                    "measured": f"monolithic {mono['cost_gap_pct'].mean():.2f} % gap, "
                                f"{mono['sla_violation_pct'].mean():.2f} % violations; per-type "
                                f"{per_type['cost_gap_pct'].mean():.2f} %, "
                                f"{per_type['sla_violation_pct'].mean():.2f} %",
                    "holds": bool(mono_bad > per_type_bad)})
    return pd.DataFrame(targets)


def decision_times(table: pd.DataFrame) -> pd.DataFrame:
    """Decision time per slice (ms) of every method side by side, one row per slice count."""
    wide = table.pivot(index="slices", columns="method", values="decision_ms_per_slice")
    return wide[[m for m in METHODS if m in wide.columns]].reset_index()
