"""A sharing reproduction's outputs: CSV and Markdown tables like the paper's Tables I-VII, PNG figures
(acceptance vs removed user states per scheme, ECDF of users, test time vs window) and report.md/html."""

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
from controller.sharing import metrics
from core.runstore import Run

PAPER_TABLE7 = {"NoSh": (0, 100), "Sh": (22, 37), "ShT50": (22, 88), "ShT100": (22, 100)}


def check_targets(table7: pd.DataFrame) -> pd.DataFrame:
    """The issue's Table VII targets with what was measured."""
    by = table7.set_index("scheme")
    sh_saving, sh_isolation = by.loc["Sh", "prb_saving_pct"], by.loc["Sh", "isolation_pct"]
    rows = [("Sh saves 15-30 % of PRBs vs NoSh", f"{sh_saving:.1f} %", 15 <= sh_saving <= 30),
            ("Sh's isolation well below 100 % (read: <= 90 %)", f"{sh_isolation:.1f} %", sh_isolation <= 90)]
    if "ShT100" in by.index:
        saving, isolation = by.loc["ShT100", "prb_saving_pct"], by.loc["ShT100", "isolation_pct"]
        rows.append(("ShT100 keeps Sh's saving with isolation >= 95 %", f"saving {saving:.1f} %, isolation "
                     f"{isolation:.1f} %", bool(np.isclose(saving, sh_saving)) and isolation >= 95))
    return pd.DataFrame(rows, columns=["target", "measured", "holds"])


def write_outputs(run: Run, results: pd.DataFrame, trial: pd.DataFrame, users: dict[str, dict[str, np.ndarray]],
                  seconds: float, title: str) -> dict[str, Any]:
    """Tables, figures and report in ``run``; returns the ``--json`` summary."""
    results.to_csv(run.path / "results.csv", index=False)
    trial.to_csv(run.path / "trial.csv", index=False)
    tables: dict[str, pd.DataFrame] = {"table7": metrics.table7(results)}
    tables["targets"] = check_targets(tables["table7"])
    tables["test-time"] = metrics.test_time(results)
    tables["acceptance-vs-removed"] = metrics.acceptance_vs_share(results)
    sections = [
        ReportSection("Targets", f"{results['seed'].nunique()} seed(s): {sorted(results['seed'].unique())}; "
                      f"{seconds:.0f} s wall time.", tables["targets"]),
        ReportSection("Table VII: efficiency and isolation", "PRB saving vs NoSh and the share of anomalous cases "
                      "in which every well-behaved slice met its availability (%), scenarios weighed equally; "
                      "mean ± std over seeds. Paper: " + ", ".join(f"{k} {v[0]} % / {v[1]} %"
                                                                    for k, v in PAPER_TABLE7.items()) + ".",
                      tables["table7"].drop(columns=["prb_saving_pct", "isolation_pct"])),
        ReportSection("Trial phase", "Provisioned PRBs per scenario and seed, the Sh capacity's acceptance on the "
                      "trial, and the chains' sizes.", trial),
    ]
    figures = {}
    for scenario in results["scenario"].unique():
        tables[f"{scenario}-normal"] = metrics.normal_table(results, scenario)
        sections.append(ReportSection(f"{scenario}: every slice normal (Tables I, V, VI)",
                                      table=tables[f"{scenario}-normal"]))
        figures[f"{scenario}-acceptance"] = _acceptance_figure(
            tables["acceptance-vs-removed"], scenario, run.plots_dir / f"{scenario}-acceptance-vs-removed.png")
        figures[f"{scenario}-users"] = _users_ecdf(users[scenario], scenario,
                                                   run.plots_dir / f"{scenario}-users-ecdf.png")
        anomalous = results[(results["scenario"] == scenario) & (results["anomalous"] != "")]
        first = "" if anomalous.empty else str(anomalous["anomalous"].iloc[0])
        for share in sorted(anomalous.loc[anomalous["anomalous"] == first, "removed_share"].unique()):
            key = f"{scenario}-{first}-anomalous-{share:.0%}".replace("%", "pct")
            tables[key] = metrics.anomaly_table(results, scenario, first, share)
            sections.append(ReportSection(f"{scenario}: {first} anomalous, {share:.0%} of its user states removed "
                                          "(Tables II-IV)", table=tables[key]))
        sections.append(ReportSection(f"{scenario}: acceptance vs removed user states (Figs. 8-9, 11-13)",
                                      "Lowest acceptance of the well-behaved slices, mean over seeds; dashed: "
                                      "availability.", figures=[figures[f"{scenario}-acceptance"],
                                                                figures[f"{scenario}-users"]]))
    figures["test-time"] = _test_time_figure(tables["test-time"], run.plots_dir / "test-time.png")
    sections.append(ReportSection("Test time vs window (Fig. 14)", "Mean time of one slice's test on this machine.",
                                  tables["test-time"], [figures["test-time"]]))
    table_dir = run.path / "tables"
    table_dir.mkdir(exist_ok=True)
    for name, table in tables.items():
        table.to_csv(table_dir / f"{name}.csv", index=False)
        (table_dir / f"{name}.md").write_text(markdown_table(table) + "\n", encoding="utf-8")
    write_report(run.path, title, sections)
    return {
        "run": str(run.path), "seconds": round(seconds, 2), "seeds": sorted(int(s) for s in results["seed"].unique()),
        "table7": {row.scheme: {"prb_saving_pct": round(row.prb_saving_pct, 2),
                                "isolation_pct": round(row.isolation_pct, 2)}
                   for row in tables["table7"].itertuples()},
        "test_ms": {int(row.window): round(row.test_ms, 4) for row in tables["test-time"].itertuples()},
        "targets": {row.target: bool(row.holds) for row in tables["targets"].itertuples()},
    }


def _acceptance_figure(table: pd.DataFrame, scenario: str, path: Path) -> Path:
    rows = table[table["scenario"] == scenario]
    slices = list(dict.fromkeys(rows["anomalous"]))
    figure, axes = plt.subplots(1, max(len(slices), 1), figsize=(4.2 * max(len(slices), 1), 3.6), squeeze=False)
    for axis, name in zip(axes[0], slices, strict=False):
        mine = rows[rows["anomalous"] == name]
        for scheme, line in mine.groupby("scheme", sort=False):
            axis.plot(100 * line["removed_share"], 100 * line["lowest_acceptance"], marker="o", label=scheme)
        axis.axhline(90, linestyle="--", color="grey")
        axis.set_title(f"{name} anomalous")
        axis.set_xlabel("user states removed (%)")
        axis.set_ylabel("lowest well-behaved acceptance (%)")
    axes[0][0].legend(fontsize=7)
    figure.suptitle(scenario)
    return save_figure(figure, path)


def _users_ecdf(users: dict[str, np.ndarray], scenario: str, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(5, 3.6))
    for name, values in users.items():
        ordered = np.sort(values)
        axis.step(ordered, np.arange(1, len(ordered) + 1) / len(ordered), where="post", label=name)
    axis.set_xlabel("RRC-connected users (trial phase, quantized)")
    axis.set_ylabel("ECDF")
    axis.set_title(f"{scenario}: users (Figs. 7, 10)")
    axis.legend()
    return save_figure(figure, path)


def _test_time_figure(table: pd.DataFrame, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(5, 3.6))
    axis.plot(table["window"], table["test_ms"], marker="o")
    axis.set_xlabel("window n (slots)")
    axis.set_ylabel("mean test time per slice (ms)")
    axis.set_title("Fig. 14: test time vs n")
    axis.set_ylim(bottom=0)
    return save_figure(figure, path)
