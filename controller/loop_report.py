"""Plots and the Markdown/HTML report of a closed-loop run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.plots import plot_allocations, plot_degradation, plot_qos_surface, plot_training_history
from analysis.report import ReportSection, write_report
from controller.loop import SliceRound
from controller.spec import ExperimentSpec
from core.runstore import Run

RESULT_COLUMNS = [
    "round", "slice", "traffic", "cpu_millicores", "bandwidth_mbps", "normalized",
    "expected_degradation", "achieved_degradation", "beta_thresh", "mean_qos", "feasible", "solve_seconds",
]


def write_loop_report(run: Run, spec: ExperimentSpec, results: pd.DataFrame,
                      final_rounds: dict[str, SliceRound], testbed: str) -> tuple[Path, Path]:
    """Draw the figures into ``run/plots`` and write ``report.md`` and ``report.html``."""
    plots = run.plots_dir
    surfaces = []
    curves = []
    for slice_spec in spec.slices:
        model_round = final_rounds[slice_spec.name]
        surfaces.append(plot_qos_surface(
            model_round.model, plots / f"qos-surface-{slice_spec.name}.png",
            f"{slice_spec.name}: predicted mean QoS (1-5 users)",
            slice_spec.bounds.cpu_millicores, slice_spec.bounds.bandwidth_mbps,
        ))
        curves.append(plot_training_history(model_round.history, plots / f"training-{slice_spec.name}.png",
                                            f"{slice_spec.name}: training (last round)"))
    allocation_figure = plot_allocations(results, plots / "allocations.png")
    degradation_figure = plot_degradation(results, plots / "degradation.png")

    within = results["achieved_degradation"] <= results["beta_thresh"]
    metrics = pd.DataFrame([
        {"slice": name, "split": split, **getattr(model_round, f"{split}_metrics").as_dict()}
        for name, model_round in final_rounds.items()
        for split in ("train", "validation") if getattr(model_round, f"{split}_metrics") is not None
    ])
    metadata = run.metadata()
    sections = [
        ReportSection("Summary", text=(
            f"Experiment **{spec.name}** on the **{testbed}** testbed, {spec.rounds} round(s), "
            f"method **{spec.optimizer.method}**. {spec.description}\n\n"
            f"Validated allocations within beta_thresh: **{int(within.sum())} of {len(results)}** "
            f"(each validated over {spec.validation.window_s} s of traffic)."
        )),
        ReportSection("Allocations and degradation", table=results[RESULT_COLUMNS],
                      figures=[allocation_figure, degradation_figure]),
        ReportSection("Slice models (last round)", text=(
            "Gaussian NLL with QoS in Mbps (`nll`) and min-max normalized by the training range "
            "(`nll_normalized`); MAE and MSE in Mbps."
        ), table=metrics, figures=[*surfaces, *curves]),
        ReportSection("Provenance", text=(
            f"- run: `{run.id}`\n- slicebed {metadata.get('slicebed_version')}, "
            f"commit `{metadata.get('git_commit')}`\n- host: {metadata.get('host', {}).get('hostname')}, "
            f"Python {metadata.get('host', {}).get('python')}\n- started {metadata.get('started')}\n"
            "- resolved spec: `spec.yaml`; samples: `samples/`, `validation/`; results: `results/`; "
            "models: `models/`; events: `events.jsonl`"
        )),
    ]
    return write_report(run.path, f"slicebed closed loop: {spec.name}", sections)
