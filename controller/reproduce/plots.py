"""PNG figures of a reproduction run, numbered as in the MicroOpt paper."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.plots import save_figure

LABELS = {"exact": "exact", "microopt": "MicroOpt + refinement", "microopt-alg1": "MicroOpt (Alg. 1 as published)",
          "atlas": "Atlas", "atlas+": "Atlas+", "cadrl": "CaDRL", "cadrl+": "CaDRL+",
          "peak": "Peak-alloc", "microopt-0sigma": "MicroOpt-0σ", "microopt-2sigma": "MicroOpt-2σ"}


def grouped_bars(table: pd.DataFrame, column: str, value: str, path: Path, xlabel: str, ylabel: str,
                 title: str, annotate: str | None = None) -> Path:
    """Bars of ``value`` per ``column`` value (x) and method (colour); optionally ``annotate`` above each bar."""
    methods = list(dict.fromkeys(table["method"]))
    levels = sorted(table[column].unique())
    width = 0.8 / len(methods)
    figure, axes = plt.subplots(figsize=(8, 4.2))
    for offset, method in enumerate(methods):
        rows = table[table["method"] == method].set_index(column).reindex(levels)
        positions = np.arange(len(levels)) - 0.4 + width * (offset + 0.5)
        axes.bar(positions, rows[value], width, label=LABELS.get(method, method))
        if annotate is not None:
            for x, height, note in zip(positions, rows[value], rows[annotate], strict=True):
                axes.annotate(f"{note:.2f}", (x, height), ha="center", va="bottom", fontsize=7)
    axes.set_xticks(np.arange(len(levels)), [f"{level:g}" for level in levels])
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.set_ylim(0, float(table[value].max()) * 1.25)  # room for the legend above the bars
    axes.legend(fontsize=8, loc="upper left", ncols=min(len(methods), 4))
    return save_figure(figure, path)


def degradation_vs_threshold(table: pd.DataFrame, path: Path) -> Path:
    """Fig. 6c: mean degradation per beta_thresh and method, with the x = y line."""
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    for method, rows in table.groupby("method", sort=False):
        axes.plot(rows["beta_thresh"], rows["expected_degradation"], "o-", label=LABELS.get(method, method))
    limit = float(table["beta_thresh"].max()) * 1.1
    axes.plot([0, limit], [0, limit], "k--", linewidth=1, label="x = y")
    axes.set_xlabel("QoS degradation threshold beta_thresh")
    axes.set_ylabel("mean QoS degradation E[beta]")
    axes.set_title("Fig. 6c: degradation vs threshold")
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def convergence(curve: pd.DataFrame, path: Path) -> Path:
    """Fig. 10: mean optimality ratio over wall time (log scale)."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for method, rows in curve.groupby("method", sort=False):
        axes.step(rows["seconds"], rows["optimality_ratio"], where="post", label=LABELS.get(method, method))
    axes.set_xscale("log")
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("wall time (s)")
    axes.set_ylabel("mean optimality ratio")
    axes.set_title("Fig. 10: convergence on the dynamic-traffic cases")
    axes.legend()
    return save_figure(figure, path)
