"""MicroOpt against the exhaustive grid oracle on the briefly trained slice model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.slice_model import SliceModel
from controller.optimizers.grid import solve_grid
from controller.optimizers.microopt import solve_microopt
from controller.problem import Problem, ProblemTensors, SliceProblem
from controller.traffic import constant, truncated_normal

CASES = [(1, 4, 0.2), (2, 3, 0.1), (2, 5, 0.3), (3, 3, 0.2), (3, 4, 0.1), (4, 5, 0.2), (4, 3, 0.3),
         (5, 4, 0.1), (5, 5, 0.3)]


@pytest.mark.parametrize(("users", "q_thresh", "beta"), CASES)
def test_microopt_matches_grid_oracle(slice_model: SliceModel, users: int, q_thresh: float, beta: float) -> None:
    problem = Problem((SliceProblem("s", slice_model, constant(users), q_thresh, beta),))
    grid = solve_grid(problem)
    answer = solve_microopt(problem)
    assert grid.feasible and answer.feasible
    assert answer.expected_degradation[0] <= beta
    assert (answer.normalized - grid.normalized) / grid.normalized <= 0.005


def test_returned_degradation_is_exact_and_within_beta(slice_model: SliceModel) -> None:
    problem = Problem((SliceProblem("s", slice_model, truncated_normal(3, 1.0, 1, 5), 4, 0.2),))
    answer = solve_microopt(problem)
    tensors = ProblemTensors.build(problem)
    exact = tensors.expected_degradation(torch.as_tensor(answer.allocation, dtype=torch.float32)).numpy()
    assert answer.feasible
    np.testing.assert_allclose(answer.expected_degradation, exact, atol=1e-6)
    assert exact[0] <= 0.2


def test_infeasible_problem_returns_best_effort(slice_model: SliceModel) -> None:
    problem = Problem((SliceProblem("s", slice_model, constant(5), 20.0, 0.1),))
    answer = solve_microopt(problem)
    assert not answer.feasible
    assert answer.expected_degradation[0] > 0.1


def test_shared_capacity_is_respected(slice_model: SliceModel) -> None:
    slices = tuple(SliceProblem(f"s{users}", slice_model, constant(users), 4, 0.2) for users in (1, 3, 5))
    alone = np.array([solve_microopt(Problem((s,))).allocation[0] for s in slices])
    capacity = tuple(float(value) for value in 1.1 * alone.sum(0))
    answer = solve_microopt(Problem(slices, capacity=capacity))
    assert answer.feasible
    assert (answer.allocation.sum(0) <= np.asarray(capacity) + 1e-3).all()
    assert (answer.expected_degradation <= 0.2).all()


def test_folded_model_matches_the_slice_model(slice_model: SliceModel) -> None:
    problem = Problem((SliceProblem("s", slice_model, truncated_normal(3, 1.0, 1, 5), 4, 0.2),))
    tensors = ProblemTensors.build(problem)
    allocation = torch.tensor([[[500.0, 5.0]], [[1800.0, 17.5]], [[4500.0, 50.0]]])  # (3 candidates, 1 slice, K)
    mean, std = tensors.qos_distribution(allocation)
    support = tensors.support[0]
    for index, (cpu, bandwidth) in enumerate(allocation[:, 0].tolist()):
        inputs = torch.stack((support, torch.full_like(support, bandwidth), torch.full_like(support, cpu)), -1)
        with torch.no_grad():
            expected_mean, expected_std = slice_model(inputs)
        torch.testing.assert_close(mean[index, 0], expected_mean, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(std[index, 0], expected_std, rtol=1e-4, atol=1e-4)


def test_binding_cpu_capacity_makes_slices_trade_cpu_for_bandwidth(slice_model: SliceModel) -> None:
    slices = tuple(SliceProblem(f"s{users}", slice_model, constant(users), 4, 0.2) for users in (1, 2, 3, 4, 5))
    alone = np.array([solve_microopt(Problem((s,))).allocation[0] for s in slices])
    capacity = (0.98 * alone[:, 0].sum(), 2.0 * alone[:, 1].sum())
    answer = solve_microopt(Problem(slices, capacity=capacity))
    assert answer.feasible
    assert answer.allocation[:, 0].sum() <= capacity[0] + 1e-3
    assert answer.allocation[:, 0].sum() < alone[:, 0].sum()  # the capacity really bound
    assert answer.allocation[:, 1].sum() > alone[:, 1].sum()  # and CPU was traded for bandwidth
    assert (answer.expected_degradation <= 0.2).all()


def test_answers_stay_inside_bounds_that_float32_cannot_represent(slice_model: SliceModel) -> None:
    lower, upper = (500.3, 5.1), (4000.7, 40.3)
    problem = Problem((SliceProblem("s", slice_model, constant(1), 3, 0.3, lower=lower, upper=upper),))
    for answer in (solve_microopt(problem), solve_grid(problem)):
        assert (answer.allocation[0] >= np.asarray(lower)).all()
        assert (answer.allocation[0] <= np.asarray(upper)).all()
