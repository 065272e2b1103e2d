"""Slice-model training: grouped cross-validation accuracy, training time and inference time per architecture.

Trains each variant with each seed on train_dataset.csv (settle 10 s) under the same five grouped folds
(whole (cpu, bw) allocations held out, fold seed 0) and prints, per variant and seed, the held-out
normalized NLL, MAE, 80/90 % interval coverage (means over folds) and the training wall time (every fold's
model, the row split's and the final one); then per variant the means over seeds, the seed-to-seed
standard deviation of MAE, the MAE over the noise floor, the NLL gain over ``paper`` (the paper's network
as published: no calibration) and the time of one single-input prediction. The load average is printed
before and after: timings on a busy machine are not the model's.

    .venv/bin/python benchmarks/bench_training.py [--variants ensemble paper ...] [--seeds 0 1 2 3 4] [--threads 2]
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
import torch

from analysis.ensemble_model import EnsembleConfig
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
    "ensemble": Variant("default: monotone, link-bounded ensemble, calibrated", {}),
    "ensemble-free": Variant("ensemble without monotone structure or link bound",
                             {"model": EnsembleConfig(monotone=False, link_bound=False)}),
    "ensemble-no-bound": Variant("ensemble, monotone, no link bound", {"model": EnsembleConfig(link_bound=False)}),
    "ensemble-uncalibrated": Variant("default ensemble, sigma as trained", {"calibrate": False}),
    "ensemble-1": Variant("a single monotone, link-bounded network, calibrated", {"model": EnsembleConfig(members=1)}),
    "paper": Variant("the paper's network as published (no calibration)",
                     {"model": PaperConfig(), "calibrate": False}),
    "paper-calibrated": Variant("the paper's network, calibrated", {"model": PaperConfig()}),
}


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


def measure(frame: Any, name: str, seed: int, epochs: int | None) -> dict[str, Any]:
    """Train variant ``name`` with ``seed``; its grouped figures (means over folds) and wall time."""
    config = TrainingConfig(seed=seed, epochs=epochs, **VARIANTS[name].config)
    result = train(frame, config)
    assert result.grouped is not None
    grouped = result.grouped.as_dict()
    mean = grouped["mean"]
    return {"variant": name, "seed": seed, "nll_normalized": mean["nll_normalized"], "mae": mean["mae"],
            "coverage_80": mean["coverage_80"], "coverage_90": mean["coverage_90"],
            "coverage_50": mean["coverage_50"], "coverage_95": mean["coverage_95"],
            "row_split_nll_normalized": result.validation_metrics.nll_normalized if result.validation_metrics
            else None, "noise_floor_mae": grouped["noise_floor_mae"], "sigma_scale": result.model.sigma_scale,
            "seconds": result.seconds, "inference_ms": inference_ms(result.model)}


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = load_qos_csv(args.data, settle_s=args.settle_s)
    print(f"load average before: {' '.join(f'{value:.2f}' for value in os.getloadavg())}", flush=True)
    rows = []
    for name in args.variants:
        for seed in args.seeds:
            rows.append(measure(frame, name, seed, args.epochs))
            print(json.dumps({key: round(value, 4) if isinstance(value, float) else value
                              for key, value in rows[-1].items()}), flush=True)
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
    for name in summary:
        print(f"  {name}: {VARIANTS[name].description}")


if __name__ == "__main__":
    main()
