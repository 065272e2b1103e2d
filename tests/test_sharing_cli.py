"""``slicebed sharing`` and ``slicebed reproduce sharing``: outputs, and bad input as one line with exit 2."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import REPO, assert_one_error_line, run_cli

EXAMPLE = REPO / "experiments" / "sharing-synthetic.yaml"


def one_line_error(argv: list[str], capfd: pytest.CaptureFixture[str], expected: str) -> None:
    code, out, err = run_cli(argv, capfd)
    assert code == 2 and out == ""
    assert_one_error_line(err, expected)


def small_spec(tmp_path: Path, **changes: Any) -> Path:
    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for entry in document["slices"]:
        entry["source"]["hours"] = [17, 18]
        entry["source"].pop("day_profile", None)
    document.update({"seeds": [0], "windows": [50], "removed_state_shares": [0.8], **changes})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_the_example_spec_trial_phase_as_json(capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["sharing", "trial", str(EXAMPLE), "--json"], capfd)
    assert code == 0, err
    trial = json.loads(out)
    assert 0 < trial["Sh_prbs"] <= trial["NoSh_prbs"] == sum(trial["NoSh_reserved"].values())
    assert trial["Sh_trial_acceptance"] >= 0.9 and trial["regular_slots"] == 1080


def test_evaluate_writes_tables_figures_and_a_report(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["sharing", "evaluate", str(small_spec(tmp_path)), "--out", str(tmp_path / "runs"),
                          "--json"], capfd)
    assert code == 0, err
    summary = json.loads(out)
    run = Path(summary["run"])
    assert set(summary["table7"]) == {"NoSh", "Sh", "ShT50"} and summary["seeds"] == [0]
    assert summary["table7"]["NoSh"] == {"prb_saving_pct": 0.0, "isolation_pct": 100.0}
    results = pd.read_csv(run / "results.csv")
    assert set(results["case"]) == {"all slices normal", "ns1 anomalous, 80% of user states removed",
                                    "ns2 anomalous, 80% of user states removed"}
    assert {path.name for path in (run / "plots").iterdir()} == {
        "sharing-synthetic-acceptance-vs-removed.png", "sharing-synthetic-users-ecdf.png", "test-time.png"}
    report = (run / "report.md").read_text(encoding="utf-8")
    assert "Table VII" in report and "ns1 anomalous, 80% of its user states removed" in report
    assert json.loads((run / "metadata.json").read_text())["seeds"] == [0]


@pytest.mark.parametrize(("change", "expected"), [
    ({"windows": [5000]}, "window n=5000 is longer than the regular phase (360 slots)"),
    ({"windows": [1]}, "windows[0]: Input should be greater than or equal to 2, got 1"),
    ({"colour": "red"}, "spec.yaml: colour: unknown key"),
    ({"anomalous_slices": ["ns9"]}, "anomalous_slices names unknown slice(s) ns9"),
])
def test_bad_specs_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str], change: dict[str, Any],
                                expected: str) -> None:
    one_line_error(["sharing", "evaluate", str(small_spec(tmp_path, **change)), "--out", str(tmp_path)], capfd,
                   expected)
    assert not list(tmp_path.glob("*-sharing-*"))  # nothing half-created


def test_an_unreachable_bitrate_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = small_spec(tmp_path)
    document = yaml.safe_load(path.read_text())
    document["slices"][1]["bitrate_mbps"] = 20
    path.write_text(yaml.safe_dump(document))
    one_line_error(["sharing", "trial", str(path)], capfd,
                   "bitrate 20 Mbps: no PRB count up to 110 reaches it at MCS 0-")


def madrid_spec(tmp_path: Path, users: np.ndarray, mcs: int = 12) -> Path:
    """A one-slice Madrid spec over files whose users follow ``users`` for 2 hours (17:00-19:00) on 2 days."""
    start = int(pd.Timestamp("2020-05-25 17:00", tz="Europe/Madrid").timestamp())
    seconds = np.concatenate([start + day * 86_400 + np.arange(7200) for day in range(2)])
    pd.DataFrame({"idx": 0, "users": np.tile(users, 2), "timestamp": seconds}).to_csv(tmp_path / "users_I1815_s.csv",
                                                                                      index=False)
    pd.DataFrame({"timestamp": seconds, "direction": 1, "mcs_idx": mcs}).to_parquet(
        tmp_path / "I-1815-raw-df-ms.parquet")
    document = {"name": "madrid", "windows": [50], "slices": [{
        "name": "ns1", "bitrate_mbps": 1, "availability": 0.9, "trial_segments": 1, "regular_segments": 1,
        "source": {"kind": "madrid", "users_csv": "users_I1815_s.csv", "raw_parquet": "I-1815-raw-df-ms.parquet",
                   "first_day": "2020-05-25", "hours": [17, 19]}}]}
    path = tmp_path / "madrid.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(("users", "mcs", "expected"), [
    (np.r_[np.full(100, 5), np.full(7100, 50)], 12, "slice ns1 users: the trial chain has an absorbing state 50"),
    (np.r_[np.full(100, 5), np.full(7100, -1)], 12, "users_I1815_s.csv: negative users (-1) at 2020-05-25 15:01:40"),
    (np.full(7200, 5), 31, "MCS 31 outside 0-28"),
    (np.zeros(7200, dtype=int), 12, "every slice's trial demand is 0 PRBs: nothing to provision (the multiplexer's "
                                    "knapsack would have zero capacity)"),
])
def test_bad_madrid_data_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str], users: np.ndarray, mcs: int,
                                     expected: str) -> None:
    one_line_error(["sharing", "trial", str(madrid_spec(tmp_path, users, mcs))], capfd, expected)


def test_reproduce_with_missing_madrid_files_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    one_line_error(["reproduce", "sharing", "--quick", "--madrid", str(tmp_path), "--out", str(tmp_path)], capfd,
                   f"{tmp_path / 'users_I1815_s.csv'}: no such users file")
    one_line_error(["reproduce", "sharing", "--madrid", str(tmp_path / "absent")], capfd, "no such directory")
    one_line_error(["reproduce", "sharing", "--seeds", "0"], capfd, "--seeds must be >= 1")


@pytest.mark.slow
def test_quick_reproduction(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    code, out, err = run_cli(["reproduce", "sharing", "--quick", "--json", "--out", str(tmp_path)], capfd)
    assert code == 0, err
    assert time.perf_counter() - started < 60
    summary = json.loads(out)
    assert list(summary["table7"]) == ["NoSh", "Sh", "ShT50", "ShT100"] and summary["seeds"] == [0]
    assert summary["table7"]["Sh"]["prb_saving_pct"] > 0
    assert summary["table7"]["Sh"]["prb_saving_pct"] == summary["table7"]["ShT100"]["prb_saving_pct"]
    assert set(summary["targets"]) == {"Sh saves 15-30 % of PRBs vs NoSh",
                                       "Sh's isolation well below 100 % (read: <= 90 %)",
                                       "ShT100 keeps Sh's saving with isolation >= 95 %"}
    assert set(summary["test_ms"]) == {"50", "100"} or set(summary["test_ms"]) == {50, 100}
    tables = Path(summary["run"]) / "tables"
    assert {"table7.md", "scenario-1-normal.md", "scenario-3-normal.md", "targets.md"} <= {
        path.name for path in tables.iterdir()}
