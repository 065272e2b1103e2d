"""The paper's baselines and ablations on a slice model trained on the shared MicroOpt dataset.

Budgets are CI-sized; the assertions are properties that hold whatever the budget: answers are
judged on the actual problem, feasible sets nest, static allocations do not move.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from reference import expected_degradation

from analysis.slice_model import SliceModel
from controller.cli import main
from controller.optimizers import SOLVERS, default_settings, solve
from controller.optimizers.atlas import POLISH_QUERIES, AtlasSettings, solve_atlas
from controller.optimizers.base import finalize
from controller.optimizers.bnn import BayesianMLP
from controller.optimizers.cadrl import CaDRLSettings, solve_cadrl
from controller.optimizers.grid import GridSettings, solve_grid
from controller.optimizers.peak import PeakSettings, peak_problem, solve_peak
from controller.problem import Problem, SliceProblem
from controller.traffic import constant, truncated_normal

SMALL_ATLAS = {"pretrain_samples": 64, "pretrain_epochs": 100, "queries": 64 + POLISH_QUERIES + 64, "batch": 32,
               "finetune_epochs": 10, "candidates": 256}
COARSE_GRID = GridSettings(cpu_step=10.0, bandwidth_step=0.1)


def one_slice(slice_model: SliceModel, traffic: object, q_thresh: float = 4.0, beta: float = 0.2) -> Problem:
    return Problem((SliceProblem("embb", slice_model, traffic, q_thresh, beta),))


def test_every_method_of_the_issue_is_registered() -> None:
    expected = {"exact", "microopt", "microopt-alg1", "grid", "atlas", "atlas+", "cadrl", "cadrl+", "microopt-0sigma",
                "microopt-2sigma", "peak"}
    assert expected <= set(SOLVERS)
    assert default_settings("atlas+").traffic == "distribution"
    assert default_settings("cadrl+").traffic == "predicted"
    assert default_settings("microopt-2sigma").sigma_multiplier == 2.0
    assert default_settings("microopt-alg1").refine_rounds == 0  # Algorithm 1 as published: no refinement


@pytest.mark.slow
def test_ablation_feasible_sets_nest(slice_model: SliceModel) -> None:
    """mu >= q is looser than E[beta] <= beta (< 0.5), which is looser than mu - 2 sigma >= q."""
    for users in (1.0, 4.0):
        problem = one_slice(slice_model, constant(users))
        exact = solve(problem, "microopt")
        mean_only = solve(problem, "microopt-0sigma")
        two_sigma = solve(problem, "microopt-2sigma")
        assert exact.feasible and exact.expected_degradation[0] <= 0.2
        assert mean_only.normalized <= exact.normalized * 1.01
        assert two_sigma.normalized >= exact.normalized * 0.99
        assert mean_only.expected_degradation[0] > 0.35  # about half the QoS lies below its mean
        assert two_sigma.expected_degradation[0] < 0.2  # and about 2.3 % below mu - 2 sigma
        assert (mean_only.method, two_sigma.method) == ("microopt-0sigma", "microopt-2sigma")


@pytest.mark.slow
def test_peak_alloc_is_static_and_judged_on_the_actual_problem(slice_model: SliceModel,
                                                                float64_model: SliceModel) -> None:
    settings = PeakSettings(grid=COARSE_GRID)
    answers = [solve_peak(one_slice(slice_model, traffic, q, beta), settings)
               for traffic, q, beta in ((constant(1), 3.0, 0.3), (truncated_normal(3, 1, 1, 5), 5.0, 0.1))]
    np.testing.assert_allclose(answers[0].allocation, answers[1].allocation)
    strict = solve_grid(peak_problem(one_slice(slice_model, constant(1)), settings), COARSE_GRID)
    np.testing.assert_allclose(answers[0].allocation, strict.allocation)
    (cpu, bandwidth), = answers[0].allocation
    exact = expected_degradation(float64_model, constant(1), 3.0, cpu, bandwidth)  # eq. (1)-(3) in float64
    assert answers[0].expected_degradation[0] == pytest.approx(exact, abs=5e-6)
    assert strict.feasible  # the strict SLA at the peak (5 users/s, 5 Mbps, 0.01) is reachable on this model
    relaxed = one_slice(slice_model, constant(1), 3.0, 0.3)  # and it covers one user at a looser SLA
    assert answers[0].feasible
    assert answers[0].normalized >= solve(relaxed, "microopt").normalized


@pytest.mark.slow
def test_atlas_answers_are_feasible_for_the_traffic_it_assumes(slice_model: SliceModel) -> None:
    steady = one_slice(slice_model, constant(3))
    atlas = solve_atlas(steady, AtlasSettings(**SMALL_ATLAS))
    grid = solve_grid(steady, COARSE_GRID)
    assert atlas.feasible and atlas.expected_degradation[0] <= 0.2
    assert atlas.queries == SMALL_ATLAS["queries"]  # the budget, pre-training, BO and polish together, is spent
    assert atlas.normalized >= grid.normalized - 0.005  # nothing beats the optimum (up to the grid's step)
    assert atlas.history and atlas.history[-1][1] == pytest.approx(atlas.normalized, rel=1e-5)
    costs = [cost for _, cost in atlas.history]
    assert costs == sorted(costs, reverse=True)  # the incumbent only improves
    # constant traffic: Atlas+ (the distribution) is Atlas (its peak)
    plus = solve_atlas(steady, AtlasSettings(traffic="distribution", **SMALL_ATLAS))
    np.testing.assert_allclose(plus.allocation, atlas.allocation)

    varying = one_slice(slice_model, truncated_normal(3, 1, 1, 5), 5.0, 0.1)
    for traffic in ("peak", "distribution"):
        answer = solve_atlas(varying, AtlasSettings(traffic=traffic, **SMALL_ATLAS))
        assumed = varying if traffic == "distribution" else replace(
            varying, slices=(replace(varying.slices[0], traffic=constant(varying.slices[0].traffic.support.max())),))
        judged = finalize(assumed, answer.allocation, "check", 0.0)
        assert judged.feasible, traffic


@pytest.mark.slow
def test_cadrl_policy_is_trained_once_per_sla_and_cadrl_plus_per_problem(slice_model: SliceModel) -> None:
    settings = CaDRLSettings(iterations=60, training_states=8, batch=128)
    first = solve_cadrl(one_slice(slice_model, constant(2)), settings)
    again = solve_cadrl(one_slice(slice_model, constant(2)), settings)
    other = solve_cadrl(one_slice(slice_model, constant(4)), settings)
    assert again.seconds < first.seconds / 5  # the policy is reused: inference only
    np.testing.assert_allclose(first.allocation, again.allocation)
    assert other.normalized > first.normalized  # the policy reads the traffic: more users, more resources
    problem = one_slice(slice_model, truncated_normal(3, 1, 1, 5))
    plus = solve_cadrl(problem, CaDRLSettings(traffic="predicted", iterations=60, batch=128))
    assert plus.method == "cadrl+" and plus.seconds > again.seconds
    for answer in (first, other, plus):
        lower, upper = np.array([500.0, 5.0]), np.array([4000.0, 40.0])
        assert ((answer.allocation >= lower - 1e-6) & (answer.allocation <= upper + 1e-6)).all()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["peak", "microopt-0sigma", "microopt-2sigma", "atlas+"])
def test_optimize_cli_accepts_the_new_methods(trained_model_dir: Path, method: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["optimize", "--model", str(trained_model_dir), "--q-thresh", "4", "--beta", "0.2",
                   "--traffic", "{kind: truncated_normal, mean: 3, std: 1, low: 1, high: 5}",
                   "--method", method, "--json", "--device", "cpu"])
    assert status == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["method"] == method
    assert 500 <= answer["cpu_millicores"] <= 4000 and 5 <= answer["bandwidth_mbps"] <= 40  # the data's range
    assert 0 <= answer["expected_degradation"] <= 1


def test_bnn_posterior_contracts_with_data() -> None:
    """Bayes by backprop with the KL scaled by the dataset size: more observations of a function give Thompson
    draws that agree more with each other and with the function (the posterior contracts)."""
    generator = torch.Generator().manual_seed(0)
    held_out = torch.rand(256, 2, generator=generator) * 2 - 1

    def truth(inputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(4 * inputs[:, 0] - 3 * inputs[:, 1])

    spreads, errors = [], []
    for count in (16, 512):
        inputs = torch.rand(count, 2, generator=generator) * 2 - 1
        bnn = BayesianMLP(2, 32, 2, 1.0, torch.Generator().manual_seed(1))
        bnn.fit(inputs, truth(inputs), 600, 0.01, slots=60)
        draws = bnn.thompson_draws(held_out, 64)
        spreads.append(float(draws.std(0).mean()))
        errors.append(float((draws.mean(0) - truth(held_out)).abs().mean()))
    assert spreads[1] < 0.5 * spreads[0]
    assert errors[1] < 0.5 * errors[0] and errors[1] < 0.05


@pytest.mark.slow
def test_algorithm_1_as_published_and_with_refinement(slice_model: SliceModel) -> None:
    """The refinement starts where Algorithm 1 stops: same seed, never dearer, more exact queries."""
    problem = one_slice(slice_model, truncated_normal(3, 1, 1, 5), 5.0, 0.1)
    published, refined = solve(problem, "microopt-alg1"), solve(problem, "microopt")
    assert published.feasible and refined.feasible
    assert refined.normalized <= published.normalized + 1e-12
    assert refined.queries > published.queries
