"""Robust sharing's algorithms against hand-computed small cases and brute force (issue 13)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.sharing.anomalies import anomalous_users, remove_lowest_states
from controller.sharing.detection import SliceDetector, check_window, chi2_threshold
from controller.sharing.knapsack import WEIGHT_SCALE, MaxWeightKnapsack
from controller.sharing.markov import MarkovChain, fit_chain, stationary_distribution
from controller.sharing.multiplexer import Multiplexer, Scheme, water_fill
from controller.sharing.provisioning import (
    linear_scan_capacity,
    meets_availability,
    percentile_demand,
    provision,
    smallest_capacity,
    total_fits,
)
from controller.sharing.tbs import TbsTable, i_tbs, load_tbs_table
from core.errors import InputError

SHARED_TBS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "robust_sharing" / \
    "tbs_table_x2_from_pickle.csv"
PROVENANCE_1_MBPS = [19, 15, 12, 9, 8, 6, 5, 5, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1]
PROVENANCE_2_MBPS = [36, 28, 23, 18, 14, 12, 10, 9, 8, 7, 6, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2]


@pytest.fixture(scope="module")
def table() -> TbsTable:
    if not SHARED_TBS.is_file():
        pytest.fail(f"the shared TBS table is missing: {SHARED_TBS}")
    return load_tbs_table(SHARED_TBS)


# --- TBS ---------------------------------------------------------------------------------------------------

def test_tbs_rows_match_the_doubled_specification_values(table: TbsTable) -> None:
    assert table.bits.shape == (34, 110)
    assert table.bits[0, 0] == 2 * 16 and table.bits[0, 109] == 2 * 3112  # TS 36.213 I_TBS 0, N_PRB 1 and 110
    assert table.bits[26, 0] == 2 * 712 and table.bits[26, 109] == 2 * 75376
    assert table.bits[6, 0] == 656  # the spec's odd 328 (see PROVENANCE.md), kept


def test_mcs_maps_to_i_tbs_as_the_papers_code() -> None:
    assert [i_tbs(m) for m in (0, 9, 10, 16, 17, 26, 27, 28)] == [0, 9, 9, 15, 15, 24, 25, 26]
    with pytest.raises(InputError, match="MCS 29 is outside 0-28"):
        i_tbs(29)


@pytest.mark.parametrize(("bitrate", "per_i_tbs"), [(1, PROVENANCE_1_MBPS), (2, PROVENANCE_2_MBPS)])
def test_prbs_per_user_match_the_provenance_note(table: TbsTable, bitrate: float, per_i_tbs: list[int]) -> None:
    assert table.prbs_per_user(bitrate).tolist() == [per_i_tbs[i_tbs(mcs)] for mcs in range(29)]


def test_a_bitrate_no_prb_count_reaches_names_the_mcs(table: TbsTable) -> None:
    with pytest.raises(InputError, match=r"bitrate 10 Mbps: no PRB count up to 110 reaches it at MCS 0-\d+ "):
        table.prbs_per_user(10)


def test_a_malformed_tbs_table_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tbs.csv"
    path.write_text("row_index_i_tbs,n_prb_1\n0,16\n", encoding="utf-8")
    with pytest.raises(InputError, match="expected the columns"):
        load_tbs_table(path)
    with pytest.raises(InputError, match="no TBS table there"):
        load_tbs_table(tmp_path / "absent.csv")


# --- Markov chains -----------------------------------------------------------------------------------------

def test_mle_chain_of_a_tiny_sequence() -> None:
    chain = fit_chain(np.array([1, 1, 2, 1, 2, 2, 1]), "tiny")
    # 1->1, 1->2, 2->1, 1->2, 2->2, 2->1: from 1 {1: 1, 2: 2}, from 2 {1: 2, 2: 1}
    assert chain.states.tolist() == [1, 2]
    np.testing.assert_allclose(chain.transition, [[1 / 3, 2 / 3], [2 / 3, 1 / 3]])


def test_a_state_seen_only_at_the_end_is_left_out() -> None:
    chain = fit_chain(np.array([1, 2, 1, 2, 3]), "end")
    assert chain.states.tolist() == [1, 2]
    np.testing.assert_allclose(chain.transition, [[0, 1], [1, 0]])


def test_an_absorbing_state_is_one_line() -> None:
    with pytest.raises(InputError, match="slice a users: the trial chain has an absorbing state 3"):
        fit_chain(np.array([1, 2, 3, 3, 3]), "slice a users")


def test_a_constant_component_is_a_one_state_chain() -> None:
    assert fit_chain(np.array([20, 20, 20]), "mcs").transition.tolist() == [[1.0]]


def test_stationary_distribution_of_a_two_state_chain() -> None:
    # pi = pi P with P = [[0.9, 0.1], [0.5, 0.5]]: 0.1 pi_0 = 0.5 pi_1 -> pi = (5/6, 1/6)
    np.testing.assert_allclose(stationary_distribution(np.array([[0.9, 0.1], [0.5, 0.5]])), [5 / 6, 1 / 6])


def test_stationary_distribution_of_the_mle_is_the_visit_frequency() -> None:
    sequence = np.random.default_rng(1).integers(0, 4, 5000)
    chain = fit_chain(sequence, "random")
    frequency = np.bincount(sequence[:-1], minlength=4) / (len(sequence) - 1)
    np.testing.assert_allclose(chain.stationary(), frequency, atol=1e-3)


# --- tests -------------------------------------------------------------------------------------------------

def test_chi_square_threshold() -> None:
    assert chi2_threshold(1, 0.01) == pytest.approx(6.6349, abs=1e-4)
    assert chi2_threshold(4, 0.05) == pytest.approx(9.4877, abs=1e-4)
    assert chi2_threshold(0, 0.01) == 0.0


def test_likelihood_ratio_statistic_by_hand() -> None:
    fair = MarkovChain(states=np.array([0, 1]), transition=np.full((2, 2), 0.5))
    detector = SliceDetector([fair], [np.array([0, 0, 0, 1])], window=4, alpha=0.01)
    # window transitions 0->0, 0->0, 0->1: alternative 2/3, 1/3 against 1/2, 1/2; one free parameter (row 0)
    expected = 2 * (2 * math.log(2 / 3) + math.log(1 / 3) - 3 * math.log(0.5))
    statistic, dof = detector.statistic(3)
    assert statistic == pytest.approx(expected) and dof == 1
    assert not detector.rejects(3)


def test_a_transition_the_trial_never_made_rejects_at_once() -> None:
    chain = MarkovChain(states=np.array([0, 1]), transition=np.array([[1.0, 0.0], [0.5, 0.5]]))
    detector = SliceDetector([chain], [np.array([1, 0, 0, 1])], window=3, alpha=0.01)
    assert not detector.rejects(2)  # 1->0, 0->0 are allowed
    assert detector.rejects(3)  # 0->1 never happened in the trial
    assert detector.statistic(3)[0] == math.inf


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), slots=st.lists(st.integers(0, 299), min_size=1, max_size=30))
def test_sliding_window_counts_equal_a_fresh_count(seed: int, slots: list[int]) -> None:
    rng = np.random.default_rng(seed)
    chain = fit_chain(rng.integers(0, 4, 2000), "trial")
    regular = [rng.integers(0, 4, 300)]
    sliding = SliceDetector([chain], regular, window=40, alpha=0.01)
    for slot in slots:  # forwards, backwards and jumps
        fresh = SliceDetector([chain], regular, window=40, alpha=0.01).statistic(slot)
        assert sliding.statistic(slot) == (pytest.approx(fresh[0], abs=1e-9), fresh[1])


def test_a_window_under_two_samples_or_longer_than_the_regular_phase_is_refused() -> None:
    with pytest.raises(InputError, match="window n=1: the test needs at least 2 samples"):
        check_window(1, 100)
    with pytest.raises(InputError, match=r"window n=250 is longer than the regular phase \(180 slots\)"):
        check_window(250, 180)


def test_a_skewed_window_is_detected_and_a_normal_one_is_not() -> None:
    rng = np.random.default_rng(3)
    normal = MarkovChain(states=np.array([0, 1, 2]), transition=np.full((3, 3), 1 / 3))
    fair_sequence = rng.integers(0, 3, 400)
    skewed_sequence = np.where(rng.random(400) < 0.8, 2, rng.integers(0, 3, 400))
    fair = SliceDetector([normal], [fair_sequence], window=200, alpha=0.01)
    skewed = SliceDetector([normal], [skewed_sequence], window=200, alpha=0.01)
    assert np.mean([fair.rejects(slot) for slot in range(200, 400, 20)]) < 0.2
    assert all(skewed.rejects(slot) for slot in range(200, 400, 20))


# --- knapsack and multiplexer ------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.tuples(st.floats(0, 5), st.integers(0, 40)), min_size=1, max_size=8),
       capacity=st.integers(1, 100))
def test_knapsack_optimum_equals_brute_force(items: list[tuple[float, int]], capacity: int) -> None:
    weights, demands = [w for w, _ in items], [d for _, d in items]
    chosen = MaxWeightKnapsack().solve(weights, demands, capacity)
    value = [round(w * WEIGHT_SCALE) + 1 for w in weights]
    assert sum(d for d, take in zip(demands, chosen, strict=True) if take) <= capacity
    assert all(take for d, take in zip(demands, chosen, strict=True) if d == 0)
    best = max(sum(value[i] for i in subset) for size in range(len(items) + 1)
               for subset in itertools.combinations(range(len(items)), size)
               if sum(demands[i] for i in subset) <= capacity)
    assert sum(value[i] for i, take in enumerate(chosen) if take) == best


def test_a_knapsack_with_zero_capacity_is_one_line() -> None:
    with pytest.raises(InputError, match="knapsack capacity 0 PRBs"):
        MaxWeightKnapsack().solve([1.0], [5], 0)
    with pytest.raises(InputError, match="zero capacity"):
        Multiplexer(["a"], 0, [0.9], Scheme("sh"))


class Recorder:
    def __init__(self) -> None:
        self.applied: list[dict[str, int]] = []

    def apply(self, prbs: Mapping[str, int]) -> None:
        self.applied.append(dict(prbs))


def test_sh_alternates_by_deficit_and_applies_each_slot() -> None:
    multiplexer = Multiplexer(["a", "b"], 10, [0.9, 0.9], Scheme("sh"))
    recorder = Recorder()
    first = multiplexer.run_slot([6, 6], recorder)
    second = multiplexer.run_slot([6, 6], recorder)
    assert sorted(first.accepted) == [False, True] and second.accepted == [not a for a in first.accepted]
    assert recorder.applied[0] == {"a": 6 if first.accepted[0] else 4, "b": 6 if first.accepted[1] else 4}
    assert multiplexer.run_slot([3, 4], recorder).accepted == [True, True]  # fits: everyone in


def test_sht_serves_the_slice_that_passes_first() -> None:
    multiplexer = Multiplexer(["a", "b"], 10, [0.9, 0.9], Scheme("sht", 50))
    multiplexer.deficits = [5.0, 0.0]  # a is far behind, but fails its test
    decision = multiplexer.decide([6, 6], lambda: [True, False])
    assert decision.accepted == [False, True] and decision.failed_test == [True, False]
    assert decision.allocated == [4, 6]  # what is left goes to a, not counted as accepted


def test_nosh_guarantees_demands_within_the_reservation() -> None:
    multiplexer = Multiplexer(["a", "b"], 12, [0.9, 0.9], Scheme("nosh"), reserved=[4, 8])
    decision = multiplexer.decide([5, 8])
    assert decision.accepted == [False, True] and decision.allocated == [4, 8]


def test_water_fill_is_max_min_fair() -> None:
    assert water_fill([0, 1, 2], [2, 10, 10], 12) == {0: 2, 1: 5, 2: 5}
    assert water_fill([0, 1], [10, 10], 3) == {0: 2, 1: 1}


# --- provisioning ------------------------------------------------------------------------------------------

def test_percentile_demand() -> None:
    demand = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    assert percentile_demand(demand, 0.9) == 90
    assert percentile_demand(demand, 0.95) == 100
    assert percentile_demand(demand, 0.05) == 10


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), availability=st.sampled_from([0.6, 0.8, 0.9]))
def test_binary_search_is_within_one_prb_of_a_linear_scan(seed: int, availability: float) -> None:
    demands = np.random.default_rng(seed).integers(0, 6, size=(2, 40)) * 5
    high = int(demands.max(axis=1).sum()) or 1
    for predicate in (meets_availability(demands, [availability] * 2), total_fits(demands, [availability] * 2)):
        assert abs(smallest_capacity(predicate, high) - linear_scan_capacity(predicate, high)) <= 1


def test_provisioning_by_hand() -> None:
    a = np.array([10, 10, 10, 10, 10, 10, 10, 10, 10, 50])
    b = np.array([50, 10, 10, 10, 10, 10, 10, 10, 10, 10])
    result = provision([a, b], [0.9, 0.9], rule="total")
    assert result.reserved == [10, 10] and result.nosh == 20
    assert result.shared == 60  # the total is 60 in two slots of ten: 90 % of slots needs 60
    with pytest.raises(InputError, match="nothing to provision"):
        provision([np.zeros(5, dtype=int)], [0.9])


# --- anomalies ---------------------------------------------------------------------------------------------

def test_removing_the_lowest_state_moves_its_mass_to_the_largest_remaining_transition() -> None:
    chain = MarkovChain(states=np.array([10, 20, 30]),
                        transition=np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.6, 0.4]]))
    modified = remove_lowest_states(chain, 1 / 3)
    assert modified.removed == 1 and modified.chain.states.tolist() == [20, 30]
    np.testing.assert_allclose(modified.chain.transition, [[0.3, 0.7], [0.6, 0.4]])
    new_entries = (modified.chain.transition > 0) & (chain.transition[1:, 1:] == 0)
    assert not new_entries.any()


def test_a_state_left_without_transitions_is_removed_too() -> None:
    chain = MarkovChain(states=np.array([1, 2, 3]),
                        transition=np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]))
    modified = remove_lowest_states(chain, 0.34)
    assert modified.removed == 2 and modified.chain.states.tolist() == [3]
    assert modified.chain.transition.tolist() == [[1.0]]


def test_the_anomaly_starts_smoothly_after_the_window() -> None:
    chain = MarkovChain(states=np.array([20, 30]), transition=np.array([[0.5, 0.5], [0.5, 0.5]]))
    users = np.array([10, 20, 10, 10, 20, 10, 10, 10])
    anomalous, start = anomalous_users(users, chain, 2, np.random.default_rng(0))
    assert start == 4  # first slot >= 2 in a kept state
    assert anomalous[:5].tolist() == users[:5].tolist() and set(anomalous[4:]) <= {20, 30}
    unchanged, never = anomalous_users(np.array([10, 10, 10]), chain, 1, np.random.default_rng(0))
    assert never is None and unchanged.tolist() == [10, 10, 10]
