"""Plots and the Markdown/HTML report of a closed-loop run: convergence per level, verdicts, safety, models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.plots import plot_allocations, plot_degradation, plot_qos_surface, plot_training_history, save_figure
from analysis.report import ReportSection, write_report
from controller.loop.runner import LoopOutcome
from controller.loop.training import SliceRound
from controller.spec import ExperimentSpec
from core.runstore import Run
from core.slice_types import QOS_UNITS

ROUND_COLUMNS = [
    "round", "level", "slice", "traffic", "cpu_millicores", "bandwidth_mbps", "normalized", "expected_degradation",
    "achieved_degradation", "beta_thresh", "p_value", "verdict", "fallback", "mean_qos", "seconds",
]
VERDICT_TEXT = {
    "pass": "measured degradation within beta_thresh",
    "retry": "above beta_thresh without evidence, or expected and measured apart",
    "fail": "above beta_thresh with evidence, or the safety guard fell back",
}


def for_people(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with levels numbered from 1, as the spec lists them."""
    return results.assign(level=results["level"] + 1)


def final_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Each (level, slice)'s last validated row: the allocation the loop leaves it with."""
    return results.sort_values("round", kind="stable").groupby(["level", "slice"], sort=True).tail(1)


def plot_convergence(results: pd.DataFrame, path: Path) -> Path:
    """Per level (columns): expected and measured degradation, CPU and bandwidth, and cost, round by round."""
    levels = sorted(results["level"].unique())
    figure, axes = plt.subplots(3, len(levels), figsize=(4.2 * len(levels), 8.4), squeeze=False, sharex=True)
    rounds = np.arange(1, int(results["round"].max()) + 1)
    for column, level in enumerate(levels):
        rows = results[results["level"] == level]
        degradation, allocation, cost = axes[:, column]
        bandwidth = allocation.twinx()
        for name, frame in rows.groupby("slice", sort=True):
            label = f"{name}: " if rows["slice"].nunique() > 1 else ""
            degradation.plot(frame["round"], frame["expected_degradation"], "o--", label=f"{label}expected (model)")
            degradation.plot(frame["round"], frame["achieved_degradation"], "s-", label=f"{label}measured (testbed)")
            fell_back = frame[frame["fallback"]]
            degradation.scatter(fell_back["round"], fell_back["achieved_degradation"], marker="x", s=90,
                                color="red", zorder=3, label=f"{label}safety fallback" if len(fell_back) else None)
            allocation.plot(frame["round"], frame["cpu_millicores"], "o-", color="tab:blue", label=f"{label}CPU")
            bandwidth.plot(frame["round"], frame["bandwidth_mbps"], "s--", color="tab:orange")
            cost.plot(frame["round"], frame["normalized"], "o-", label=f"{label}cost")
        degradation.axhline(float(rows["beta_thresh"].iloc[0]), color="red", linewidth=1, label="beta_thresh")
        degradation.set_ylim(-0.02, 1.02)
        degradation.set_title(f"level {level + 1}: {rows['traffic'].iloc[0]}", fontsize=10)
        degradation.set_ylabel("degradation (eq. 1)")
        degradation.legend(fontsize=7)
        allocation.set_ylabel("CPU (millicores)", color="tab:blue")
        bandwidth.set_ylabel("bandwidth (Mbps)", color="tab:orange")
        cost.set_ylabel("normalized cost (eta . r)")
        cost.set_xlabel("round")
        cost.set_xticks(rounds)
    figure.suptitle("Closed-loop convergence per traffic level")
    return save_figure(figure, path)


def write_loop_report(run: Run, spec: ExperimentSpec, outcome: LoopOutcome,
                      final_rounds: dict[str, SliceRound], testbed: str) -> tuple[Path, Path]:
    """Draw the figures into ``run/plots`` and write ``report.md`` and ``report.html``."""
    plots = run.plots_dir
    results = outcome.results
    final = final_rows(results)
    surfaces, curves = [], []
    for slice_spec in spec.slices:
        model_round = final_rounds[slice_spec.name]
        surfaces.append(plot_qos_surface(
            model_round.model, plots / f"qos-surface-{slice_spec.name}.png",
            f"{slice_spec.name}: predicted mean {slice_spec.qos} (1-5 users)",
            slice_spec.bounds.cpu_millicores, slice_spec.bounds.bandwidth_mbps,
        ))
        curves.append(plot_training_history(model_round.history, plots / f"training-{slice_spec.name}.png",
                                            f"{slice_spec.name}: training (last round)"))
    settled = final.assign(round=final["round"].max())  # the figures show one round: each level's last
    figures = [plot_convergence(results, plots / "convergence.png"),
               plot_allocations(settled, plots / "allocations.png"),
               plot_degradation(settled, plots / "degradation.png")]
    metrics = pd.DataFrame([
        {"slice": name, "split": split, **figures}
        for name, model_round in final_rounds.items() for split, figures in model_figures(model_round.metrics)
    ])
    settings = run.metadata().get("testbed_settings") or {}
    sections = [
        ReportSection("Summary", text=_summary(spec, outcome, final, testbed, settings),
                      table=for_people(final)[ROUND_COLUMNS]),
        ReportSection("Convergence", text=(
            "Each round validates the levels not yet passed: their allocation, its cost, the model's expected "
            f"degradation (optimized against beta_thresh - {spec.optimizer.beta_margin:g}) and the degradation "
            f"measured over {spec.validation.window_s} s of the level's traffic. Verdicts: "
            + "; ".join(f"`{verdict}` {text}" for verdict, text in VERDICT_TEXT.items()) + ". p_value: one-sided "
            "test of degradation <= beta_thresh over the window's user-weighted seconds."
        ), table=for_people(results)[ROUND_COLUMNS], figures=figures),
        ReportSection("Safety", text=_safety(run)),
        ReportSection("Slice models (last round)", text=(
            "Gaussian NLL with QoS in the slice's unit (`nll`) and min-max normalized by the training range "
            "(`nll_normalized`); MAE and MSE in the slice's unit (Summary); `coverage_p`: the share of rows "
            "inside the predicted p % interval. `grouped`: the mean over folds that each hold out whole "
            "allocations (when the data held enough allocations to calibrate sigma)."
        ), table=metrics, figures=[*surfaces, *curves]),
        ReportSection("Provenance", text=_provenance(run)),
    ]
    return write_report(run.path, f"slicebed closed loop: {spec.name}", sections)


def model_figures(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(split, figures) of a ``metrics.json``: the train and validation rows, and the grouped folds' mean."""
    figures = [(split, metrics[split]) for split in ("train", "validation") if isinstance(metrics.get(split), dict)]
    grouped = metrics.get("grouped")
    if isinstance(grouped, dict) and isinstance(grouped.get("mean"), dict):
        figures.append(("grouped", grouped["mean"]))
    return figures


def _units(spec: ExperimentSpec, settings: dict[str, Any]) -> str:
    """Each slice's QoS and its unit, and the testbed's scales from nominal units to its host (if it has any)."""
    qos = "; ".join(f"{s.name}: {s.qos} ({QOS_UNITS[s.qos]}, {'higher' if s.higher_is_better else 'lower'} is "
                    f"better, threshold {s.q_thresh:g})" for s in spec.slices)
    if "cpu_scale" not in settings:
        return f"QoS judged: {qos}."
    return (f"QoS judged: {qos}. Allocations are nominal; the testbed maps them to its host with cpu_scale "
            f"{settings['cpu_scale']:g} (host cores per nominal core) and rate_scale {settings['rate_scale']:g} "
            f"(host Mbit/s per nominal Mbps), from {settings.get('inventory', 'its inventory')}.")


def _summary(spec: ExperimentSpec, outcome: LoopOutcome, final: pd.DataFrame, testbed: str,
             settings: dict[str, Any]) -> str:
    passed = sum(verdict == "pass" for verdict in outcome.verdicts.values())
    ending = ("every level passed" if outcome.holds
              else f"{passed} of {len(outcome.verdicts)} levels passed when its {spec.rounds} rounds ran out")
    return (f"Experiment **{spec.name}** on the **{testbed}** testbed, method **{spec.optimizer.method}**, "
            f"{outcome.rounds} of at most {spec.rounds} round(s): **{ending}**. {spec.description}\n\n"
            f"{_units(spec, settings)}\n\n"
            f"Each level's final allocation (its last validated round), {int(final['fallback'].sum())} of them "
            "ended by the safety guard:")


def _safety(run: Run) -> str:
    fallbacks = [event for event in run.events() if event.get("event") == "safety_fallback"]
    if not fallbacks:
        return "The safety guard never had to act: no window's running degradation exceeded its bound with evidence."
    lines = [f"- round {event['round']}, level {event['level'] + 1}, slice {event['slice']}: after "
             f"{event['second']} s the running degradation was {event['degradation']:.3f} against the guard's bound "
             f"{event['bound']:.3f} (p = {event['p_value']:.2g}); the safe (peak) allocation "
             f"{event['allocation'][0]:g} millicores, {event['allocation'][1]:g} Mbps was applied "
             "(`safety_fallback` in events.jsonl)" for event in fallbacks]
    return "The safety guard fell back to the safe allocation:\n\n" + "\n".join(lines)


def _provenance(run: Run) -> str:
    metadata = run.metadata()
    return (f"- run: `{run.id}`\n- slicebed {metadata.get('slicebed_version')}, "
            f"commit `{metadata.get('git_commit')}`\n- host: {metadata.get('host', {}).get('hostname')}, "
            f"Python {metadata.get('host', {}).get('python')}\n- started {metadata.get('started')}, "
            f"sessions: {len(metadata.get('sessions', []))}\n"
            "- resolved spec: `spec.yaml`; sweep samples: `samples/`; validation windows: `validation/`; results: "
            "`results/`; models: `models/round-N/`; decisions and measurements: `events.jsonl`")
