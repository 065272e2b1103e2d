"""The paper's tables from the per-case results of a reproduction run."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from controller.optimizer_settings import DEFAULT_ETA
from controller.reproduce.cases import DETERMINISTIC_METHODS

PAPER_IMPROVEMENT_PCT = {"atlas": 7.65, "cadrl": 21.90, "peak": 53.14}
"""MicroOpt's decrease in mean allocation over the Fig. 6 grid, as the paper reports it (Sec. VI-B)."""
PAPER_DYNAMIC_IMPROVEMENT_PCT = {"atlas+": 4.23, "cadrl+": 14.23, "atlas": 14.60, "cadrl": 31.61, "peak": 20.74}
"""The same on the dynamic-traffic cases (Figs. 7 and 8)."""
TABLE1_SLA = (5.0, 0.1)
WITHIN = 0.01
"""Relative distance to the best known cost that counts as converged (the speed comparison, Fig. 10)."""


def method_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per method: cases, mean normalized allocation, mean degradation, share meeting beta, solve seconds."""
    grouped = results.groupby("method", sort=False)
    return pd.DataFrame({
        "cases": grouped.size(),
        "mean_normalized": grouped["normalized"].mean(),
        "mean_degradation": grouped["expected_degradation"].mean(),
        "mean_beta_thresh": grouped["beta_thresh"].mean(),
        "share_meeting_beta": grouped["meets_beta"].mean(),
        "mean_seconds": grouped["seconds"].mean(),
        "median_seconds": grouped["seconds"].median(),
    }).reset_index()


def seed_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per method: the mean over seeds of its per-seed mean allocation and degradation, with 95 % intervals.

    The interval is Student's t over the seeds' means; a deterministic method's is 0 (one answer per case),
    a randomized method run with one seed has none (NaN).
    """
    per_seed = results.groupby(["method", "seed"], sort=False)[["normalized", "expected_degradation"]].mean()
    records = []
    for method, rows in per_seed.groupby(level="method", sort=False):
        count = len(rows)
        record: dict[str, object] = {"method": method, "seeds": count}
        for column, name in (("normalized", "normalized"), ("expected_degradation", "degradation")):
            values = rows[column].to_numpy()
            record[f"mean_{name}"] = float(values.mean())
            record[f"ci95_{name}"] = (0.0 if method in DETERMINISTIC_METHODS else
                                      float(stats.t.ppf(0.975, count - 1) * values.std(ddof=1) / np.sqrt(count))
                                      if count > 1 else float("nan"))
        records.append(record)
    return pd.DataFrame(records)


def threshold_rows(results: pd.DataFrame, methods: tuple[str, ...]) -> pd.DataFrame:
    """The constant-traffic (Fig. 6 grid) rows of ``methods``."""
    return results[(results["experiment"] == "threshold") & results["method"].isin(methods)]


def table1(results: pd.DataFrame, methods: tuple[str, ...]) -> pd.DataFrame:
    """Table I: allocation and degradation per constant traffic at q_thresh 5, beta_thresh 0.1 (mean over seeds)."""
    rows = threshold_rows(results, methods)
    rows = rows[(rows["q_thresh"] == TABLE1_SLA[0]) & (rows["beta_thresh"] == TABLE1_SLA[1])]
    return rows.groupby(["method", "users"], sort=False)[
        ["cpu_millicores", "bandwidth_mbps", "normalized", "expected_degradation"]].mean().reset_index()


def by_threshold(results: pd.DataFrame, methods: tuple[str, ...], column: str) -> pd.DataFrame:
    """Fig. 6: mean allocation (and its CPU and bandwidth parts) and degradation per method and ``column``."""
    rows = threshold_rows(results, methods).assign(
        cpu_normalized=lambda frame: frame["cpu_millicores"] * DEFAULT_ETA[0],
        bandwidth_normalized=lambda frame: frame["bandwidth_mbps"] * DEFAULT_ETA[1])
    table = rows.groupby(["method", column], sort=False)[
        ["normalized", "cpu_normalized", "bandwidth_normalized", "expected_degradation"]].mean()
    return table.reset_index()


def improvements(results: pd.DataFrame, experiment: str, paper: dict[str, float]) -> pd.DataFrame:
    """MicroOpt's decrease in mean allocation against each baseline, (baseline - MicroOpt) / baseline."""
    rows = results[results["experiment"] == experiment]
    means = rows.groupby("method")["normalized"].mean()
    records = [{"baseline": baseline, "baseline_mean_normalized": means[baseline],
                "microopt_mean_normalized": means["microopt"],
                "improvement_pct": 100 * (means[baseline] - means["microopt"]) / means[baseline],
                "paper_improvement_pct": paper_value}
               for baseline, paper_value in paper.items() if baseline in means.index]
    return pd.DataFrame(records)


def dynamic_by_std(results: pd.DataFrame) -> pd.DataFrame:
    """Figs. 7 and 8: mean allocation and degradation per method and traffic std."""
    rows = results[results["experiment"] == "dynamic"]
    return rows.groupby(["method", "traffic_std"], sort=False)[["normalized", "expected_degradation"]] \
        .mean().reset_index()


def best_known(results: pd.DataFrame, convergence: pd.DataFrame) -> pd.Series:
    """Per case, the least feasible cost any method reached in the run (any seed): answers and their traces."""
    answers = results.loc[results["feasible"], ["case", "normalized"]]
    return pd.concat((answers, convergence[["case", "normalized"]])).groupby("case")["normalized"].min()


def time_to_within(results: pd.DataFrame, convergence: pd.DataFrame, within: float = WITHIN) -> pd.DataFrame:
    """Per case, seed and method: seconds until its best feasible cost came within ``within`` of the case's best
    known cost (NaN: never in that solve)."""
    best = best_known(results, convergence)
    records = []
    for (case, seed, method), _ in results.groupby(["case", "seed", "method"], sort=False):
        trace = convergence[(convergence["case"] == case) & (convergence["seed"] == seed)
                            & (convergence["method"] == method)].sort_values("seconds")
        close = trace[trace["normalized"] <= (1 + within) * best.get(case, np.inf)]
        records.append({"case": case, "seed": seed, "method": method,
                        "seconds": float(close["seconds"].iloc[0]) if not close.empty else float("nan")})
    return pd.DataFrame(records, columns=["case", "seed", "method", "seconds"])


def speed(results: pd.DataFrame, times: pd.DataFrame, policies: pd.DataFrame) -> pd.DataFrame:
    """Per method: median solve seconds, median seconds to within 1 % of the best known cost (over the solves
    that got there), the share that got there, and the mean exact queries."""
    grouped = results.groupby("method", sort=False)
    reached = times.groupby("method", sort=False)["seconds"]
    table = pd.DataFrame({
        "method": list(grouped.groups),
        "median_seconds": grouped["seconds"].median().to_numpy(),
        "median_seconds_to_1pct": reached.median().reindex(list(grouped.groups)).to_numpy(),
        "share_within_1pct": reached.apply(lambda values: values.notna().mean()).reindex(list(grouped.groups))
        .to_numpy(),
        "mean_queries": grouped["queries"].mean().to_numpy(),
    })
    if not policies.empty:
        table["note"] = np.where(table["method"] == "cadrl",
                                 f"inference only; policy training {policies['train_seconds'].median():.3g} s "
                                 "median per SLA, amortized", "")
    return table


def convergence_curve(convergence: pd.DataFrame, results: pd.DataFrame, methods: tuple[str, ...],
                      points: int = 60) -> pd.DataFrame:
    """Fig. 10: mean optimality ratio over wall time per method on the dynamic cases.

    Per case and seed, the ratio at time t is (the case's best known cost) / (method's best cost at t),
    0 before its first feasible allocation; averaged over the dynamic cases and seeds.
    """
    dynamic = set(results.loc[results["experiment"] == "dynamic", "case"])
    traces = convergence[convergence["case"].isin(dynamic) & convergence["method"].isin(methods)]
    if traces.empty:
        return pd.DataFrame(columns=["method", "seconds", "optimality_ratio"])
    best = best_known(results, convergence)
    grid = np.geomspace(max(traces["seconds"].min(), 1e-4), traces["seconds"].max() * 1.05, points)
    solved = results[results["case"].isin(dynamic)][["case", "seed", "method"]]
    records = []
    for method in methods:
        runs = solved[solved["method"] == method]
        if runs.empty:
            continue
        ratios = np.zeros((len(runs), points))
        for row, run in enumerate(runs.itertuples()):
            trace = traces[(traces["case"] == run.case) & (traces["seed"] == run.seed)
                           & (traces["method"] == method)].sort_values("seconds")
            if trace.empty:
                continue
            index = np.searchsorted(trace["seconds"].to_numpy(), grid, side="right") - 1
            cost = np.where(index >= 0, trace["normalized"].to_numpy()[index.clip(min=0)], np.inf)
            ratios[row] = best[run.case] / cost
        records += [{"method": method, "seconds": float(t), "optimality_ratio": float(r)}
                    for t, r in zip(grid, ratios.mean(0), strict=True)]
    return pd.DataFrame(records)
