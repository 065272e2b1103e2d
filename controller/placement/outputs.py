"""A SlicePilot reproduction's tables (CSV and Markdown), Fig. 8-like plots, report and JSON summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.plots import save_figure
from analysis.report import ReportSection, markdown_table, write_report
from controller.placement.problem import Problem
from controller.placement.reproduce import (
    PAPER_SPEEDUP,
    ReproduceConfig,
    ReproductionResult,
    check_targets,
    decision_times,
    summary_by_load,
)
from controller.reproduce.plots import grouped_bars
from core.runstore import Run

SPEEDUP_METHODS = ("ilp", "ilp-online", "slicepilot", "monolithic")


def utilization(table: pd.DataFrame, tiers: tuple[str, ...], resource: str, path: Path) -> Path:
    """Fig. 8d/e: utilization (%) of each tier, per method, one panel per slice count."""
    counts = sorted(table["slices"].unique())
    figure, axes = plt.subplots(1, len(counts), figsize=(4.2 * len(counts), 4), sharey=True, squeeze=False)
    for axis, count in zip(axes[0], counts, strict=True):
        rows = table[table["slices"] == count].set_index("method")
        width = 0.8 / len(tiers)
        for offset, tier in enumerate(tiers):
            positions = np.arange(len(rows)) - 0.4 + width * (offset + 0.5)
            axis.bar(positions, rows[f"{resource}_pct_{tier}"], width, label=tier)
        axis.set_xticks(np.arange(len(rows)), rows.index, rotation=45, ha="right", fontsize=8)
        axis.set_title(f"{count} slices")
        axis.set_ylim(0, 105)
    axes[0][0].set_ylabel(f"{'CPU' if resource == 'cpu' else 'memory'} utilization (%)")
    axes[0][0].legend(fontsize=8)
    return save_figure(figure, path)


def _figures(plots: Path, table: pd.DataFrame, tiers: tuple[str, ...]) -> list[Path]:
    rl = table[table["method"].isin(SPEEDUP_METHODS)]
    return [
        grouped_bars(table, "slices", "cost_per_hour", plots / "fig8a-cost.png", "slices", "cost ($/h)",
                     "Fig. 8a: deployment cost"),
        grouped_bars(rl, "slices", "speedup_vs_ilp", plots / "fig8b-speedup.png", "slices",
                     "decision-time speed-up over the batch ILP", "Fig. 8b: speed-up"),
        grouped_bars(table, "slices", "sla_violation_pct", plots / "fig8c-sla.png", "slices",
                     "slices violating their SLA or rejected (%)", "Fig. 8c: SLA violations"),
        utilization(table, tiers, "cpu", plots / "fig8d-cpu.png"),
        utilization(table, tiers, "mem", plots / "fig8e-memory.png"),
    ]


def write_outputs(run: Run, problem: Problem, config: ReproduceConfig, result: ReproductionResult,
                  training: list[dict[str, Any]]) -> dict[str, Any]:
    """Tables, figures and report.md/html in ``run``; returns the ``--json`` summary."""
    result.rows.to_csv(run.path / "results.csv", index=False)
    table = summary_by_load(result.rows)
    tables = {"by-load": table, "decision-times": decision_times(table),
              "targets": check_targets(result.rows, table), "training": pd.DataFrame(training),
              "infeasible-draws": pd.DataFrame(result.infeasible)}
    table_dir = run.path / "tables"
    table_dir.mkdir(exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(table_dir / f"{name}.csv", index=False)
        (table_dir / f"{name}.md").write_text(markdown_table(frame) + "\n", encoding="utf-8")
    figures = _figures(run.plots_dir, table, problem.tiers)
    write_report(run.path, "SlicePilot reproduction", _sections(config, result, tables, figures))
    return {"run": run.id, "path": str(run.path), "seconds": result.seconds,
            "targets": tables["targets"].to_dict(orient="records"),
            "infeasible_draws": len(result.infeasible),
            "by_load": {str(count): {row["method"]: {key: row[key] for key in (
                "cost_per_hour", "cost_gap_pct", "sla_violation_pct", "rejected", "decision_ms_per_slice",
                "speedup_vs_ilp")} for row in rows.to_dict(orient="records")}
                for count, rows in table.groupby("slices")}}


def _sections(config: ReproduceConfig, result: ReproductionResult, tables: dict[str, pd.DataFrame],
              figures: list[Path]) -> list[ReportSection]:
    cost, speed, sla, cpu, mem = figures
    by_load = tables["by-load"]
    main = by_load[["slices", "method", "load_pct", "cost_per_hour", "cost_gap_pct", "sla_violation_pct",
                    "rejected", "decision_ms_per_slice", "speedup_vs_ilp"]]
    return [
        ReportSection("Setting", f"{', '.join(map(str, config.slices))} slices, {config.trials} trials each "
                      f"(seed {config.seed}), slice types drawn 0.2 URLLC / 0.3 eMBB / 0.5 mMTC; every method on "
                      f"the same instances; cost gap relative to the batch ILP's proven optimum. Whole run "
                      f"{result.seconds:.1f} s. Defaults chosen where the paper's numbers were lost: "
                      "docs/placement.md."),
        ReportSection("Targets", table=tables["targets"]),
        ReportSection("Cost, gap, SLA and decision time per method (means)", table=main, figures=[cost]),
        ReportSection("Decision time per slice (ms), every method side by side",
                      f"Paper (Fig. 8b): SlicePilot {', '.join(f'{v}x' for v in PAPER_SPEEDUP.values())} faster "
                      "than its ILP at 5/10/15 slices.", table=tables["decision-times"], figures=[speed]),
        ReportSection("SLA violations", "Slices whose placement breaks their latency bound or consolidation, plus "
                      "slices the method could not place, as a share of all slices.", figures=[sla]),
        ReportSection("Utilization per tier", figures=[cpu, mem]),
        ReportSection("Agent training", table=tables["training"]),
        ReportSection("Instances drawn again (no placement exists)",
                      "none" if tables["infeasible-draws"].empty else "", table=tables["infeasible-draws"]),
    ]
