"""Write a reproduction run's tables (CSV and Markdown), figures and report into its run directory."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.report import ReportSection, markdown_table, write_report
from controller.reproduce import plots, summaries
from controller.reproduce.cases import ABLATION_METHODS, THRESHOLD_METHODS, ReproduceConfig
from controller.reproduce.runner import ReproductionResult
from core.runstore import Run

PAPER_ORDER = ("microopt", "atlas", "cadrl", "peak")
"""The Fig. 6 order of mean allocation the paper reports (least first)."""
CONVERGENCE_METHODS = ("exact", "microopt", "microopt-alg1", "atlas+")
"""Methods drawn in Fig. 10."""


def write_outputs(run: Run, config: ReproduceConfig, result: ReproductionResult) -> dict[str, Any]:
    """Tables, figures and report.md/html in ``run``; returns the JSON summary of ``--json``."""
    results = result.results
    result.results.to_csv(run.path / "results.csv", index=False)
    result.policies.to_csv(run.path / "cadrl-policies.csv", index=False)
    result.convergence.to_csv(run.path / "convergence.csv", index=False)
    times = summaries.time_to_within(results, result.convergence)
    threshold = summaries.threshold_rows(results, THRESHOLD_METHODS)
    dynamic = results[results["experiment"] == "dynamic"]
    ablation_methods = ("microopt", *ABLATION_METHODS)
    tables = {
        "summary-threshold": summaries.method_summary(threshold),
        "seeds-threshold": summaries.seed_summary(threshold),
        "summary-dynamic": summaries.method_summary(dynamic),
        "seeds-dynamic": summaries.seed_summary(dynamic),
        "table1": summaries.table1(results, THRESHOLD_METHODS),
        "fig6-by-q-thresh": summaries.by_threshold(results, THRESHOLD_METHODS, "q_thresh"),
        "fig6-by-beta-thresh": summaries.by_threshold(results, THRESHOLD_METHODS, "beta_thresh"),
        "improvement-threshold": summaries.improvements(results, "threshold", summaries.PAPER_IMPROVEMENT_PCT),
        "fig7-8-by-std": summaries.dynamic_by_std(results),
        "improvement-dynamic": summaries.improvements(results, "dynamic", summaries.PAPER_DYNAMIC_IMPROVEMENT_PCT),
        "fig9-ablation": summaries.by_threshold(results, ablation_methods, "beta_thresh"),
        "time-to-1pct": times,
        "speed": summaries.speed(results, times, result.policies),
        "speed-dynamic": summaries.speed(dynamic, times[times["case"].isin(set(dynamic["case"]))], result.policies),
        "fig10-convergence": summaries.convergence_curve(result.convergence, results, CONVERGENCE_METHODS),
    }
    table_dir = run.path / "tables"
    table_dir.mkdir(exist_ok=True)
    for name, table in tables.items():
        table.to_csv(table_dir / f"{name}.csv", index=False)
        (table_dir / f"{name}.md").write_text(markdown_table(table) + "\n", encoding="utf-8")
    figures = _figures(run.plots_dir, tables)
    targets = check_targets(results, tables)
    tables["targets"] = targets
    targets.to_csv(table_dir / "targets.csv", index=False)
    write_report(run.path, "MicroOpt reproduction", _sections(config, result, tables, figures))
    return _json_summary(run, result, tables)


def check_targets(results: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The paper's claims and the issue's checks, each with what was measured and whether it holds."""
    seeds = tables["seeds-threshold"].set_index("method")
    order = [method for method in PAPER_ORDER if method in seeds.index]
    ordered = all(seeds.loc[a, "mean_normalized"] < seeds.loc[b, "mean_normalized"]
                  for a, b in itertools.pairwise(order))
    by_beta = summaries.threshold_rows(results, THRESHOLD_METHODS).groupby(["method", "beta_thresh"])[
        "expected_degradation"].mean().reset_index()
    over = by_beta[by_beta["expected_degradation"] > by_beta["beta_thresh"]]
    zero_sigma = results[results["method"] == "microopt-0sigma"]["expected_degradation"].mean()
    exact_gap = _exact_gap(results)
    speed = tables["speed-dynamic"].set_index("method")["median_seconds_to_1pct"]
    rows = [
        ("Fig. 6 mean allocation (mean over seeds): " + " < ".join(order),
         ", ".join(f"{m} {seeds.loc[m, 'mean_normalized']:.4f} ± {seeds.loc[m, 'ci95_normalized']:.4f}"
                   for m in order), ordered),
        ("every method's mean degradation <= beta_thresh at each beta_thresh (Fig. 6c)",
         "violations: " + (", ".join(f"{r.method} at {r.beta_thresh:g}: {r.expected_degradation:.3f}"
                                     for r in over.itertuples()) or "none"), over.empty),
        ("MicroOpt-0sigma degradation near 0.5", f"{zero_sigma:.3f}", abs(zero_sigma - 0.5) < 0.1),
        ("the exact solver's answer is the best known cost of every case (within 0.01 %)",
         f"largest excess over the best known {100 * exact_gap:.4f} %", exact_gap <= 1e-4),
        ("MicroOpt reaches within 1 % of the best known cost sooner than Atlas+ (median, dynamic cases; Fig. 10)",
         f"MicroOpt {speed.get('microopt', np.nan):.3g} s, Atlas+ {speed.get('atlas+', np.nan):.3g} s",
         bool(speed.get("microopt", np.inf) < speed.get("atlas+", np.nan))),
    ]
    return pd.DataFrame(rows, columns=["target", "measured", "holds"])


def _exact_gap(results: pd.DataFrame) -> float:
    """The largest relative excess of the exact solver's cost over the best feasible answer of its case."""
    feasible = results[results["feasible"]]
    best = feasible.groupby("case")["normalized"].min()
    exact = results[results["method"] == "exact"].set_index("case")["normalized"]
    return float(((exact - best.reindex(exact.index)) / best.reindex(exact.index)).max()) if len(exact) else np.nan


def _figures(directory: Path, tables: dict[str, pd.DataFrame]) -> dict[str, Path]:
    by_q, by_beta = tables["fig6-by-q-thresh"], tables["fig6-by-beta-thresh"]
    dynamic = tables["fig7-8-by-std"]
    figures = {
        "fig6a": plots.grouped_bars(by_q, "q_thresh", "normalized", directory / "fig6a-allocation-vs-q-thresh.png",
                                    "q_thresh (Mbps)", "mean normalized allocation", "Fig. 6a"),
        "fig6b": plots.grouped_bars(by_beta, "beta_thresh", "normalized",
                                    directory / "fig6b-allocation-vs-beta-thresh.png", "beta_thresh",
                                    "mean normalized allocation", "Fig. 6b"),
        "fig6c": plots.degradation_vs_threshold(by_beta, directory / "fig6c-degradation-vs-beta-thresh.png"),
        "fig7": plots.grouped_bars(dynamic, "traffic_std", "normalized", directory / "fig7-allocation-vs-std.png",
                                   "slice traffic std (users/s)", "mean normalized allocation", "Fig. 7"),
        "fig8": plots.grouped_bars(dynamic, "traffic_std", "expected_degradation",
                                   directory / "fig8-degradation-vs-std.png", "slice traffic std (users/s)",
                                   "mean QoS degradation", "Fig. 8"),
        "fig9": plots.grouped_bars(tables["fig9-ablation"], "beta_thresh", "normalized",
                                   directory / "fig9-ablation.png", "beta_thresh", "mean normalized allocation",
                                   "Fig. 9 (number above bar: mean degradation)", annotate="expected_degradation"),
    }
    if not tables["fig10-convergence"].empty:
        figures["fig10"] = plots.convergence(tables["fig10-convergence"], directory / "fig10-convergence.png")
    return figures


def _sections(config: ReproduceConfig, result: ReproductionResult, tables: dict[str, pd.DataFrame],
              figures: dict[str, Path]) -> list[ReportSection]:
    policy_seconds = result.policies["train_seconds"]
    seeds = ", ".join(str(seed) for seed in config.seeds)
    return [
        ReportSection("Targets", f"All methods ran in this run on the same slice model and cases "
                      f"({len(result.results)} solves, seeds {seeds}, {result.seconds:.0f} s wall time).",
                      tables["targets"]),
        ReportSection("Which MicroOpt is which", "`microopt-alg1` is Algorithm 1 as published (random starts, "
                      "primal-dual descent, no refinement); `microopt` is Algorithm 1 plus this project's "
                      "refinement (a pattern search on the boundary, per-resource capacity prices). `exact` is "
                      "the exact solver: each case's best known cost."),
        ReportSection("Fig. 6 grid: per method, mean over seeds with 95 % intervals",
                      "Constant traffic "
                      f"{', '.join(f'{u:g}' for u in config.users)} users/s x q_thresh "
                      f"{', '.join(f'{q:g}' for q in config.q_thresh)} x beta_thresh "
                      f"{', '.join(f'{b:g}' for b in config.beta_thresh)}. Intervals are Student's t over the "
                      "seeds' means; the deterministic methods (exact, Peak-alloc) have none.",
                      tables["seeds-threshold"]),
        ReportSection("Fig. 6 grid: per method, every solve", table=tables["summary-threshold"]),
        ReportSection("MicroOpt's decrease in allocation (Fig. 6 grid) beside the paper's",
                      table=tables["improvement-threshold"]),
        ReportSection("Table I (q_thresh 5, beta_thresh 0.1, mean over seeds)", table=tables["table1"]),
        ReportSection("Fig. 6: by q_thresh", table=tables["fig6-by-q-thresh"], figures=[figures["fig6a"]]),
        ReportSection("Fig. 6: by beta_thresh", table=tables["fig6-by-beta-thresh"],
                      figures=[figures["fig6b"], figures["fig6c"]]),
        ReportSection("Dynamic traffic (Figs. 7 and 8)",
                      f"Truncated normals on [1, 5] users/s centred at "
                      f"{', '.join(f'{c:g}' for c in config.dynamic_centres)} with std sigma_mean "
                      f"{config.sigma_mean:.3g} and sigma_max {config.sigma_max:.3g} ({config.sigma_source}); "
                      f"q_thresh {config.dynamic_q_thresh:g}, beta_thresh {config.dynamic_beta_thresh:g}.",
                      tables["fig7-8-by-std"], [figures["fig7"], figures["fig8"]]),
        ReportSection("Dynamic traffic: per method, mean over seeds with 95 % intervals",
                      table=tables["seeds-dynamic"]),
        ReportSection("MicroOpt's decrease in allocation (dynamic) beside the paper's",
                      table=tables["improvement-dynamic"]),
        ReportSection("Ablation (Fig. 9)", "MicroOpt-0sigma optimizes the mean QoS, MicroOpt-2sigma mu - 2 sigma; "
                      "both are judged on the QoS distribution.", tables["fig9-ablation"], [figures["fig9"]]),
        ReportSection("Speed: time to within 1 % of the best known cost (Fig. 10)",
                      "From the same run: per solve, the seconds until the method's best feasible cost came within "
                      "1 % of the least cost any method reached on that case; the median over the solves that got "
                      "there and their share. Atlas and Atlas+ get MicroOpt's exact-query count on each case and "
                      "seed as their budget. CaDRL+ and Atlas+ include their per-problem training (policy, BNN). "
                      "CaDRL reuses one policy per SLA and seed: its solve is inference; its policies took "
                      f"{policy_seconds.sum():.1f} s to train in total ({len(policy_seconds)} policies).",
                      tables["speed"]),
        ReportSection("Speed on the dynamic cases", table=tables["speed-dynamic"]),
        ReportSection("Convergence (Fig. 10)", "Mean over the dynamic cases and seeds of (best known cost) / "
                      "(method's best feasible cost so far).",
                      figures=[figures[key] for key in ("fig10",) if key in figures]),
    ]


def _json_summary(run: Run, result: ReproductionResult, tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    every = summaries.method_summary(result.results)

    def per_method(table: pd.DataFrame) -> dict[str, dict[str, float]]:
        return {row.method: {"mean_normalized": row.mean_normalized, "mean_degradation": row.mean_degradation,
                             "share_meeting_beta": row.share_meeting_beta, "mean_seconds": row.mean_seconds,
                             "cases": int(row.cases)} for row in table.itertuples()}

    def intervals(table: pd.DataFrame) -> dict[str, dict[str, float]]:
        return {row.method: {"seeds": int(row.seeds), "mean_normalized": row.mean_normalized,
                             "ci95_normalized": row.ci95_normalized, "mean_degradation": row.mean_degradation,
                             "ci95_degradation": row.ci95_degradation} for row in table.itertuples()}

    summary: dict[str, Any] = _finite({
        "run": str(run.path),
        "seconds": round(result.seconds, 2),
        "methods": per_method(every),
        "fig6": per_method(tables["summary-threshold"]),
        "dynamic": per_method(tables["summary-dynamic"]),
        "fig6_seeds": intervals(tables["seeds-threshold"]),
        "dynamic_seeds": intervals(tables["seeds-dynamic"]),
        "improvement_pct": {row.baseline: row.improvement_pct for row in tables["improvement-threshold"].itertuples()},
        "seconds_to_1pct": {row.method: row.median_seconds_to_1pct for row in tables["speed"].itertuples()},
        "targets": {row.target: bool(row.holds) for row in tables["targets"].itertuples()},
    })
    return summary


def _finite(value: Any) -> Any:
    """``value`` with every NaN (no interval, never converged) as None, so the summary is strict JSON."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
