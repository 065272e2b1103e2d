"""``slicebed reproduce microopt --quick`` end to end on a model trained on the shared MicroOpt dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_one_error_line
from scipy import stats

from controller.cli import main

PAPER_METHODS = {  # MicroOpt Sec. VI: the SLA-threshold cases (Fig. 6, Table I, the Fig. 9 ablations) and the
    # dynamic-traffic cases (Fig. 7, 8), each with the methods the paper runs on them, MicroOpt twice (Algorithm 1
    # as published, and with refinement) and the exact solver (each case's best known cost)
    "threshold": {"exact", "microopt", "microopt-alg1", "atlas", "cadrl", "peak", "microopt-0sigma",
                  "microopt-2sigma"},
    "dynamic": {"exact", "microopt", "microopt-alg1", "atlas", "atlas+", "cadrl", "cadrl+", "peak"},
}
START_MS = 1383260400000
TEN_MINUTES_MS = 600_000


def milan_file(path: Path) -> Path:
    """A one-cell CDR file of 4 hours whose Internet activity swings within each hour."""
    values = [20.0, 60.0, 40.0, 80.0, 30.0, 50.0] * 4
    lines = [f"42\t{START_MS + step * TEN_MINUTES_MS}\t39\t\t\t\t\t{value}" for step, value in enumerate(values)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_quick_reproduction_writes_tables_plots_and_json(trained_model_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    milan = milan_file(tmp_path / "sms-call-internet-mi-2013-11-01.txt")
    status = main(["--quiet", "--runs-dir", str(tmp_path / "runs"), "reproduce", "microopt", "--model",
                   str(trained_model_dir), "--quick", "--json", "--milan", str(milan), "--device", "cpu"])
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    run = Path(summary["run"])
    assert run.parent == tmp_path / "runs"
    assert json.loads((run / "metadata.json").read_text())["status"] == "completed"

    methods = summary["methods"]
    assert set(methods) == PAPER_METHODS["threshold"] | PAPER_METHODS["dynamic"]
    results = pd.read_csv(run / "results.csv")
    for method, rows in results.groupby("method"):  # the summary is the per-case table's arithmetic
        meets = (rows["expected_degradation"] <= rows["beta_thresh"]).mean()
        assert methods[method]["share_meeting_beta"] == pytest.approx(meets), method
        assert methods[method]["mean_normalized"] == pytest.approx(rows["normalized"].mean()), method
        assert methods[method]["mean_seconds"] == pytest.approx(rows["seconds"].mean()), method
    assert methods["microopt"]["share_meeting_beta"] == 1.0  # MicroOpt never returns an infeasible answer here
    fig6 = summary["fig6"]
    assert fig6["microopt"]["mean_normalized"] < fig6["peak"]["mean_normalized"]
    assert methods["microopt-0sigma"]["mean_degradation"] > 0.3  # ignoring the spread misses the SLA
    assert methods["microopt-2sigma"]["mean_normalized"] > fig6["microopt"]["mean_normalized"]

    assert {experiment: set(rows["method"]) for experiment, rows in results.groupby("experiment")} == PAPER_METHODS
    cases = {method: set(rows["case"]) for method, rows in results.groupby("method")}
    assert cases["atlas"] == cases["peak"] == cases["microopt"]  # same evaluation cases for every method
    assert cases["atlas+"] == cases["cadrl+"] == set(results.loc[results["experiment"] == "dynamic", "case"])
    policies = pd.read_csv(run / "cadrl-policies.csv")
    slas = set(zip(results["q_thresh"], results["beta_thresh"], strict=True))  # 2 q x 2 beta; the dynamic one of them
    assert len(slas) == 4 and len(policies) == 4 * 2  # CaDRL trains one policy per SLA and seed
    assert set(zip(policies["q_thresh"], policies["beta_thresh"], strict=True)) == slas

    seeds = results.groupby("method")["seed"].nunique()
    assert seeds["exact"] == seeds["peak"] == 1 and (seeds.drop(["exact", "peak"]) == 2).all()  # --quick: 2 seeds
    threshold = results[results["experiment"] == "threshold"]
    for method, interval in summary["fig6_seeds"].items():  # mean over seeds of each seed's mean, t interval
        per_seed = threshold[threshold["method"] == method].groupby("seed")["normalized"].mean()
        assert interval["mean_normalized"] == pytest.approx(per_seed.mean()), method
        if method in ("exact", "peak"):
            assert interval["ci95_normalized"] == 0.0
        else:
            half = stats.t.ppf(0.975, 1) * per_seed.std(ddof=1) / np.sqrt(2)
            assert interval["ci95_normalized"] == pytest.approx(half), method
    atlas = results[results["method"] == "atlas"].set_index(["case", "seed"])["queries"]
    microopt = results[results["method"] == "microopt"].set_index(["case", "seed"])["queries"]
    assert (atlas == microopt.reindex(atlas.index)).all()  # Atlas gets MicroOpt's exact-query budget
    times = pd.read_csv(run / "tables" / "time-to-1pct.csv")
    assert times.loc[times["method"] == "exact", "seconds"].notna().all()  # the exact answer is the best known

    for name in ("fig6a-allocation-vs-q-thresh", "fig6b-allocation-vs-beta-thresh", "fig6c-degradation-vs-beta-thresh",
                 "fig7-allocation-vs-std", "fig8-degradation-vs-std", "fig9-ablation", "fig10-convergence"):
        assert (run / "plots" / f"{name}.png").stat().st_size > 1000, name
    for name in ("table1", "fig6-by-q-thresh", "improvement-threshold", "speed", "targets"):
        assert (run / "tables" / f"{name}.csv").is_file(), name
    assert (run / "tables" / "table1.md").read_text().startswith("| method |")
    report = (run / "report.md").read_text()
    assert "Milan CDR square 42" in report and "Fig. 10" in report
    curve = pd.read_csv(run / "tables" / "fig10-convergence.csv")
    assert curve["optimality_ratio"].between(0, 1 + 1e-9).all()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--model", "{missing}"], "missing"),
    (["--model", "{model}", "--sigma-mean", "2", "--sigma-max", "1"], "--sigma-mean/--sigma-max"),
    (["--model", "{model}", "--milan", "{bad}"], "line 1: internet is 'lots'"),
    (["--model", "{model}", "--threads", "0"], "--threads"),
])
def test_bad_input_is_one_line_and_creates_no_run(trained_model_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str], arguments: list[str],
                                                   message: str) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text(f"1\t{START_MS}\t39\t\t\t\t\tlots\n", encoding="utf-8")
    filled = [part.format(missing=tmp_path / "missing", model=trained_model_dir, bad=bad) for part in arguments]
    status = main(["--runs-dir", str(tmp_path / "runs"), "reproduce", "microopt", *filled])
    error = capsys.readouterr().err
    assert status == 2
    assert_one_error_line(error, message)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_improvement_and_convergence_arithmetic() -> None:
    from controller.reproduce.summaries import convergence_curve, improvements, time_to_within

    results = pd.DataFrame({"experiment": ["threshold"] * 4, "method": ["microopt", "microopt", "peak", "peak"],
                            "normalized": [0.5, 0.7, 1.5, 1.5]})
    table = improvements(results, "threshold", {"peak": 53.14, "atlas": 7.65})
    assert list(table["baseline"]) == ["peak"]  # baselines that did not run are left out
    assert table.loc[0, "improvement_pct"] == pytest.approx(100 * (1.5 - 0.6) / 1.5)
    solved = pd.DataFrame({"case": [0, 0, 0], "seed": [0, 0, 0], "experiment": ["dynamic"] * 3,
                           "method": ["exact", "microopt", "atlas+"], "normalized": [1.0, 1.0, 1.25],
                           "feasible": [True, True, True]})
    convergence = pd.DataFrame({"case": [0, 0, 0, 0], "seed": [0, 0, 0, 0],
                                "method": ["exact", "microopt", "microopt", "atlas+"],
                                "seconds": [0.2, 0.01, 0.1, 0.05], "normalized": [1.0, 2.0, 1.005, 1.25]})
    curve = convergence_curve(convergence, solved, ("microopt", "atlas+"), points=50)
    final = curve.groupby("method")["optimality_ratio"].last()
    assert final["microopt"] == pytest.approx(1 / 1.005) and final["atlas+"] == pytest.approx(0.8)
    first = curve.groupby("method")["optimality_ratio"].first()
    assert first["atlas+"] == 0.0  # nothing feasible yet at the first time point
    times = time_to_within(solved, convergence).set_index("method")["seconds"]
    assert times["exact"] == 0.2 and times["microopt"] == 0.1  # 1.005 is within 1 % of the best known 1.0
    assert np.isnan(times["atlas+"])  # 1.25 never is
