"""MicroOpt against the exhaustive grid oracle on the briefly trained slice model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.slice_model import SliceModel, load_model
from controller.optimizers.grid import solve_grid
from controller.optimizers.microopt import solve_microopt
from controller.problem import Problem, ProblemTensors, SliceProblem
from controller.traffic import constant, truncated_normal

CASES = [(1, 4, 0.2), (2, 3, 0.1), (2, 5, 0.3), (3, 3, 0.2), (3, 4, 0.1), (4, 5, 0.2), (4, 3, 0.3),
         (5, 4, 0.1), (5, 5, 0.3)]


@pytest.fixture(scope="module")
def model(trained_model_dir: Path) -> SliceModel:
    torch.set_num_threads(1)
    return load_model(trained_model_dir)


@pytest.mark.parametrize(("users", "q_thresh", "beta"), CASES)
def test_microopt_matches_grid_oracle(model: SliceModel, users: int, q_thresh: float, beta: float) -> None:
    problem = Problem((SliceProblem("s", model, constant(users), q_thresh, beta),))
    grid = solve_grid(problem)
    answer = solve_microopt(problem)
    assert grid.feasible and answer.feasible
    assert answer.expected_degradation[0] <= beta
    assert (answer.normalized - grid.normalized) / grid.normalized <= 0.005


def test_returned_degradation_is_exact_and_within_beta(model: SliceModel) -> None:
    problem = Problem((SliceProblem("s", model, truncated_normal(3, 1.0, 1, 5), 4, 0.2),))
    answer = solve_microopt(problem)
    tensors = ProblemTensors.build(problem)
    exact = tensors.expected_degradation(torch.as_tensor(answer.allocation, dtype=torch.float32)).numpy()
    assert answer.feasible
    np.testing.assert_allclose(answer.expected_degradation, exact, atol=1e-6)
    assert exact[0] <= 0.2


def test_infeasible_problem_returns_best_effort(model: SliceModel) -> None:
    problem = Problem((SliceProblem("s", model, constant(5), 20.0, 0.1),))
    answer = solve_microopt(problem)
    assert not answer.feasible
    assert answer.expected_degradation[0] > 0.1


def test_shared_capacity_is_respected(model: SliceModel) -> None:
    slices = tuple(SliceProblem(f"s{users}", model, constant(users), 4, 0.2) for users in (1, 3, 5))
    alone = np.array([solve_microopt(Problem((s,))).allocation[0] for s in slices])
    capacity = tuple(float(value) for value in 1.1 * alone.sum(0))
    answer = solve_microopt(Problem(slices, capacity=capacity))
    assert answer.feasible
    assert (answer.allocation.sum(0) <= np.asarray(capacity) + 1e-3).all()
    assert (answer.expected_degradation <= 0.2).all()
