"""Matplotlib figures of slice models and closed-loop results (PNG, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.slice_model import SliceModel


@torch.no_grad()
def mean_qos_surface(model: SliceModel, cpu: np.ndarray, bandwidth: np.ndarray,
                     users: Sequence[float] = (1, 2, 3, 4, 5)) -> np.ndarray:
    """Predicted mean QoS averaged over ``users``, shape (len(cpu), len(bandwidth))."""
    grid = np.stack(np.meshgrid(users, bandwidth, cpu, indexing="ij"), -1).astype(np.float32)
    mean, _ = model(torch.as_tensor(grid, device=next(model.parameters()).device))
    surface: np.ndarray = mean.mean(0).cpu().numpy().T
    return surface


def plot_qos_surface(model: SliceModel, path: Path, title: str,
                     cpu_range: tuple[float, float] = (500, 4500),
                     bandwidth_range: tuple[float, float] = (5, 50)) -> Path:
    """The model's mean-QoS surface over CPU x bandwidth, averaged over 1-5 users (MicroOpt Fig. 4c)."""
    cpu = np.linspace(*cpu_range, 81)
    bandwidth = np.linspace(*bandwidth_range, 91)
    surface = mean_qos_surface(model, cpu, bandwidth)
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    image = axes.pcolormesh(bandwidth, cpu, surface, shading="auto", cmap="viridis")
    contours = axes.contour(bandwidth, cpu, surface, levels=8, colors="white", linewidths=0.6)
    axes.clabel(contours, fontsize=7, fmt="%.1f")
    figure.colorbar(image, ax=axes, label="predicted mean QoS (the slice's unit)")
    axes.set_xlabel("transport bandwidth (Mbps)")
    axes.set_ylabel("gNB CPU (millicores)")
    axes.set_title(title)
    return save_figure(figure, path)


def plot_allocations(results: pd.DataFrame, path: Path) -> Path:
    """CPU and bandwidth allocated per traffic level and slice (last round)."""
    last = results[results["round"] == results["round"].max()]
    figure, (cpu_axes, bw_axes) = plt.subplots(1, 2, figsize=(10, 4))
    _grouped_bars(cpu_axes, last, "cpu_millicores", "CPU (millicores)")
    _grouped_bars(bw_axes, last, "bandwidth_mbps", "bandwidth (Mbps)")
    figure.suptitle("Allocation per traffic level")
    return save_figure(figure, path)


def plot_degradation(results: pd.DataFrame, path: Path) -> Path:
    """Achieved (measured) and expected (model) degradation per level, against beta_thresh."""
    last = results[results["round"] == results["round"].max()].reset_index(drop=True)
    labels = [f"{row.slice}\n{row.traffic}" for row in last.itertuples()]
    positions = np.arange(len(last))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(last)), 4.2))
    axes.bar(positions - 0.2, last["expected_degradation"], 0.4, label="expected (model)")
    axes.bar(positions + 0.2, last["achieved_degradation"], 0.4, label="achieved (testbed)")
    axes.scatter(positions, last["beta_thresh"], marker="_", s=900, color="red", zorder=3, label="beta_thresh")
    axes.set_xticks(positions, labels, fontsize=8)
    axes.set_ylabel("QoS degradation (eq. 1)")
    axes.set_ylim(0, max(0.05, float(last[["expected_degradation", "achieved_degradation", "beta_thresh"]]
                                     .max().max()) * 1.25))
    axes.legend()
    axes.set_title("Achieved degradation vs threshold")
    return save_figure(figure, path)


def plot_training_history(history: Sequence[dict[str, float]], path: Path, title: str) -> Path:
    """Train and validation Gaussian NLL (normalized QoS) over epochs (MicroOpt Fig. 4a)."""
    frame = pd.DataFrame(history)
    figure, axes = plt.subplots(figsize=(6.4, 4))
    axes.plot(frame["epoch"], frame["train_nll_normalized"], label="train")
    if "validation_nll_normalized" in frame:
        axes.plot(frame["epoch"], frame["validation_nll_normalized"], label="validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel("Gaussian NLL (normalized QoS)")
    axes.set_title(title)
    axes.legend()
    return save_figure(figure, path)


def plot_pit(pit_values: np.ndarray, path: Path, title: str, bins: int = 20) -> Path:
    """Histogram of probability-integral-transform values: flat at 1 for a calibrated model; a U shape
    means sigma is too small (overconfident), a hump in the middle that it is too large."""
    figure, axes = plt.subplots(figsize=(6.4, 4))
    axes.hist(np.clip(pit_values, 0.0, 1.0), bins=bins, range=(0.0, 1.0), density=True, color="tab:blue",
              edgecolor="white")
    axes.axhline(1.0, color="red", linestyle="--", label="calibrated (uniform)")
    axes.set_xlabel("PIT = Phi((qos - mean) / sigma)")
    axes.set_ylabel("density")
    axes.set_title(title)
    axes.legend()
    return save_figure(figure, path)


def _grouped_bars(axes: Axes, frame: pd.DataFrame, column: str, label: str) -> None:
    slices = list(dict.fromkeys(frame["slice"]))
    levels = sorted(frame["level"].unique())
    labels = frame.drop_duplicates("level").set_index("level").loc[levels, "traffic"]
    width = 0.8 / len(slices)
    for offset, name in enumerate(slices):
        rows = frame[frame["slice"] == name].set_index("level").reindex(levels)
        positions = np.arange(len(levels)) + offset * width - 0.4 + width / 2
        axes.bar(positions, rows[column], width, label=name)
    axes.set_xticks(np.arange(len(levels)), list(labels), fontsize=8, rotation=15)
    axes.set_ylabel(label)
    if len(slices) > 1:
        axes.legend()


def save_figure(figure: Figure, path: Path) -> Path:
    """Lay out, write (110 dpi, parent directories created) and close ``figure``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
