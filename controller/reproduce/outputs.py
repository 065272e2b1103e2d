"""Write a reproduction run's tables (CSV and Markdown), figures and report into its run directory."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.report import ReportSection, markdown_table, write_report
from controller.reproduce import plots, summaries
from controller.reproduce.cases import ABLATION_METHODS, THRESHOLD_METHODS, ReproduceConfig
from controller.reproduce.runner import ReproductionResult
from core.runstore import Run


def write_outputs(run: Run, config: ReproduceConfig, result: ReproductionResult) -> dict[str, Any]:
    """Tables, figures and report.md/html in ``run``; returns the JSON summary of ``--json``."""
    results = result.results
    result.results.to_csv(run.path / "results.csv", index=False)
    result.policies.to_csv(run.path / "cadrl-policies.csv", index=False)
    result.convergence.to_csv(run.path / "convergence.csv", index=False)
    ablation_methods = ("microopt", *ABLATION_METHODS)
    tables = {
        "summary-threshold": summaries.method_summary(summaries.threshold_rows(results, THRESHOLD_METHODS)),
        "summary-dynamic": summaries.method_summary(results[results["experiment"] == "dynamic"]),
        "table1": summaries.table1(results, THRESHOLD_METHODS),
        "fig6-by-q-thresh": summaries.by_threshold(results, THRESHOLD_METHODS, "q_thresh"),
        "fig6-by-beta-thresh": summaries.by_threshold(results, THRESHOLD_METHODS, "beta_thresh"),
        "improvement-threshold": summaries.improvements(results, "threshold", summaries.PAPER_IMPROVEMENT_PCT),
        "fig7-8-by-std": summaries.dynamic_by_std(results),
        "improvement-dynamic": summaries.improvements(results, "dynamic", summaries.PAPER_DYNAMIC_IMPROVEMENT_PCT),
        "fig9-ablation": summaries.by_threshold(results, ablation_methods, "beta_thresh"),
        "speed": summaries.speed(results, result.policies),
        "fig10-convergence": summaries.convergence_curve(result.convergence),
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
    """The issue's targets, each with what was measured and whether it holds."""
    threshold = tables["summary-threshold"].set_index("method")["mean_normalized"]
    order = [method for method in ("microopt", "atlas", "cadrl", "peak") if method in threshold.index]
    ordered = all(threshold[a] < threshold[b] for a, b in itertools.pairwise(order))
    by_beta = summaries.threshold_rows(results, THRESHOLD_METHODS).groupby(["method", "beta_thresh"])[
        "expected_degradation"].mean().reset_index()
    over = by_beta[by_beta["expected_degradation"] > by_beta["beta_thresh"]]
    zero_sigma = results[results["method"] == "microopt-0sigma"]["expected_degradation"].mean()
    speed = tables["speed"].set_index("method")["times_microopt"]
    rows = [
        ("Fig. 6 mean allocation: " + " < ".join(order), ", ".join(f"{m} {threshold[m]:.3f}" for m in order),
         ordered),
        ("every method's mean degradation <= beta_thresh at each beta_thresh (Fig. 6c)",
         "violations: " + (", ".join(f"{r.method} at {r.beta_thresh:g}: {r.expected_degradation:.3f}"
                                     for r in over.itertuples()) or "none"), over.empty),
        ("MicroOpt-0sigma degradation near 0.5", f"{zero_sigma:.3f}", abs(zero_sigma - 0.5) < 0.1),
        ("MicroOpt median solve >= 20x faster than Atlas+", f"{speed.get('atlas+', float('nan')):.1f}x",
         speed.get("atlas+", 0) >= 20),
        ("MicroOpt median solve >= 100x faster than CaDRL+", f"{speed.get('cadrl+', float('nan')):.1f}x",
         speed.get("cadrl+", 0) >= 100),
    ]
    return pd.DataFrame(rows, columns=["target", "measured", "holds"])


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
    return [
        ReportSection("Targets", f"All methods ran in this run on the same slice model and cases "
                      f"({len(result.results)} solves, {result.seconds:.0f} s wall time).", tables["targets"]),
        ReportSection("Fig. 6 grid: per method", "Constant traffic "
                      f"{', '.join(f'{u:g}' for u in config.users)} users/s x q_thresh "
                      f"{', '.join(f'{q:g}' for q in config.q_thresh)} x beta_thresh "
                      f"{', '.join(f'{b:g}' for b in config.beta_thresh)}.", tables["summary-threshold"]),
        ReportSection("MicroOpt's decrease in allocation (Fig. 6 grid) beside the paper's",
                      table=tables["improvement-threshold"]),
        ReportSection("Table I (q_thresh 5, beta_thresh 0.1)", table=tables["table1"]),
        ReportSection("Fig. 6: by q_thresh", table=tables["fig6-by-q-thresh"], figures=[figures["fig6a"]]),
        ReportSection("Fig. 6: by beta_thresh", table=tables["fig6-by-beta-thresh"],
                      figures=[figures["fig6b"], figures["fig6c"]]),
        ReportSection("Dynamic traffic (Figs. 7 and 8)",
                      f"Truncated normals on [1, 5] users/s centred at "
                      f"{', '.join(f'{c:g}' for c in config.dynamic_centres)} with std sigma_mean "
                      f"{config.sigma_mean:.3g} and sigma_max {config.sigma_max:.3g} ({config.sigma_source}); "
                      f"q_thresh {config.dynamic_q_thresh:g}, beta_thresh {config.dynamic_beta_thresh:g}.",
                      tables["fig7-8-by-std"], [figures["fig7"], figures["fig8"]]),
        ReportSection("Dynamic traffic: per method", table=tables["summary-dynamic"]),
        ReportSection("MicroOpt's decrease in allocation (dynamic) beside the paper's",
                      table=tables["improvement-dynamic"]),
        ReportSection("Ablation (Fig. 9)", "MicroOpt-0sigma optimizes the mean QoS, MicroOpt-2sigma mu - 2 sigma; "
                      "both are judged on the QoS distribution.", tables["fig9-ablation"], [figures["fig9"]]),
        ReportSection("Solve time (dynamic cases)",
                      "Seconds per solve on this machine. CaDRL+ and Atlas+ include their per-problem training "
                      "(policy, BNN). CaDRL reuses one policy per SLA: its solve is inference; its policies "
                      f"took {policy_seconds.sum():.1f} s to train in total ({len(policy_seconds)} SLAs).",
                      tables["speed"]),
        ReportSection("Convergence (Fig. 10)", "Mean over the dynamic cases of (best final cost of either "
                      "method) / (method's best feasible cost so far).", figures=[figures[key] for key in ("fig10",)
                                                                                   if key in figures]),
    ]


def _json_summary(run: Run, result: ReproductionResult, tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    every = summaries.method_summary(result.results)

    def per_method(table: pd.DataFrame) -> dict[str, dict[str, float]]:
        return {row.method: {"mean_normalized": row.mean_normalized, "mean_degradation": row.mean_degradation,
                             "share_meeting_beta": row.share_meeting_beta, "mean_seconds": row.mean_seconds,
                             "cases": int(row.cases)} for row in table.itertuples()}

    return {
        "run": str(run.path),
        "seconds": round(result.seconds, 2),
        "methods": per_method(every),
        "fig6": per_method(tables["summary-threshold"]),
        "dynamic": per_method(tables["summary-dynamic"]),
        "improvement_pct": {row.baseline: row.improvement_pct for row in tables["improvement-threshold"].itertuples()},
        "speedup_vs_microopt": {row.method: row.times_microopt for row in tables["speed"].itertuples()},
        "targets": {row.target: bool(row.holds) for row in tables["targets"].itertuples()},
    }
