"""Slice-model training: grouped cross-validation accuracy, training time and inference time per architecture.

Trains each variant with each seed on train_dataset.csv (settle 10 s) under the same five grouped folds
(whole (cpu, bw) allocations held out, fold seed 0) and prints, per variant and seed, calibrated (``+cal``)
and as trained, the held-out normalized NLL, MAE, 50/80/90/95 % interval coverage (means over folds) and
the training wall time (every fold's model, the row split's and the final one, calibration included);
then per variant the means over seeds, the seed-to-seed
standard deviation of MAE, the MAE over the noise floor, the NLL gain over ``paper`` (the paper's network
as published: no calibration) and the time of one single-input prediction. The load average is printed
before and after: timings on a busy machine are not the model's. ``--off-grid`` adds a check shaped like the
paper's test split: models trained without a CPU line and a bandwidth line, tested where the two cross.

    .venv/bin/python benchmarks/bench_training.py [--variants ensemble paper ...] [--seeds 0 1 2 3 4] [--threads 2]
                                                  [--off-grid]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from analysis.ensemble_model import EnsembleConfig
from analysis.evaluation import evaluate
from analysis.model_base import SliceModel
from analysis.paper_model import PaperConfig
from analysis.training import TrainingConfig, train
from collectors.dataset import DEFAULT_SETTLE_S, load_qos_csv

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "microopt" / "train_dataset.csv"


@dataclass(frozen=True)
class Variant:
    """A named training configuration (everything but the seed)."""

    description: str
    config: dict[str, Any]


VARIANTS = {
    "ensemble": Variant("default: monotone, link-bounded ensemble of 5", {}),
    "ensemble-free": Variant("ensemble of 5 without monotone structure or link bound",
                             {"model": EnsembleConfig(monotone=False, link_bound=False)}),
    "ensemble-no-bound": Variant("ensemble of 5, monotone, no link bound", {"model": EnsembleConfig(link_bound=False)}),
    "ensemble-1": Variant("one monotone, link-bounded network", {"model": EnsembleConfig(members=1)}),
    "paper": Variant("the paper's network and schedule", {"model": PaperConfig()}),
}
"""Each variant is trained once per seed and reported calibrated (``+cal``, sigma factor cross-fitted on the
other folds) and as trained; ``paper`` as trained is the paper's network as published."""


def inference_ms(model: SliceModel, repeats: int = 2000) -> float:
    """Mean wall time of one single-input prediction, in milliseconds."""
    sample = torch.tensor([[3.0, 20.0, 2000.0]])
    with torch.no_grad():
        for _ in range(50):
            model(sample)
        started = time.perf_counter()
        for _ in range(repeats):
            model(sample)
    return (time.perf_counter() - started) / repeats * 1000


def measure(frame: pd.DataFrame, name: str, seed: int, epochs: int | None) -> list[dict[str, Any]]:
    """Train variant ``name`` with ``seed``; its grouped figures (means over folds), calibrated and as
    trained, with the wall time and the inference time."""
    result = train(frame, TrainingConfig(seed=seed, epochs=epochs, **VARIANTS[name].config))
    grouped = result.grouped
    assert grouped is not None
    common = {"seed": seed, "noise_floor_mae": grouped.noise_floor_mae, "seconds": result.seconds,
              "inference_ms": inference_ms(result.model)}
    rows = []
    for calibrated in (True, False):
        mean = grouped.summary(calibrated)[0]
        rows.append({"variant": f"{name}+cal" if calibrated else name, **common,
                     **{key: mean[key] for key in ("nll_normalized", "mae", "coverage_50", "coverage_80",
                                                   "coverage_90", "coverage_95")},
                     "sigma_scale": result.model.sigma_scale if calibrated else 1.0})
    return rows


OFF_GRID_LINES = ((1000.0, 15.0), (2500.0, 25.0), (3500.0, 35.0))
"""(cpu, bw) lines removed together for the off-grid check, as the paper's test split removed cpu 1500 and bw 20."""


def off_grid(frame: pd.DataFrame, name: str, seed: int, epochs: int | None) -> dict[str, Any]:
    """Mean figures over ``OFF_GRID_LINES`` of a model trained without a CPU line and a bandwidth line and
    tested where they cross (every user count): both inputs off its grid, like the paper's test split. The
    paper's network is trained as published (no grouped folds, no calibration) to keep it quick."""
    config = dict(VARIANTS[name].config)
    if name == "paper":
        config.update(folds=0, calibrate=False)
    figures = []
    for cpu, bandwidth in OFF_GRID_LINES:
        kept = (frame["cpu"] != cpu) & (frame["bw"] != bandwidth)
        crossing = (frame["cpu"] == cpu) & (frame["bw"] == bandwidth)
        model = train(frame[kept].reset_index(drop=True), TrainingConfig(seed=seed, epochs=epochs, **config)).model
        figures.append(evaluate(model, frame[crossing]).as_dict())
    mean = pd.DataFrame(figures).mean()
    return {"variant": name, "seed": seed, **{key: float(mean[key]) for key in
                                               ("nll_normalized", "mae", "coverage_80", "coverage_90")}}


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per variant: means over seeds, the seed-to-seed MAE spread and MAE over the noise floor."""
    summary = {}
    for name in dict.fromkeys(row["variant"] for row in rows):
        mine = [row for row in rows if row["variant"] == name]
        figures = {key: float(np.mean([row[key] for row in mine]))
                   for key in ("nll_normalized", "mae", "coverage_80", "coverage_90", "seconds", "noise_floor_mae",
                               "inference_ms")}
        figures["mae_seed_std"] = float(np.std([row["mae"] for row in mine]))
        figures["seconds_max"] = float(max(row["seconds"] for row in mine))
        figures["mae_over_floor"] = figures["mae"] / figures["noise_floor_mae"]
        summary[name] = figures
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATASET)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["ensemble", "paper"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, help="override every variant's epochs")
    parser.add_argument("--settle-s", type=float, default=DEFAULT_SETTLE_S,
                        help="seconds dropped after each grid change (0 keeps the reconfiguration transient)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--off-grid", action="store_true",
                        help="also train without pairs of grid lines and test where they cross (slow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = load_qos_csv(args.data, settle_s=args.settle_s)
    print(f"load average before: {' '.join(f'{value:.2f}' for value in os.getloadavg())}", flush=True)
    rows = []
    for name in args.variants:
        for seed in args.seeds:
            for row in measure(frame, name, seed, args.epochs):
                rows.append(row)
                print(json.dumps({key: round(value, 4) if isinstance(value, float) else value
                                  for key, value in row.items()}), flush=True)
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    summary = summarize(rows)
    paper = summary.get("paper")
    print(f"\ngrouped 5-fold CV over (cpu, bw) allocations, {len(args.seeds)} seeds, {len(frame)} rows "
          f"(settle {args.settle_s:g} s); noise floor MAE {rows[0]['noise_floor_mae']:.4f} Mbps")
    print(f"{'variant':<22} {'NLL(norm)':>9} {'vs paper':>8} {'MAE':>6} {'MAE/floor':>9} {'MAE sd':>7} "
          f"{'cov80':>6} {'cov90':>6} {'train s':>8} {'max s':>6} {'infer ms':>8}")
    for name, figures in summary.items():
        gain = f"{paper['nll_normalized'] - figures['nll_normalized']:+.3f}" if paper else "-"
        print(f"{name:<22} {figures['nll_normalized']:>9.3f} {gain:>8} {figures['mae']:>6.3f} "
              f"{figures['mae_over_floor']:>9.3f} {figures['mae_seed_std']:>7.3f} {figures['coverage_80']:>6.3f} "
              f"{figures['coverage_90']:>6.3f} {figures['seconds']:>8.1f} {figures['seconds_max']:>6.1f} "
              f"{figures['inference_ms']:>8.3f}")
    for name in args.variants:
        print(f"  {name}: {VARIANTS[name].description}")
    if args.off_grid:
        print(f"\noff-grid: trained without the cpu and bw lines of each of {OFF_GRID_LINES}, tested where they "
              "cross; means over the crossings")
        results = [off_grid(frame, name, seed, args.epochs) for name in args.variants for seed in args.seeds]
        for row in results:
            print(json.dumps({key: round(value, 4) if isinstance(value, float) else value
                              for key, value in row.items()}), flush=True)
        for name in args.variants:
            mine = pd.DataFrame([row for row in results if row["variant"] == name])
            print(f"{name:<22} NLL(norm) {mine['nll_normalized'].mean():.3f}  MAE {mine['mae'].mean():.3f}  "
                  f"cov80 {mine['coverage_80'].mean():.3f}  cov90 {mine['coverage_90'].mean():.3f}")


if __name__ == "__main__":
    main()
