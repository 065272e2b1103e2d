"""``slicebed model train|eval``: slice models from MicroOpt-format CSVs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from analysis.calibration import pit, z_scores
from analysis.evaluation import fit_metrics, predict
from analysis.plots import plot_pit
from analysis.slice_model import ARCHITECTURES, EnsembleConfig, ModelConfig, PaperConfig, load_model, pick_device
from analysis.training import ARCH_DEFAULTS, TrainingConfig, TrainingResult, save_training, train
from analysis.validation import DEFAULT_GROUP_BY
from collectors.dataset import TARGET, load_qos_csv, load_qos_csvs
from controller.cli.common import add_device, add_json, add_settle, print_result, print_table, progress_bar

PIT_PLOT = "pit-grouped.png"
"""The held-out groups' PIT histogram ``model train`` writes beside the model."""


def register(parser: argparse.ArgumentParser) -> None:
    """Add ``model train`` and ``model eval``."""
    model = parser.add_subparsers(
        dest="action", required=True)
    train_parser = model.add_parser("train", help="train a slice model on MicroOpt-format CSVs")
    train_parser.add_argument("--data", action="append", required=True, type=Path,
                              help="MicroOpt-format CSV (repeatable)")
    train_parser.add_argument("--out", required=True, type=Path,
                              help="directory for model.pt, metrics.json, split.json and the PIT plot")
    train_parser.add_argument("--arch", choices=list(ARCHITECTURES), default="ensemble",
                              help="ensemble: monotone, link-bounded deep ensemble; paper: MicroOpt's network")
    defaults = ", ".join(f"{arch} {ARCH_DEFAULTS[kind][0]}" for arch, kind in ARCHITECTURES.items())
    train_parser.add_argument("--epochs", type=int, help=f"training epochs (default: {defaults})")
    rates = ", ".join(f"{arch} {ARCH_DEFAULTS[kind][1]:g}" for arch, kind in ARCHITECTURES.items())
    train_parser.add_argument("--learning-rate", type=float, help=f"Adam's learning rate (default: {rates})")
    train_parser.add_argument("--seed", type=int, default=0, help="seed of the row split and initialization")
    train_parser.add_argument("--validation-fraction", type=float, default=TrainingConfig.validation_fraction,
                              help="share of the rows held out for the row-split validation")
    train_parser.add_argument("--folds", type=int, default=TrainingConfig.folds,
                              help="grouped cross-validation folds (0: none, which needs --no-calibrate)")
    train_parser.add_argument("--group-by", default=",".join(DEFAULT_GROUP_BY),
                              help="columns whose distinct values form the held-out groups (n_users, bw, cpu)")
    train_parser.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                              help="keep sigma as trained (no factor fitted on the held-out groups)")
    train_parser.add_argument("--lower-is-better", dest="higher_is_better", action="store_false",
                              help="the QoS is a cost such as delay (monotone the other way, no link bound)")
    train_parser.add_argument("--members", type=int, default=EnsembleConfig.members, help="ensemble: networks")
    train_parser.add_argument("--width", type=int, help=f"units per hidden layer (default: ensemble "
                              f"{EnsembleConfig.width}, paper {PaperConfig.width})")
    train_parser.add_argument("--depth", type=int, help=f"hidden layers (default: ensemble {EnsembleConfig.depth}, "
                              f"paper {PaperConfig.depth} shared)")
    train_parser.add_argument("--no-monotone", dest="monotone", action="store_false",
                              help="ensemble: do not force the QoS to improve with CPU and bandwidth")
    train_parser.add_argument("--no-link-bound", dest="link_bound", action="store_false",
                              help="ensemble: do not bound the mean per-user throughput by bandwidth / users")
    train_parser.add_argument("--head-width", type=int, default=PaperConfig.head_width,
                              help="paper: units of the mean and standard-deviation branches' hidden layer")
    train_parser.add_argument("--batch-size", type=int, default=TrainingConfig.batch_size,
                              help="paper: rows per mini-batch (the ensemble trains full-batch)")
    add_settle(train_parser)
    add_device(train_parser)
    add_json(train_parser)
    train_parser.set_defaults(handler=cmd_model_train)

    eval_parser = model.add_parser("eval", help="fit metrics and calibration of a slice model on a CSV")
    eval_parser.add_argument("--model", required=True, type=Path, help="model directory (model.pt)")
    eval_parser.add_argument("--data", required=True, type=Path, help="MicroOpt-format CSV to evaluate on")
    eval_parser.add_argument("--pit-plot", type=Path,
                             help="PIT histogram PNG (default: pit-<CSV name>.png in the model directory)")
    add_json(eval_parser)
    add_settle(eval_parser)
    eval_parser.set_defaults(handler=cmd_model_eval)


def model_config(args: argparse.Namespace) -> ModelConfig:
    """The architecture the options describe."""
    if args.arch == "paper":
        return PaperConfig(args.width or PaperConfig.width, args.depth or PaperConfig.depth, args.head_width)
    return EnsembleConfig(args.members, args.width or EnsembleConfig.width, args.depth or EnsembleConfig.depth,
                          args.monotone, args.link_bound and args.higher_is_better)


def cmd_model_train(args: argparse.Namespace) -> int:
    frame = load_qos_csvs(args.data, settle_s=args.settle_s)
    config = TrainingConfig(
        epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
        validation_fraction=args.validation_fraction, seed=args.seed, model=model_config(args),
        higher_is_better=args.higher_is_better, folds=args.folds,
        group_by=tuple(column.strip() for column in args.group_by.split(",") if column.strip()),
        calibrate=args.calibrate,
    )
    with progress_bar(args.quiet) as progress:
        task = progress.add_task("training", total=config.steps)
        result = train(frame, config, device=pick_device(args.device), source=", ".join(map(str, args.data)),
                       progress=lambda step, total, _loss: progress.update(task, completed=step, total=total))
    save_training(result, args.out, extra={
        "files": [str(path) for path in args.data], "settle_s": args.settle_s,
    })
    if result.grouped is not None:
        plot_pit(pit(z_scores(result.grouped.qos, result.grouped.mean, result.grouped.std)), args.out / PIT_PLOT,
                 "held-out groups: probability integral transform")
    summary = training_summary(result, args.out)
    print_result(args, summary, lambda: print_training_summary(summary))
    return 0


def training_summary(result: TrainingResult, out: Path) -> dict[str, Any]:
    """What ``model train`` prints: where the model is and its row-split and grouped figures."""
    document = result.metrics_document()
    grouped = document["grouped"]
    return {
        "model": str(out / "model.pt"), "arch": document["arch"], "train": document["train"],
        "validation": document["validation"],
        "grouped": None if grouped is None else {
            key: grouped[key] for key in ("group_by", "folds", "groups", "mean", "std", "noise_floor_mae",
                                          "mae_over_noise_floor")},
        "sigma_scale": document["sigma_scale"], "seconds": round(result.seconds, 2),
        "pit_plot": str(out / PIT_PLOT) if result.grouped is not None else None,
    }


def print_training_summary(summary: dict[str, Any]) -> None:
    """``model train``'s summary for people: one row per split (the held-out groups' row is the mean over the
    folds), then the sigma factor and the PIT plot."""
    columns = list(summary["train"])
    rows = [{"split": name, **summary[name]} for name in ("train", "validation") if summary[name]]
    grouped = summary["grouped"]
    if grouped is not None:
        rows.append({"split": f"held-out groups ({grouped['groups']} in {grouped['folds']} folds, mean)",
                     **{column: grouped["mean"].get(column, "-") for column in columns}})
    print_table(f"{summary['arch']} model {summary['model']} ({summary['seconds']} s)", rows)
    if grouped is not None and grouped["mae_over_noise_floor"] is not None:
        print(f"held-out MAE / noise floor: {grouped['mae_over_noise_floor']:.3g}")
    print(f"sigma scale: {summary['sigma_scale']:.4g}")
    if summary["pit_plot"] is not None:
        print(f"PIT histogram: {summary['pit_plot']}")


def cmd_model_eval(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    frame = load_qos_csv(args.data, settle_s=args.settle_s)
    mean, std = predict(model, frame)
    qos = frame[TARGET].to_numpy()
    metrics = fit_metrics(qos, mean, std, model.scale.span).as_dict()
    model_dir = args.model if args.model.is_dir() else args.model.parent
    plot = plot_pit(pit(z_scores(qos, mean, std)), args.pit_plot or model_dir / f"pit-{args.data.stem}.png",
                    f"{args.data.name}: probability integral transform")

    def human() -> None:
        print_table("model evaluation", [metrics])
        print(f"PIT histogram: {plot}")

    print_result(args, {**metrics, "pit_plot": str(plot)}, human)
    return 0
