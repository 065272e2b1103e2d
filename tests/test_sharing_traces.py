"""Robust sharing's traces: checks, slots, quantization, the trial/regular split, Madrid files, campaign runs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controller.cli import main
from controller.sharing.campaign_source import campaign_trace
from controller.sharing.evaluation import Case, load_traces, run_regular, run_trial
from controller.sharing.madrid import madrid_trace
from controller.sharing.multiplexer import Scheme
from controller.sharing.spec import CampaignSource, MadridSource, SharingSpec
from controller.sharing.tbs import TbsTable, load_tbs_table
from controller.sharing.traces import Quantization, SecondTrace, split_phases, to_slots
from core.errors import InputError
from core.runstore import RunStore

SHARED = Path(__file__).resolve().parents[2] / "shared"
SMOKE_CAMPAIGN = Path(__file__).resolve().parents[1] / "campaigns" / "replay-smoke.yaml"


@pytest.fixture(scope="module")
def table() -> TbsTable:
    return load_tbs_table(SHARED / "datasets" / "robust_sharing" / "tbs_table_x2_from_pickle.csv")


def trace(users: list[int], mcs: list[float] | None = None, time: list[int] | None = None,
          segment: list[int] | None = None) -> SecondTrace:
    count = len(users)
    segment = segment or [0] * count
    return SecondTrace(source="t.csv", time=np.array(time or range(count)), users=np.array(users),
                       mcs=np.array(mcs or [14.0] * count), segment=np.array(segment),
                       segment_labels=tuple(f"day {d}" for d in sorted(set(segment))))


def test_bad_traces_are_one_line() -> None:
    with pytest.raises(InputError, match=r"t.csv: day 0: the trace has a gap of 2 s after 1970-01-01 00:00:01 UTC"):
        trace([1, 2, 3], time=[0, 1, 4])
    with pytest.raises(InputError, match=r"t.csv: negative users \(-1\) at 1970-01-01 00:00:01 UTC"):
        trace([1, -1, 3])
    with pytest.raises(InputError, match=r"t.csv: MCS 29 outside 0-28"):
        trace([1, 2], mcs=[14.0, 29.0])
    trace([1, 2, 3, 4], time=[0, 1, 100, 101], segment=[0, 0, 1, 1])  # a jump between segments is no gap


def test_slots_sample_the_state_take_the_max_demand_and_quantize(table: TbsTable) -> None:
    # MCS 14 -> I_TBS 13 -> 3 PRBs per user at 1 Mbps
    second = trace([1, 2, 3, 4, 5, 6, 7, 8])
    quantization = Quantization(users=2, mcs=5, demand_prb=10)
    slots = to_slots(second, "a", 1.0, table, 4, quantization, "max")
    assert slots.users.tolist() == [2, 6] and slots.mcs.tolist() == [15, 15]
    assert slots.demand.tolist() == [20, 30]  # max 12 and 24 PRBs, rounded up to tens
    sampled = to_slots(second, "a", 1.0, table, 4, quantization, "sample")
    assert sampled.demand.tolist() == [10, 20]  # 3 and 15 PRBs at each slot's first second
    raised = slots.with_users(np.array([2, 10]))  # the second slot gains 4 users each second
    assert raised.demand.tolist() == [20, 40]  # max (8 + 4) x 3 = 36


def test_a_segment_shorter_than_a_slot_is_refused(table: TbsTable) -> None:
    with pytest.raises(InputError, match="day 1: 2 s of data, shorter than one 4 s slot"):
        to_slots(trace([1] * 6, time=[0, 1, 2, 3, 10, 11], segment=[0, 0, 0, 0, 1, 1]), "a", 1.0, table, 4,
                 Quantization())


def synthetic_spec(**changes: object) -> SharingSpec:
    slices = [{"name": name, "bitrate_mbps": 1, "availability": 0.9, "trial_segments": 3, "regular_segments": 1,
               "quantization": {"users": 5, "mcs": 5, "demand_prb": 10},
               "source": {"kind": "synthetic", "hours": [9, 10], "users_mean": users, "mcs_mean": 10, "mcs_std": 4}}
              for name, users in (("a", 30), ("b", 25))]
    return SharingSpec.model_validate({"name": "unit", "windows": [50], "removed_state_shares": [0.8],
                                       "provisioning": "total", "slices": slices, **changes})


def test_the_phases_come_from_disjoint_days(table: TbsTable) -> None:
    traces = load_traces(synthetic_spec(), table, seed=0)
    for trial, regular in zip(traces.trial, traces.regular, strict=True):
        assert set(trial.segment) == {0, 1, 2} and set(regular.segment) == {3}
        assert trial.span[1] < regular.span[0]
    with pytest.raises(InputError, match="3 trial \\+ 2 regular segments asked, the trace has 4"):
        split_phases(traces.trial[0], 3, 2)


def test_the_regular_phase_cannot_run_on_trial_data(table: TbsTable) -> None:
    traces = load_traces(synthetic_spec(), table, seed=0)
    trial = run_trial(traces, joint=False, rule="total")
    run_regular(traces, trial, Case(name="normal", regular=traces.regular), Scheme("sh"), False, 0.01)
    with pytest.raises(InputError, match="slice a: the regular phase overlaps the trial phase"):
        run_regular(traces, trial, Case(name="pitfall", regular=traces.trial), Scheme("sht", 50), False, 0.01)


def write_madrid(directory: Path, days: int, drop: slice | None = None) -> MadridSource:
    """Madrid-format files for 17:00-18:00 (Madrid time) on ``days`` days from 2020-05-25."""
    rng = np.random.default_rng(5)
    start = int(pd.Timestamp("2020-05-25 17:00", tz="Europe/Madrid").timestamp())
    seconds = np.concatenate([start + day * 86_400 + np.arange(3600) for day in range(days)])
    users = 20 + rng.integers(-5, 6, len(seconds))
    kept = np.ones(len(seconds), dtype=bool)
    if drop is not None:
        kept[drop] = False
    pd.DataFrame({"idx": np.arange(kept.sum()), "users": users[kept], "timestamp": seconds[kept] + 0.3}).to_csv(
        directory / "users_I1815_s.csv", index=False)
    dci = np.repeat(seconds, 2)
    pd.DataFrame({"timestamp": dci * 1000 + 250, "sfn": 0, "subframe": 0, "rnti": 1,
                  "direction": np.tile([1, 0], len(seconds)), "mcs_idx": np.tile([12, 27], len(seconds)),
                  "nof_prb": 5}).to_parquet(directory / "I-1815-raw-df-ms.parquet")
    return MadridSource(kind="madrid", users_csv=directory / "users_I1815_s.csv",
                        raw_parquet=directory / "I-1815-raw-df-ms.parquet", first_day=date(2020, 5, 25),
                        hours=(17, 18))


def test_madrid_files_give_one_trace_per_day(tmp_path: Path) -> None:
    source = write_madrid(tmp_path, days=2)
    second = madrid_trace(source, days=2)
    assert second.segment_labels == ("2020-05-25", "2020-05-26") and len(second.time) == 7200
    assert (second.mcs == 12).all()  # downlink rows only (uplink rows carry 27)
    assert second.time[0] == int(pd.Timestamp("2020-05-25 15:00", tz="UTC").timestamp())


def test_madrid_gaps_are_errors_unless_filled(tmp_path: Path) -> None:
    source = write_madrid(tmp_path, days=1, drop=slice(100, 105))
    with pytest.raises(InputError, match=r"users_I1815_s\.csv: 2020-05-25: the trace has a gap of 5 s"):
        madrid_trace(source, days=1)
    assert len(madrid_trace(source.model_copy(update={"fill_gaps_s": 10}), days=1).time) == 3600
    with pytest.raises(InputError, match="no data on 2020-05-26 between 17:00 and 18:00"):
        madrid_trace(source, days=2)


@pytest.mark.slow
def test_a_campaign_run_is_a_trace_source(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["--quiet", "--runs-dir", str(tmp_path), "campaign", "run", str(SMOKE_CAMPAIGN)]) == 0
    capfd.readouterr()
    run = RunStore(tmp_path).list()[0]
    second = campaign_trace(CampaignSource(kind="campaign", run=run.path, slice="embb", mcs=20))
    assert len(second.segment_labels) == 24 and len(second.time) == 24 * 20
    assert set(second.users.tolist()) == {1, 3} and (second.mcs == 20).all()
    with pytest.raises(InputError, match="no samples of slice 'urllc' \\(the run has embb\\)"):
        campaign_trace(CampaignSource(kind="campaign", run=run.path, slice="urllc", mcs=20))
