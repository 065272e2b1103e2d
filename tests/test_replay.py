"""The replay testbed: QoS from the measured grid points or from a slice model, on a virtual clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.slice_model import load_model
from collectors.dataset import GRID_KEY, load_qos_csv
from controller.testbeds.base import SAMPLE_COLUMNS, Allocation
from controller.testbeds.model_source import ModelQosSource
from controller.testbeds.replay import EPOCH, DatasetQosSource, ReplayTestbed
from core.errors import InputError

SECONDS = 4000
"""Samples per measurement: the standard error of a mean is then about 1.5% of the QoS spread."""


@pytest.fixture(scope="module")
def frame(microopt_csv: Path) -> pd.DataFrame:
    return load_qos_csv(microopt_csv, settle_s=10)


@pytest.fixture(scope="module")
def point_qos(frame: pd.DataFrame) -> pd.Series:
    """Measured QoS values of each (n_users, bw, cpu) grid point."""
    return frame.groupby(GRID_KEY)["qos"].apply(np.asarray)


@pytest.fixture
def testbed(frame: pd.DataFrame) -> ReplayTestbed:
    return ReplayTestbed(DatasetQosSource(frame), ["embb", "urllc"], seed=1)


def measure(testbed: ReplayTestbed, users: int, cpu: float, bw: float, seconds: int = SECONDS) -> np.ndarray:
    """QoS samples of slice embb at one allocation and user count."""
    testbed.apply("embb", Allocation(cpu, bw))
    testbed.set_traffic("embb", users)
    samples = testbed.collect(seconds)
    assert len(samples) == seconds and set(samples["slice"]) == {"embb"}
    return samples["qos"].to_numpy()


def tolerance(samples: np.ndarray) -> float:
    """Five standard errors of the sample mean."""
    return 5 * samples.std() / np.sqrt(samples.size)


@pytest.mark.parametrize(("users", "bw", "cpu"), [(1, 10, 1000), (3, 25, 2000), (5, 40, 4000)])
def test_on_grid_qos_is_the_grid_points_measurements(testbed: ReplayTestbed, point_qos: pd.Series,
                                                     users: int, bw: float, cpu: float) -> None:
    """At a measured allocation QoS is resampled from that point only; its mean matches the point's mean."""
    measured = point_qos.loc[(users, bw, cpu)]
    samples = measure(testbed, users, cpu, bw)
    assert set(samples) <= set(measured)
    assert abs(samples.mean() - measured.mean()) < tolerance(samples)


@pytest.mark.parametrize(("users", "bw", "cpu", "bw_lines", "cpu_lines"), [
    (3, 20, 2000, (15, 25), (2000, 2000)),  # between bandwidth lines
    (3, 40, 3250, (40, 40), (3000, 3500)),  # between CPU lines
    (3, 12.5, 1500, (10, 15), (1000, 2000)),  # between both
    (1, 27.5, 750, (25, 30), (500, 1000)),
])
def test_between_grid_lines_qos_mixes_the_neighbours(testbed: ReplayTestbed, point_qos: pd.Series, users: int,
                                                     bw: float, cpu: float, bw_lines: tuple[float, float],
                                                     cpu_lines: tuple[float, float]) -> None:
    """Off the grid the mean lies between the neighbouring points' means, at their bilinearly weighted mean."""
    neighbours = {(b, c): point_qos.loc[(users, b, c)].mean() for b in bw_lines for c in cpu_lines}
    samples = measure(testbed, users, cpu, bw)
    slack = tolerance(samples)
    assert min(neighbours.values()) - slack < samples.mean() < max(neighbours.values()) + slack

    def weight(value: float, lines: tuple[float, float], line: float) -> float:
        if lines[0] == lines[1]:
            return 1.0
        upper = (value - lines[0]) / (lines[1] - lines[0])
        return upper if line == lines[1] else 1 - upper

    expected = sum(weight(bw, bw_lines, b) * weight(cpu, cpu_lines, c) * mean for (b, c), mean in neighbours.items())
    assert abs(samples.mean() - expected) < slack
    assert max(neighbours.values()) - min(neighbours.values()) > 4 * slack  # the check can tell them apart


def test_between_grid_lines_the_distribution_shifts_instead_of_mixing(testbed: ReplayTestbed,
                                                                     point_qos: pd.Series) -> None:
    """Half-way between CPU 1000 and 2000 the spread stays that of a grid point, not of a two-mode mixture."""
    low, high = point_qos.loc[(3, 25, 1000)], point_qos.loc[(3, 25, 2000)]
    mixture_std = np.sqrt((low.var() + high.var()) / 2 + ((high.mean() - low.mean()) / 2) ** 2)
    samples = measure(testbed, 3, cpu=1500, bw=25)
    assert samples.std() <= max(low.std(), high.std()) * 1.1
    assert samples.std() < 0.8 * mixture_std  # the check can tell the two apart


def test_beyond_the_grid_the_edge_point_answers(testbed: ReplayTestbed, point_qos: pd.Series) -> None:
    """An allocation above the largest grid lines draws from the corner point."""
    samples = measure(testbed, 3, cpu=9000, bw=80, seconds=500)
    assert set(samples) <= set(point_qos.loc[(3, 40, 4000)])


def test_collect_without_an_applied_allocation_is_an_error(testbed: ReplayTestbed) -> None:
    """Traffic without resources cannot be measured."""
    testbed.set_traffic("embb", 2)
    with pytest.raises(InputError, match="no allocation was applied"):
        testbed.collect(10)


@pytest.mark.parametrize("call", [
    lambda bed: bed.apply("mmtc", Allocation(1000, 10)),
    lambda bed: bed.set_traffic("mmtc", 1),
])
def test_unknown_slices_are_rejected(testbed: ReplayTestbed, call: Callable[[ReplayTestbed], object]) -> None:
    """Only the slices the testbed was opened with exist."""
    with pytest.raises(InputError, match="unknown slice 'mmtc'; known: embb, urllc"):
        call(testbed)


def test_virtual_clock_advances_by_the_collected_seconds(testbed: ReplayTestbed) -> None:
    """Samples are one second apart and each collect continues where the last one stopped."""
    first = testbed.collect(30)  # no traffic yet: no samples, but time passes
    assert first.empty and list(first.columns) == list(SAMPLE_COLUMNS)
    assert testbed.clock == EPOCH + timedelta(seconds=30)

    testbed.apply("embb", Allocation(2000, 25))
    testbed.set_traffic("embb", 3)
    second = testbed.collect(45)
    times = pd.to_datetime(second["time"])
    assert times.iloc[0] == EPOCH + timedelta(seconds=30)
    assert (times.diff().dropna() == timedelta(seconds=1)).all()
    assert testbed.clock == EPOCH + timedelta(seconds=75)


def test_every_active_slice_gets_a_sample_per_second(testbed: ReplayTestbed) -> None:
    """Two active slices give two rows per second, with their own allocation and users."""
    for name, users, allocation in (("embb", 3, Allocation(2000, 25)), ("urllc", 1, Allocation(1000, 10))):
        testbed.apply(name, allocation)
        testbed.set_traffic(name, users)
    samples = testbed.collect(20)
    assert samples.groupby("slice").size().to_dict() == {"embb": 20, "urllc": 20}
    urllc = samples[samples["slice"] == "urllc"]
    assert (urllc[["cpu", "bw", "n_users"]].to_numpy() == (1000, 10, 1)).all()
    assert np.allclose(samples["total_bandwidth_usage"], samples["qos"] * samples["n_users"])


def test_same_seed_same_samples(frame: pd.DataFrame) -> None:
    """The replay is reproducible from its seed."""
    runs = []
    for seed in (5, 5, 6):
        bed = ReplayTestbed(DatasetQosSource(frame), ["embb"], seed=seed)
        runs.append(measure(bed, 3, 1500, 12.5, seconds=200))
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


def test_a_resumed_session_goes_on_after_the_last_sample_with_draws_of_its_own(frame: pd.DataFrame) -> None:
    """Session 2 starts one second after the last recorded sample and does not repeat session 1's draws;
    the same session of the same seed draws the same samples again."""
    def session(number: int, last_sample: datetime | None) -> pd.DataFrame:
        bed = ReplayTestbed(DatasetQosSource(frame), ["embb"], seed=5)
        bed.start_session(number, last_sample)
        bed.apply("embb", Allocation(1500, 12.5))
        bed.set_traffic("embb", 3)
        return bed.collect(100)

    first = session(1, None)
    assert first["time"].iloc[0] == EPOCH
    last = first["time"].max()
    second = session(2, last)
    assert second["time"].iloc[0] == last + timedelta(seconds=1)
    assert not np.array_equal(first["qos"], second["qos"])
    assert np.array_equal(session(2, last)["qos"], second["qos"])


def test_model_source_draws_around_the_model_mean(trained_model_dir: Path) -> None:
    """With a slice model as the source, sampled QoS has the model's mean and spread."""
    model = load_model(trained_model_dir)
    bed = ReplayTestbed(ModelQosSource(model), ["embb"], seed=2)
    with torch.no_grad():
        mean, std = (value.item() for value in model(torch.tensor([[3.0, 25.0, 2000.0]])))
    assert mean > 5 * std  # far from zero, so clipping at zero does not bias the mean
    samples = measure(bed, 3, cpu=2000, bw=25)
    assert (samples >= 0).all()
    assert abs(samples.mean() - mean) < tolerance(samples)
    assert samples.std() == pytest.approx(std, rel=0.1)


def test_user_counts_outside_the_dataset_are_refused(testbed: ReplayTestbed) -> None:
    """The twin does not invent QoS for 8 users from a dataset of 1-5 users."""
    testbed.apply("embb", Allocation(2000, 20))
    testbed.set_traffic("embb", 8)
    with pytest.raises(InputError, match="no samples with 8 users"):
        testbed.collect(5)
