"""``slicebed model train|eval``: slice models from MicroOpt-format CSVs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.evaluation import evaluate
from analysis.slice_model import ModelConfig, load_model, pick_device
from analysis.training import TrainingConfig, save_training, train
from collectors.dataset import load_qos_csv, load_qos_csvs
from controller.cli.common import add_device, add_settle, print_table, progress_bar


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``model train`` and ``model eval``."""
    model = parser.add_subparsers(
        dest="action", required=True)
    train_parser = model.add_parser("train", help="train a slice model on MicroOpt-format CSVs")
    train_parser.add_argument("--data", action="append", required=True, type=Path, help="CSV (repeatable)")
    train_parser.add_argument("--out", required=True, type=Path, help="directory for model.pt and metrics.json")
    train_parser.add_argument("--epochs", type=int, default=TrainingConfig.epochs)
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--batch-size", type=int, default=TrainingConfig.batch_size)
    train_parser.add_argument("--validation-fraction", type=float, default=TrainingConfig.validation_fraction)
    train_parser.add_argument("--width", type=int, default=ModelConfig.width)
    train_parser.add_argument("--depth", type=int, default=ModelConfig.depth)
    train_parser.add_argument("--head-width", type=int, default=ModelConfig.head_width)
    add_settle(train_parser)
    add_device(train_parser)
    train_parser.set_defaults(handler=cmd_model_train)

    eval_parser = model.add_parser("eval", help="fit metrics of a slice model on a CSV")
    eval_parser.add_argument("--model", required=True, type=Path)
    eval_parser.add_argument("--data", required=True, type=Path)
    eval_parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_settle(eval_parser)
    eval_parser.set_defaults(handler=cmd_model_eval)


def cmd_model_train(args: argparse.Namespace) -> int:
    frame = load_qos_csvs(args.data, settle_s=args.settle_s)
    config = TrainingConfig(
        epochs=args.epochs, batch_size=args.batch_size, validation_fraction=args.validation_fraction,
        seed=args.seed, model=ModelConfig(args.width, args.depth, args.head_width),
    )
    with progress_bar(args.quiet) as progress:
        task = progress.add_task("training", total=config.epochs)
        result = train(frame, config, device=pick_device(args.device),
                       progress=lambda epoch, _total, _loss: progress.update(task, completed=epoch))
    save_training(result, args.out, extra={
        "files": [str(path) for path in args.data], "settle_s": args.settle_s,
    })
    document = result.metrics_document()
    print(json.dumps({"model": str(args.out / "model.pt"), "train": document["train"],
                      "validation": document["validation"], "seconds": round(result.seconds, 2)}, indent=2))
    return 0


def cmd_model_eval(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    metrics = evaluate(model, load_qos_csv(args.data, settle_s=args.settle_s)).as_dict()
    if args.json:
        print(json.dumps(metrics))
    else:
        print_table("model evaluation", [metrics])
    return 0
