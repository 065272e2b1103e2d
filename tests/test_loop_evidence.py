"""The loop's statistics and designs, checked against independent computations: the one-sided degradation test,
the safety guard's error rate, the space-filling and targeted sweeps, and the spec rules that go with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from reference import expected_degradation, unfolded_float64
from scipy import stats

from analysis.slice_model import SliceModel
from controller.campaign.plan import Point
from controller.loop.design import FailedLevel, heaviest_users, numbered_points, space_filling, targeted_targets
from controller.loop.evidence import achieved_degradation, degradation_evidence
from controller.loop.guard import SafetyGuard
from controller.spec import GuardSpec, TargetedSweepSpec, load_spec
from controller.traffic import constant, truncated_normal
from core.errors import InputError


def test_the_test_is_the_binomial_tail_when_users_are_constant_and_seconds_independent() -> None:
    degraded = np.tile([True, False, False, False, False], 8)  # isolated degraded seconds: no positive correlation
    outcome = degradation_evidence(np.full(degraded.size, 3.0), degraded, 0.1)
    assert outcome.degradation == pytest.approx(0.2) and outcome.effective_seconds == pytest.approx(40)
    reference = stats.binomtest(8, 40, 0.1, alternative="greater").pvalue
    assert outcome.p_value == pytest.approx(reference, rel=1e-9)


def test_users_weigh_seconds_as_eq_1_does_and_shrink_the_effective_sample() -> None:
    users = np.array([1, 3, 1, 5])
    outcome = degradation_evidence(users, np.array([True, False, False, True]), 0.5)
    assert outcome.degradation == pytest.approx((1 + 5) / 10)
    assert outcome.effective_seconds == pytest.approx(10**2 / (1 + 9 + 1 + 25))  # Kish: (sum x)^2 / sum x^2
    assert achieved_degradation(pd.DataFrame({"n_users": users, "qos": [2.0, 5, 6, 3]}), 4.0) == pytest.approx(0.6)


def test_correlated_seconds_are_weaker_evidence_than_independent_ones() -> None:
    blocky = np.repeat([True, False, False], 10)  # the same 10 degraded seconds out of 30, in one run
    spread = np.tile([True, False, False], 10)
    users = np.ones(30)
    assert degradation_evidence(users, blocky, 0.2).p_value > degradation_evidence(users, spread, 0.2).p_value


def test_evidence_needs_the_degradation_above_the_bound() -> None:
    users = np.ones(60)
    below = degradation_evidence(users, np.arange(60) % 10 == 0, 0.2)  # 0.1 measured
    assert not below.exceeds(0.5) and below.p_value > 0.5
    clear = degradation_evidence(users, np.arange(60) % 2 == 0, 0.2)  # 0.5 measured
    assert clear.exceeds(0.01)
    starved = degradation_evidence(users[:10], np.ones(10, dtype=bool), 0.4)
    assert starved.p_value == pytest.approx(0.4**10)


@pytest.mark.parametrize("true_beta", [0.2, 0.4])
def test_the_guard_rarely_trips_on_an_allocation_that_holds_its_bound(true_beta: float) -> None:
    """Over 400 windows of i.i.d. seconds at the guard's bound (beta 0.2 + margin 0.2 = 0.4) or below, it falls back
    at most about alpha of the time (Bonferroni over the window's looks is conservative)."""
    settings = GuardSpec(margin=0.2, alpha=0.05, min_seconds=5)
    rng = np.random.default_rng(1)
    trips = 0
    for _ in range(400):
        guard = SafetyGuard(settings, q_thresh=3.0, beta_thresh=0.2, window_s=30)
        qos = np.where(rng.random(30) < true_beta, 1.0, 5.0)
        trips += any(guard.observe(2.0, value) is not None for value in qos)
    assert trips / 400 <= settings.alpha


def test_the_guard_trips_within_seconds_on_a_starved_slice_and_never_before_min_seconds() -> None:
    guard = SafetyGuard(GuardSpec(margin=0.2, alpha=0.01, min_seconds=5), q_thresh=3.0, beta_thresh=0.2, window_s=30)
    fired = [guard.observe(3.0, 0.5) for _ in range(30)]
    first = next(index for index, evidence in enumerate(fired) if evidence is not None)
    # every second degraded: p = 0.4^n must fall below 0.01 / 26 looks, which takes n >= 9
    assert first + 1 == int(np.ceil(np.log(0.01 / 26) / np.log(0.4)))
    assert fired[first] is not None and fired[first].degradation == 1.0
    disabled = SafetyGuard(GuardSpec(enabled=False), q_thresh=3.0, beta_thresh=0.2, window_s=30)
    assert all(disabled.observe(3.0, 0.5) is None for _ in range(30))


@pytest.mark.parametrize("design", ["sobol", "lhs"])
def test_space_filling_designs_cover_each_user_count_within_the_ranges(design: Any) -> None:
    targets = space_filling(design, [1, 3], (500.0, 4000.0), (5.0, 40.0), 8, seed=2)
    assert len(targets) == 16
    for users in (1, 3):
        points = np.array([(cpu, bandwidth) for count, bandwidth, cpu in targets if count == users])
        assert len(points) == 8 and len({tuple(point) for point in points}) == 8
        assert ((points[:, 0] >= 500) & (points[:, 0] <= 4000)).all()
        assert ((points[:, 1] >= 5) & (points[:, 1] <= 40)).all()
        for axis in range(2):  # space-filling: each half of each range holds half the points
            middle = (points[:, axis].min() + points[:, axis].max()) / 2
            assert 2 <= (points[:, axis] < middle).sum() <= 6
    other_users = {(bandwidth, cpu) for count, bandwidth, cpu in targets if count == 3}
    assert not other_users & {(bandwidth, cpu) for count, bandwidth, cpu in targets if count == 1}
    assert space_filling(design, [1, 3], (500.0, 4000.0), (5.0, 40.0), 8, seed=2) == targets  # seeded


def test_numbered_points_drop_duplicates_and_name_their_round() -> None:
    points = numbered_points([(2, 10.0, 1000.0), (2, 10.0, 1000.0), (3, 20.0, 500.0)], 2, round_index=4,
                             shuffle_seed=[1, 4])
    assert len(points) == 4 and len({point.id for point in points}) == 4
    assert all(point.id.startswith("round4-") for point in points)
    assert [point.index for point in points] == [0, 1, 2, 3]
    assert Point(0, 1, 2, 10.0, 1000.0, round=4).id in {point.id for point in points}


def test_heaviest_users_follow_eq_1_weights() -> None:
    assert heaviest_users(constant(3), 2) == [3]
    # N(2, 0.6) on 1..3: p ~ (0.2, 0.6, 0.2); eq. (1) weighs x p(x): 2 (1.2), then 3 (0.6), then 1 (0.2)
    assert heaviest_users(truncated_normal(2, 0.6, 1, 3, whole_users=True), 3) == [2, 3, 1]


def test_a_targeted_sweep_goes_around_the_failed_allocation_and_to_the_uncertain_boundary(
        slice_model: SliceModel) -> None:
    traffic = truncated_normal(3, 0.8, 1, 5, whole_users=True)
    failure = FailedLevel(level=1, slice_name="embb", cpu_millicores=1500.0, bandwidth_mbps=15.0, traffic=traffic,
                          q_thresh=4.0, beta=0.2, lower=(500.0, 5.0), upper=(4000.0, 40.0))
    settings = TargetedSweepSpec(around=3, frontier=4, users=2, radius=0.1, candidates=512)
    measured = np.array([[3.0, 15.0, 1500.0], [4.0, 15.0, 1500.0]])
    targets = targeted_targets(failure, slice_model, measured, settings, seed=[0, 2, 1])
    assert len(targets) == 7
    assert {users for users, _, _ in targets} == {3, 4}  # the level's heaviest user counts, in turn
    around = targets[:3]
    assert (around[0][1], around[0][2]) == (18.5, 1850)  # more of both first: one radius up each
    assert all(abs(cpu - 1500) <= 350 + 1e-6 and abs(bandwidth - 15) <= 3.5 + 1e-6 for _, bandwidth, cpu in around)
    model = unfolded_float64(slice_model)
    frontier = np.array([(cpu, bandwidth) for _, bandwidth, cpu in targets[3:]])
    near = np.abs(expected_degradation(model, traffic, 4.0, frontier[:, 0], frontier[:, 1]) - 0.2)
    rng = np.random.default_rng(5)
    random = np.column_stack([rng.uniform(500, 4000, 400), rng.uniform(5, 40, 400)])
    typical = np.abs(expected_degradation(model, traffic, 4.0, random[:, 0], random[:, 1]) - 0.2)
    assert np.median(near) < np.quantile(typical, 0.25)  # the frontier points sit near the predicted boundary


# --- spec rules of the loop --------------------------------------------------------------------------------

def spec_document(dataset: Path, **sweep: Any) -> dict[str, Any]:
    return {
        "name": "loop-spec",
        "testbed": {"backend": "replay", "replay": {"source": "dataset", "dataset": str(dataset)}},
        "slices": [{"name": "embb", "q_thresh": 4.0, "beta_thresh": 0.2,
                    "traffic": [{"kind": "constant", "users": 2},
                                {"kind": "truncated_normal", "mean": 3, "std": 1, "low": 1, "high": 4}]}],
        "sweep": {"cpu_millicores": [1000, 2000], "bandwidth_mbps": [10, 25], "dwell_s": 20, **sweep},
    }


def write_spec(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_sweep_users_default_to_the_levels_and_must_cover_them(tmp_path: Path, microopt_csv: Path) -> None:
    assert load_spec(write_spec(tmp_path, spec_document(microopt_csv))).sweep_users() == [1, 2, 3, 4]
    with pytest.raises(InputError, match=r"sweep.users \[1, 3\] misses 2, 4 user\(s\), which the traffic levels "
                                         r"validate"):
        load_spec(write_spec(tmp_path, spec_document(microopt_csv, users=[1, 3])))


@pytest.mark.parametrize(("sweep", "fragment"), [
    ({"design": "sobol", "points": 6, "cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40]},
     "points (6): a Sobol design keeps its balance only with a power of 2"),
    ({"design": "lhs", "cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40]}, "design lhs needs 'points'"),
    ({"design": "lhs", "points": 6, "cpu_millicores": [500, 1000, 4000], "bandwidth_mbps": [5, 40]},
     "cpu_millicores: design lhs takes a range [min, max]"),
    ({"points": 6}, "points: only for the space-filling designs"),
    ({"cpu_millicores": [1000, 5000]}, "sweep.cpu_millicores value 5000 is outside slice embb's bounds"),
])
def test_bad_sweep_designs_are_one_clear_error(tmp_path: Path, microopt_csv: Path, sweep: dict[str, Any],
                                               fragment: str) -> None:
    path = write_spec(tmp_path, spec_document(microopt_csv, **sweep))
    with pytest.raises(InputError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: ") and fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_margin_must_leave_a_target(tmp_path: Path, microopt_csv: Path) -> None:
    document = {**spec_document(microopt_csv), "optimizer": {"beta_margin": 0.2}}
    with pytest.raises(InputError, match=r"optimizer.beta_margin \(0.2\) must be below slice embb's beta_thresh"):
        load_spec(write_spec(tmp_path, document))
