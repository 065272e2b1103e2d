"""The slice model: grouped validation, the batched ensemble, its structure (monotone, link bound), calibration,
support and checkpoints. Models are trained tiny here; the benchmark (bench_model.py) measures accuracy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import QOS_CSV_HEADER, assert_one_error_line, run_cli

from analysis.calibration import MIN_CALIBRATION_GROUPS, coverage, fit_sigma_scale, pit
from analysis.ensemble_model import EnsembleConfig, EnsembleModel
from analysis.ensemble_training import PointStatistics, Role, fit_ensembles
from analysis.model_base import ModelSupport, TargetScale
from analysis.slice_model import PaperConfig, load_model, save_model
from analysis.training import TrainingConfig, TrainingResult, train
from analysis.validation import grouped_folds
from collectors.dataset import FEATURES, load_qos_csv, write_qos_csv
from core.errors import InputError

USERS = (1, 3, 5)
CPU = (500, 1000, 2000, 4000)
BANDWIDTH = (5, 15, 25, 40)
TINY = TrainingConfig(epochs=150)
Trained = tuple[pd.DataFrame, TrainingResult]


def synthetic(rows_per_point: int = 12, seed: int = 0, delay: bool = False) -> pd.DataFrame:
    """A 3 x 4 x 4 grid (16 allocations) in the MicroOpt format: per-user throughput min(0.8 bw / n, CPU's
    share) with noise, or with ``delay`` a delay in ms that falls with CPU and bandwidth."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2024-05-18 11:00:00")
    for users in USERS:
        for cpu in CPU:
            for bandwidth in BANDWIDTH:
                if delay:
                    level = 10 + 4000 / cpu + 200 / bandwidth * users
                else:
                    level = min(0.8 * bandwidth / users, 12 * (1 - math.exp(-cpu / 1200)) / math.sqrt(users))
                for _ in range(rows_per_point):
                    qos = max(level + rng.normal(0, 0.1 * level + 0.1), 0.01)
                    rows.append({"time": start, "total_bandwidth_usage": qos * users, "cpu": float(cpu),
                                 "bw": float(bandwidth), "n_users": float(users), "qos": qos})
                    start += pd.Timedelta(seconds=1)
    frame = pd.DataFrame(rows)
    frame["block"] = frame.groupby(list(FEATURES), sort=False).ngroup()
    return frame


def grid_inputs(users: float, cpu: np.ndarray, bandwidth: np.ndarray) -> torch.Tensor:
    """Inputs (len(cpu), len(bandwidth), 3) in FEATURES order at one user count."""
    mesh_cpu, mesh_bw = np.meshgrid(cpu, bandwidth, indexing="ij")
    columns = {"n_users": np.full_like(mesh_cpu, users), "bw": mesh_bw, "cpu": mesh_cpu}
    return torch.tensor(np.stack([columns[name] for name in FEATURES], -1), dtype=torch.float32)


@pytest.fixture(scope="module")
def trained() -> Trained:
    torch.set_num_threads(1)
    frame = synthetic()
    return frame, train(frame, TINY)


def test_grouped_folds_hold_out_whole_allocations_and_ignore_the_model_seed() -> None:
    frame = synthetic(rows_per_point=3)
    folds = grouped_folds(frame, 5, seed=0)
    assert folds.n_groups == len(CPU) * len(BANDWIDTH)
    per_group = frame.assign(fold=folds.fold).groupby(["cpu", "bw"])["fold"].nunique()
    assert (per_group == 1).all()  # every user count of an allocation leaves with it
    assert sorted(np.bincount(folds.fold)) == [3 * 3 * 3, 3 * 3 * 3, 3 * 3 * 3, 3 * 3 * 3, 4 * 3 * 3]
    again = train(frame, TrainingConfig(epochs=2, seed=7)).grouped
    assert again is not None and np.array_equal(again.folds.fold, folds.fold)
    points = grouped_folds(frame, 5, group_by=("n_users", "bw", "cpu"))
    assert points.n_groups == len(USERS) * len(CPU) * len(BANDWIDTH)


def test_point_statistics_give_the_rows_exact_likelihood() -> None:
    """Training on pooled grid points is exact: a point's mean NLL equals the mean of its rows' NLLs."""
    frame = synthetic(rows_per_point=5)
    rows = np.arange(len(frame)) % 3 != 0
    role = Role("r", rows, TargetScale.of(frame["qos"]))
    points = PointStatistics.of(frame, [role], "cpu")
    mean, std = torch.tensor(2.5), torch.tensor(0.7)
    pooled = (torch.log(std) + 0.5 * math.log(2 * math.pi)
              + ((points.mean[0] - mean) ** 2 + points.variance[0]) / (2 * std**2))
    pooled = float((pooled * points.count[0]).sum() / points.count[0].sum())
    qos = torch.tensor(frame["qos"].to_numpy()[rows], dtype=torch.float32)
    direct = float((torch.log(std) + 0.5 * math.log(2 * math.pi) + (qos - mean) ** 2 / (2 * std**2)).mean())
    assert pooled == pytest.approx(direct, rel=1e-5)


def test_a_group_unlike_its_neighbours_shows_in_grouped_validation_only() -> None:
    """Row-split validation sees every allocation in training; grouped validation does not."""
    torch.set_num_threads(1)
    frame = synthetic(rows_per_point=12)
    odd = (frame["cpu"] == 2000) & (frame["bw"] == 25)
    frame.loc[odd, "qos"] += 6.0  # no smooth model predicts this allocation from its neighbours
    result = train(frame, TrainingConfig(epochs=300, calibrate=False))
    assert result.grouped is not None and result.validation_metrics is not None
    held_out = result.grouped.folds.fold[odd.to_numpy()][0]
    odd_fold = result.grouped.per_fold()[held_out]
    assert odd_fold.mae > 2 * result.validation_metrics.mae
    assert odd_fold.mae > 2 * np.median([fold.mae for fold in result.grouped.per_fold()])


def test_metrics_document_has_grouped_figures_beside_the_row_split(trained: Trained) -> None:
    frame, result = trained
    document = result.metrics_document()
    grouped = document["grouped"]
    assert grouped["folds"] == 5 and grouped["groups"] == 16 and grouped["calibrated"]
    assert len(grouped["per_fold"]) == 5
    for key in ("nll_normalized", "mae", "coverage_80", "coverage_90"):
        values = [fold[key] for fold in grouped["per_fold"]]
        assert grouped["mean"][key] == pytest.approx(np.mean(values))
        assert grouped["std"][key] == pytest.approx(np.std(values))
    assert grouped["noise_floor_mae"] == pytest.approx(
        (frame["qos"] - frame.groupby(list(FEATURES))["qos"].transform("mean")).abs().mean())
    assert document["validation"]["n"] == round(0.2 * len(frame))
    assert document["support"] == {"users": [1.0, 5.0], "bandwidth": [5.0, 40.0], "cpu": [500.0, 4000.0],
                                   "grid_points": 48}
    assert 0.2 < document["sigma_scale"] < 5.0


def test_ensemble_members_train_independently_in_one_program() -> None:
    """The stacked program trains each member on its own role's rows only: a fold's ensemble equals
    the same members trained alone on that fold's rows (same initial weights)."""
    torch.set_num_threads(1)
    frame = synthetic(rows_per_point=4)
    config = EnsembleConfig(members=2, width=8, depth=1)
    support = ModelSupport.of(frame)
    scale = TargetScale.of(frame["qos"])
    keep = (frame["cpu"] != 1000).to_numpy()
    both, _ = fit_ensembles(frame, [Role("fold-0", keep, scale), Role("final", np.ones(len(frame), bool), scale)],
                            config, support, True, 30, 1e-2, 3, "cpu", None, lambda _loss: None)
    alone, _ = fit_ensembles(frame, [Role("fold-0", keep, scale), Role("final", keep, scale)],
                             config, support, True, 30, 1e-2, 3, "cpu", None, lambda _loss: None)
    inputs = torch.tensor(frame.loc[:, list(FEATURES)].to_numpy(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(both["fold-0"](inputs), alone["fold-0"](inputs))
        assert not torch.allclose(both["final"](inputs)[0], alone["final"](inputs)[0])


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_the_mean_never_gets_worse_with_more_cpu_or_bandwidth(higher_is_better: bool) -> None:
    torch.set_num_threads(1)
    frame = synthetic(rows_per_point=6, delay=not higher_is_better)
    config = TrainingConfig(epochs=150, higher_is_better=higher_is_better,
                            model=EnsembleConfig(link_bound=higher_is_better))
    model = train(frame, config).model
    cpu = np.linspace(100, 8000, 60)
    bandwidth = np.linspace(1, 80, 50)
    sign = 1.0 if higher_is_better else -1.0
    with torch.no_grad():
        for users in (1, 2.5, 5, 9):
            mean, _ = model(grid_inputs(users, cpu, bandwidth))
            better = sign * mean
            assert (better.diff(dim=0) >= -1e-4).all() and (better.diff(dim=1) >= -1e-4).all()
    assert model.higher_is_better is higher_is_better


def test_the_mean_throughput_stays_within_bandwidth_per_user(trained: Trained) -> None:
    _, result = trained
    model = result.model
    cpu = np.linspace(100, 8000, 40)
    bandwidth = np.linspace(0.5, 80, 40)
    with torch.no_grad():
        for users in (1, 2, 4.5, 10):
            mean, std = model(grid_inputs(users, cpu, bandwidth))
            assert (mean <= torch.tensor(bandwidth, dtype=torch.float32) / users + 1e-4).all()
            assert (std > 0).all()


def test_the_link_bound_needs_a_higher_is_better_qos() -> None:
    with pytest.raises(InputError, match="link bound"):
        TrainingConfig(higher_is_better=False)


def test_the_ensemble_is_less_certain_away_from_its_data(trained: Trained) -> None:
    """Members disagree more where nothing was measured, and their own sigmas do not shrink outside the support."""
    frame, result = trained
    model = result.model
    assert isinstance(model, EnsembleModel)
    measured = torch.tensor(frame.loc[:, list(FEATURES)].drop_duplicates().to_numpy(np.float32))
    unmeasured = torch.tensor([[2.0, 20.0, 1500.0], [4.0, 30.0, 3000.0]])  # every value between grid lines
    with torch.no_grad():
        spread_measured = model.member_outputs(measured)[0].std(0)
        spread_unmeasured = model.member_outputs(unmeasured)[0].std(0)
        _, edge = model.member_outputs(torch.tensor([[5.0, 25.0, 2000.0]]))
        _, beyond = model.member_outputs(torch.tensor([[12.0, 25.0, 2000.0]]))
    assert float(spread_unmeasured.min()) > 2 * float(spread_measured.median())
    assert (beyond >= 0.99 * edge).all()


def test_the_sigma_factor_restores_coverage_and_refuses_too_few_groups() -> None:
    z = np.random.default_rng(0).normal(0, 2.0, 20_000)  # a model whose sigma is half what it should be
    factor = fit_sigma_scale(z)
    assert factor == pytest.approx(2.0, rel=0.03)
    assert coverage(z / factor)["80"] == pytest.approx(0.8, abs=0.01)
    assert coverage(z)["80"] < 0.5
    assert np.histogram(pit(z / factor), bins=10, range=(0, 1))[0].min() > 1700  # near-uniform
    frame = synthetic()
    few = frame[frame["cpu"].isin(CPU[:2])]  # 8 allocations
    with pytest.raises(InputError, match=f"at least {MIN_CALIBRATION_GROUPS} groups .* these data have 8"):
        train(few, TrainingConfig(epochs=1, folds=4))


def test_checkpoints_keep_support_direction_and_calibration(tmp_path: Path,
                                                            trained: Trained) -> None:
    frame, result = trained
    model = result.model
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert isinstance(loaded, EnsembleModel)
    assert loaded.support == model.support == ModelSupport.of(frame)
    assert loaded.support.grid is not None and len(loaded.support.grid) == 48
    assert loaded.sigma_scale == model.sigma_scale != 1.0
    inputs = torch.tensor([[2.0, 20.0, 1500.0], [5.0, 40.0, 4000.0], [1.0, 5.0, 500.0]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), model(inputs))
        inside = loaded.support.contains(torch.tensor([[2.0, 20.0, 1500.0], [6.0, 20.0, 1500.0]]))
    assert inside.tolist() == [True, False]


def test_paper_architecture_trains_with_grouped_validation() -> None:
    torch.set_num_threads(1)
    frame = synthetic(rows_per_point=6)
    calls: list[tuple[int, int]] = []
    result = train(frame, TrainingConfig(epochs=20, model=PaperConfig(8, 1, 8), folds=3, calibrate=False),
                   progress=lambda step, total, _loss: calls.append((step, total)))
    assert result.model.arch == "paper" and result.grouped is not None and len(result.grouped.per_fold()) == 3
    assert calls[-1] == (4 * 20, 4 * 20)  # three folds and the final model
    assert result.model.support == ModelSupport.of(frame)


def test_warm_start_keeps_the_normalization() -> None:
    torch.set_num_threads(1)
    first = train(synthetic(seed=1), TINY).model
    second = train(synthetic(seed=2), TrainingConfig(epochs=20), warm_start=first).model
    assert second.scale == first.scale
    with pytest.raises(InputError, match="cannot warm-start"):
        train(synthetic(seed=2), TrainingConfig(epochs=1, model=PaperConfig(), folds=0, calibrate=False),
              warm_start=first)


def test_model_train_and_eval_report_calibration(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "grid.csv"
    write_qos_csv(synthetic(), csv)
    code, out, err = run_cli(["model", "train", "--data", str(csv), "--out", str(tmp_path / "m"), "--epochs", "100",
                              "--settle-s", "0", "--json"], capfd)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["arch"] == "ensemble" and summary["grouped"]["groups"] == 16
    assert Path(summary["pit_plot"]).stat().st_size > 1000
    code, out, err = run_cli(["model", "eval", "--model", str(tmp_path / "m"), "--data", str(csv), "--json",
                              "--settle-s", "0"], capfd)
    assert code == 0, err
    evaluation = json.loads(out)
    assert evaluation["n"] == len(load_qos_csv(csv))
    assert 0.0 <= evaluation["coverage_50"] <= evaluation["coverage_80"] <= evaluation["coverage_90"] \
        <= evaluation["coverage_95"] <= 1.0
    assert Path(evaluation["pit_plot"]) == tmp_path / "m" / "pit-grid.png" and Path(evaluation["pit_plot"]).is_file()


def test_too_few_groups_to_calibrate_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "small.csv"
    lines = [QOS_CSV_HEADER] + [f"2024-05-18 11:{minute:02d}:{second:02d}.5,9.0,{cpu},{bw},3.0,3.0"
                                 for minute, (cpu, bw) in enumerate([(500, 5), (1000, 5), (1000, 10), (2000, 10),
                                                                     (2000, 20), (4000, 20)])
                                 for second in range(20)]
    csv.write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(["model", "train", "--data", str(csv), "--out", str(tmp_path / "m")], capfd)
    assert code == 2 and out == ""
    assert_one_error_line(err, f"slicebed: error: {csv}: calibrating sigma needs held-out data from at least "
                          f"{MIN_CALIBRATION_GROUPS} groups", "these data have 6", "--no-calibrate")
    assert not (tmp_path / "m").exists()
