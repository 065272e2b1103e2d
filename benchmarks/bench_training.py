"""Slice-model training on the public MicroOpt dataset: wall time, fit metrics, inference time.

Trains the paper's architecture and schedule (3,000 epochs, lr 1e-3 then 1e-4) on a seeded 80/20 row
split of train_dataset.csv, once per --settle-s value, and prints the metrics next to the paper's
validation figures (normalized NLL -1.72, MAE 0.62 Mbps).

    .venv/bin/python benchmarks/bench_training.py [--epochs 3000] [--settle-s 10 0] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from analysis.training import TrainingConfig, train
from collectors.dataset import DEFAULT_SETTLE_S, load_qos_csv

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "microopt" / "train_dataset.csv"
PAPER_VALIDATION = {"nll_normalized": -1.72, "mae": 0.62, "mse": 1.24}


def inference_ms(model: torch.nn.Module, repeats: int = 2000) -> float:
    """Mean wall time of one single-input forward pass, in milliseconds."""
    sample = torch.tensor([[3.0, 20.0, 2000.0]])
    with torch.no_grad():
        for _ in range(50):
            model(sample)
        started = time.perf_counter()
        for _ in range(repeats):
            model(sample)
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATASET)
    parser.add_argument("--epochs", type=int, default=TrainingConfig.epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settle-s", type=float, nargs="+", default=[DEFAULT_SETTLE_S, 0.0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for settle in args.settle_s:
        frame = load_qos_csv(args.data, settle_s=settle)
        result = train(frame, TrainingConfig(epochs=args.epochs, seed=args.seed))
        validation = result.validation_metrics
        assert validation is not None
        rows.append({
            "settle_s": settle,
            "rows": len(frame),
            "train_seconds": round(result.seconds, 1),
            "train": {k: round(v, 4) for k, v in result.train_metrics.as_dict().items()},
            "validation": {k: round(v, 4) for k, v in validation.as_dict().items()},
            "meets_paper_validation": validation.nll_normalized <= PAPER_VALIDATION["nll_normalized"]
            and validation.mae <= PAPER_VALIDATION["mae"],
            "inference_ms": round(inference_ms(result.model), 4),
        })
        print(json.dumps(rows[-1]))
    print(f"\n{'settle_s':>8} {'rows':>6} {'seconds':>8} {'val NLL(norm)':>14} {'val MAE':>8} {'val MSE':>8} "
          f"{'paper':>6} {'infer ms':>9}")
    for row in rows:
        v = row["validation"]
        print(f"{row['settle_s']:>8g} {row['rows']:>6} {row['train_seconds']:>8} {v['nll_normalized']:>14} "
              f"{v['mae']:>8} {v['mse']:>8} {'yes' if row['meets_paper_validation'] else 'no':>6} "
              f"{row['inference_ms']:>9}")
    print(f"paper (validation): NLL(norm) {PAPER_VALIDATION['nll_normalized']}, MAE {PAPER_VALIDATION['mae']}, "
          f"MSE {PAPER_VALIDATION['mse']}, inference 0.528 ms")


if __name__ == "__main__":
    main()
