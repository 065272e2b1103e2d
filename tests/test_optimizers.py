"""The exact solver, MicroOpt and the grid against an independent float64 brute force on the briefly trained model.

The brute force (``reference.py``) evaluates eq. (1)-(3) in float64 on the unfolded model over a grid of
allocations, written from the paper rather than from ``controller.problem``.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from reference import SharedOptimum, cpu_capped_optimum, expected_degradation, frontier

from analysis.slice_model import ModelSupport, SliceModel
from controller.optimizer_settings import ExactSettings
from controller.optimizers import default_settings, exact, solve
from controller.optimizers.base import judge
from controller.optimizers.exact import kkt_residual, polish_axis, solve_exact
from controller.optimizers.grid import solve_grid
from controller.optimizers.knapsack import backtrack, least_total_bandwidth
from controller.optimizers.microopt import solve_microopt
from controller.problem import CAPACITY_RTOL, Problem, ProblemTensors, SliceProblem
from controller.traffic import TrafficDistribution, constant, truncated_normal
from core.errors import InputError

CASES = [(1, 4, 0.2), (2, 3, 0.1), (2, 5, 0.3), (3, 3, 0.2), (3, 4, 0.1), (4, 5, 0.2), (4, 3, 0.3),
         (5, 4, 0.1), (5, 5, 0.3)]
ETA = np.array(Problem.__dataclass_fields__["eta"].default)
CPU_BOUNDS, BANDWIDTH_BOUNDS = (500.0, 4000.0), (5.0, 40.0)


def brute_force(model: SliceModel, traffic: TrafficDistribution, q_thresh: float, beta: float, cpu_step: float,
                bandwidth_step: float, around: tuple[float, float] | None = None,
                higher_is_better: bool = True) -> tuple[float, np.ndarray]:
    """The cheapest float64-feasible point of a grid over the default bounds (or a small window ``around`` a
    point, 20 steps either side): its cost and (cpu, bw). Cost inf when no grid point is feasible."""
    if around is None:
        cpu = np.arange(CPU_BOUNDS[0], CPU_BOUNDS[1] + 1e-9, cpu_step)
        bandwidth = np.arange(BANDWIDTH_BOUNDS[0], BANDWIDTH_BOUNDS[1] + 1e-9, bandwidth_step)
    else:
        cpu = np.clip(around[0] + cpu_step * np.arange(-20, 21), *CPU_BOUNDS)
        bandwidth = np.clip(around[1] + bandwidth_step * np.arange(-20, 21), *BANDWIDTH_BOUNDS)
    degradation = expected_degradation(model, traffic, q_thresh, cpu[:, None], bandwidth[None, :], higher_is_better)
    cost = np.where(degradation <= beta, ETA[0] * cpu[:, None] + ETA[1] * bandwidth[None, :], np.inf)
    row, column = np.unravel_index(np.argmin(cost), cost.shape)
    return float(cost[row, column]), np.array([cpu[row], bandwidth[column]])


SMALL = [pytest.param(constant(2), 4.0, 0.2, 10.0, 0.05, id="constant"),
         pytest.param(truncated_normal(3, 1.0, 1, 5), 4.0, 0.2, 20.0, 0.1, id="distribution")]


@pytest.mark.parametrize(("traffic", "q_thresh", "beta", "cpu_step", "bandwidth_step"), SMALL)
def test_every_solver_against_the_float64_brute_force(slice_model: SliceModel, float64_model: SliceModel,
                                                      traffic: TrafficDistribution, q_thresh: float, beta: float,
                                                      cpu_step: float, bandwidth_step: float) -> None:
    """Each answer meets its QoS by eq. (1)-(3) in float64, reports exactly that degradation and its own cost,
    and is as cheap as the brute-force grid optimum (up to what each method promises)."""
    best, _ = brute_force(float64_model, traffic, q_thresh, beta, cpu_step, bandwidth_step)
    cell = ETA[0] * cpu_step + ETA[1] * bandwidth_step  # no continuous answer beats the grid by more
    problem = Problem((SliceProblem("s", slice_model, traffic, q_thresh, beta),))
    promised = {"exact": 0.0, "microopt": 0.005, "microopt-alg1": 0.03, "grid": 0.0}
    for method, slack in promised.items():
        answer = solve(problem, method)
        (cpu, bandwidth), = answer.allocation
        exact_degradation = expected_degradation(float64_model, traffic, q_thresh, cpu, bandwidth)
        assert answer.feasible and exact_degradation <= beta, method
        assert answer.expected_degradation[0] == pytest.approx(exact_degradation, abs=1e-9), method
        assert answer.normalized == pytest.approx(float(answer.allocation[0] @ ETA), rel=1e-12), method
        assert answer.normalized >= best - cell, method
        assert answer.normalized <= best * (1 + slack) + 1e-12, method


BASELINES = {"peak": {"grid": {"cpu_step": 10.0, "bandwidth_step": 0.1}},
             "atlas": {"pretrain_samples": 64, "pretrain_epochs": 60, "queries": 64 + 251 + 64, "batch": 32,
                       "finetune_epochs": 5, "candidates": 256},
             "cadrl": {"iterations": 40, "training_states": 8, "batch": 128},
             "cadrl+": {"iterations": 40, "batch": 128},
             "microopt-0sigma": {}, "microopt-2sigma": {}}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(BASELINES))
def test_baselines_and_ablations_are_judged_by_the_float64_brute_force(slice_model: SliceModel,
                                                                       float64_model: SliceModel,
                                                                       method: str) -> None:
    """Whatever a baseline optimizes, its answer is reported with the degradation and feasibility eq. (1)-(3)
    give in float64 at the allocation returned, and none is cheaper than the brute-force optimum."""
    traffic, q_thresh, beta = constant(2), 4.0, 0.2
    best, _ = brute_force(float64_model, traffic, q_thresh, beta, 10.0, 0.05)
    problem = Problem((SliceProblem("s", slice_model, traffic, q_thresh, beta),))
    answer = solve(problem, method, default_settings(method, **BASELINES[method]))
    (cpu, bandwidth), = answer.allocation
    exact_degradation = expected_degradation(float64_model, traffic, q_thresh, cpu, bandwidth)
    assert answer.expected_degradation[0] == pytest.approx(exact_degradation, abs=1e-9)
    assert answer.feasible == bool(exact_degradation <= beta)
    if answer.feasible:
        assert answer.normalized >= best - (ETA[0] * 10.0 + ETA[1] * 0.05)


@pytest.mark.parametrize(("users", "q_thresh", "beta"), CASES)
def test_exact_is_locally_optimal_on_a_fine_float64_grid(slice_model: SliceModel, float64_model: SliceModel,
                                                         users: int, q_thresh: float, beta: float) -> None:
    """No allocation of a 0.5 mc x 0.005 Mbps float64 grid around the exact answer is cheaper by more than 0.01 %
    (its CPU is searched to 1 mc), and the answer is at least as cheap as a 10 mc x 0.05 Mbps grid over the box."""
    problem = Problem((SliceProblem("s", slice_model, constant(users), q_thresh, beta),))
    answer = solve_exact(problem)
    (cpu, bandwidth), = answer.allocation
    assert expected_degradation(float64_model, constant(users), q_thresh, cpu, bandwidth) <= beta
    local, _ = brute_force(float64_model, constant(users), q_thresh, beta, 0.5, 0.005, around=(cpu, bandwidth))
    coarse, _ = brute_force(float64_model, constant(users), q_thresh, beta, 10.0, 0.05)
    assert answer.normalized <= local * (1 + 1e-4)
    assert answer.normalized <= coarse + 1e-12


def test_the_float64_polish_lifts_a_point_just_outside_the_boundary(slice_model: SliceModel,
                                                                    float64_model: SliceModel) -> None:
    """A float32 boundary point can lie a few ulps outside the float64 one: the polish moves it up to feasible,
    by no more than it has to, instead of leaving it to be judged infeasible."""
    problem = Problem((SliceProblem("s", slice_model, constant(4), 3.0, 0.3),))
    (cpu, bandwidth), = solve_exact(problem).allocation
    precise = ProblemTensors.build(problem, "cpu", torch.float64)
    outside = torch.tensor([bandwidth - 1e-4], dtype=torch.float64)
    assert expected_degradation(float64_model, constant(4), 3.0, cpu, float(outside[0])) > 0.3
    lifted = polish_axis(precise, torch.tensor([cpu], dtype=torch.float64), outside, 1, 1e-2, 4096)
    assert expected_degradation(float64_model, constant(4), 3.0, cpu, float(lifted[0])) <= 0.3
    assert float(outside[0]) < float(lifted[0]) <= bandwidth + 1e-6


@pytest.mark.parametrize(("users", "q_thresh", "beta"), CASES)
def test_microopt_matches_grid_oracle(slice_model: SliceModel, float64_model: SliceModel, users: int,
                                      q_thresh: float, beta: float) -> None:
    problem = Problem((SliceProblem("s", slice_model, constant(users), q_thresh, beta),))
    grid = solve_grid(problem)
    answer = solve_microopt(problem)
    assert grid.feasible and answer.feasible
    (cpu, bandwidth), = answer.allocation
    assert expected_degradation(float64_model, constant(users), q_thresh, cpu, bandwidth) <= beta
    assert (answer.normalized - grid.normalized) / grid.normalized <= 0.005


def test_cases_batched_as_slices_of_one_problem_give_each_case_alone(slice_model: SliceModel) -> None:
    slices = tuple(SliceProblem(f"c{index}", slice_model, traffic, q, beta) for index, (traffic, q, beta) in
                   enumerate([(constant(1), 3.0, 0.3), (constant(4), 5.0, 0.1), (truncated_normal(2, 0.8, 1, 5),
                                                                                 4.0, 0.2)]))
    together = solve_exact(Problem(slices))
    for index, slice_problem in enumerate(slices):
        alone = solve_exact(Problem((slice_problem,)))
        np.testing.assert_allclose(together.allocation[index], alone.allocation[0], rtol=1e-6)


def test_constant_traffic_constraint_is_the_deterministic_one(slice_model: SliceModel) -> None:
    """Under constant traffic the margin mu - z sigma - q_thresh is >= 0 exactly where E[beta] <= beta_thresh, for
    either QoS direction."""
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(2000, 1, 2, generator=generator, dtype=torch.float64)
    points = points * torch.tensor([3500.0, 35.0], dtype=torch.float64) + torch.tensor([500.0, 5.0],
                                                                                         dtype=torch.float64)
    for model in (slice_model, read_as_delay(slice_model)):
        problem = Problem((SliceProblem("s", model, constant(3), 4.0, 0.2),))
        tensors = ProblemTensors.build(problem, dtype=torch.float64)
        with torch.no_grad():
            margin, degradation = tensors.margin(points), tensors.expected_degradation(points)
        meets = degradation <= 0.2
        assert 100 < int(meets.sum()) < 1900  # both sides of the boundary are sampled
        assert torch.equal(margin >= 0, meets)


def read_as_delay(model: SliceModel) -> SliceModel:
    """A copy of ``model`` whose QoS is read as lower-is-better (the direction is the model's)."""
    delay = copy.deepcopy(model)
    delay.higher_is_better = False
    return delay


def test_lower_is_better_qos_degrades_above_the_threshold(slice_model: SliceModel, float64_model: SliceModel) -> None:
    """Read as a delay, the model's QoS degrades when it is at or above q_thresh: the exact solver then meets
    P(q >= q_thresh) <= beta_thresh, which the reference computes with the direction flipped."""
    traffic = constant(3)
    higher = Problem((SliceProblem("s", slice_model, traffic, 4.0, 0.2),))
    lower = Problem((replace(higher.slices[0], model=read_as_delay(slice_model)),))
    answer = solve_exact(lower)
    (cpu, bandwidth), = answer.allocation
    exact_degradation = expected_degradation(float64_model, traffic, 4.0, cpu, bandwidth, higher_is_better=False)
    assert answer.feasible and exact_degradation <= 0.2
    assert answer.expected_degradation[0] == pytest.approx(exact_degradation, abs=1e-9)
    flipped = judge(higher, answer.allocation[None])
    assert flipped.degradation[0, 0] == pytest.approx(1 - exact_degradation, abs=1e-9)  # the other tail
    best, _ = brute_force(float64_model, traffic, 4.0, 0.2, 10.0, 0.05, higher_is_better=False)
    assert answer.normalized <= best + 1e-12


def test_kkt_residual_tells_the_optimum_from_another_boundary_point(slice_model: SliceModel) -> None:
    problem = Problem((SliceProblem("s", slice_model, constant(3), 4.0, 0.2),))
    answer = solve_exact(problem)
    precise = ProblemTensors.build(problem, dtype=torch.float64)
    residual, multiplier = kkt_residual(precise, torch.from_numpy(answer.allocation))
    assert float(multiplier[0]) > 0  # the QoS constraint binds
    assert answer.certificate["kkt_residual"] == pytest.approx(float(residual[0]))
    elsewhere = solve_exact(replace(problem, eta=(ETA[0], 10 * ETA[1])))  # the optimum of other prices
    other_residual, _ = kkt_residual(precise, torch.from_numpy(elsewhere.allocation))
    assert float(other_residual[0]) > 2 * float(residual[0])


def test_returned_degradation_is_exact_and_within_beta(slice_model: SliceModel, float64_model: SliceModel) -> None:
    traffic = truncated_normal(3, 1.0, 1, 5)
    for method in ("exact", "microopt"):
        answer = solve(Problem((SliceProblem("s", slice_model, traffic, 4, 0.2),)), method)
        (cpu, bandwidth), = answer.allocation
        exact = expected_degradation(float64_model, traffic, 4, cpu, bandwidth)  # eq. (1)-(3) in float64, unfolded
        assert answer.feasible
        np.testing.assert_allclose(answer.expected_degradation[0], exact, rtol=0, atol=1e-9)
        assert exact <= 0.2


def test_infeasible_problem_returns_best_effort(slice_model: SliceModel) -> None:
    problem = Problem((SliceProblem("s", slice_model, constant(5), 20.0, 0.1),))
    for method in ("exact", "microopt"):
        answer = solve(problem, method)
        assert not answer.feasible, method
        assert answer.expected_degradation[0] > 0.1, method


def test_knapsack_matches_enumeration() -> None:
    """The dynamic program's least total bandwidth per CPU total equals enumerating every combination."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        units = np.sort(rng.integers(0, 6, size=(3, 4)), axis=1)
        bandwidth = rng.uniform(1, 10, size=(3, 4))
        bandwidth[rng.random((3, 4)) < 0.2] = np.inf
        budget = 12
        least, choice = least_total_bandwidth(torch.from_numpy(units), torch.from_numpy(bandwidth), budget)
        expected = np.full(budget + 1, np.inf)
        for combination in itertools.product(range(4), repeat=3):
            spent = sum(units[s, c] for s, c in enumerate(combination))
            if spent <= budget:
                expected[spent] = min(expected[spent], sum(bandwidth[s, c] for s, c in enumerate(combination)))
        np.testing.assert_allclose(least.numpy(), expected)
        for total in np.flatnonzero(np.isfinite(expected)):
            picked = backtrack(torch.from_numpy(units), choice, int(total)).numpy()
            assert sum(units[s, c] for s, c in enumerate(picked)) == total
            assert sum(bandwidth[s, c] for s, c in enumerate(picked)) == pytest.approx(expected[total])


@pytest.fixture(scope="module")
def both_binding(slice_model: SliceModel, float64_model: SliceModel) -> tuple[Problem, SharedOptimum]:
    """Three slices whose CPU capacity is 2 % below what they take alone, and whose bandwidth capacity is 1 %
    above the exact optimum's under that CPU capacity (a float64 knapsack over their frontiers on a 10 mc x
    0.05 Mbps grid): the optimum uses all of both."""
    slices = tuple(SliceProblem(f"s{users}", slice_model, constant(users), 4, 0.2) for users in (1, 3, 5))
    cpu_grid, bandwidth_grid = np.arange(500, 4000.1, 10.0), np.arange(5, 40.001, 0.05)
    frontiers = [frontier(float64_model, s.traffic, s.q_thresh, s.beta_thresh, cpu_grid, bandwidth_grid)
                 for s in slices]
    eta = Problem(slices).eta
    alone = cpu_capped_optimum(frontiers, np.inf, eta)
    optimum = cpu_capped_optimum(frontiers, 0.98 * alone.cpu.sum(), eta)
    capacity = (float(0.98 * alone.cpu.sum()), float(1.01 * optimum.bandwidth.sum()))
    return Problem(slices, eta=eta, capacity=capacity), optimum


def test_the_shared_capacities_bind_on_both_resources(both_binding: tuple[Problem, SharedOptimum]) -> None:
    problem, optimum = both_binding
    cpu_capacity, bandwidth_capacity = problem.capacity or (np.inf, np.inf)
    assert cpu_capacity - 10 < optimum.cpu.sum() <= cpu_capacity  # within one grid step of the CPU capacity
    assert optimum.bandwidth.sum() == pytest.approx(bandwidth_capacity, rel=0.011)


@pytest.mark.parametrize("method", ["exact", "microopt"])
def test_shared_capacity_binding_on_both_resources_is_met(both_binding: tuple[Problem, SharedOptimum],
                                                          float64_model: SliceModel, method: str) -> None:
    """One multiplier per resource (MicroOpt), the knapsack over frontiers (exact): both capacities are met and
    used, and the cost is within 0.5 % of the float64 knapsack optimum."""
    problem, optimum = both_binding
    answer = solve(problem, method)
    totals, capacity = answer.allocation.sum(0), np.asarray(problem.capacity)
    assert answer.feasible and (totals <= capacity * (1 + CAPACITY_RTOL)).all(), (totals, capacity)
    np.testing.assert_allclose(totals, capacity, rtol=0.02)  # both bind: each sum at its capacity
    for s, (cpu, bandwidth) in zip(problem.slices, answer.allocation, strict=True):
        assert expected_degradation(float64_model, s.traffic, s.q_thresh, cpu, bandwidth) <= s.beta_thresh
    reference = ETA[0] * optimum.cpu.sum() + ETA[1] * optimum.bandwidth.sum()
    assert answer.normalized <= reference * 1.005


COARSE_TO_FINE = {"default": ExactSettings(),
                  "25-5-1": ExactSettings(knapsack_cpu_step=25.0, knapsack_refine_steps=(5.0, 1.0)),
                  "50-25-5-1": ExactSettings(knapsack_cpu_step=50.0, knapsack_refine_steps=(25.0, 5.0, 1.0),
                                             knapsack_points=2),
                  "whole bounds": ExactSettings(knapsack_cpu_step=10.0, knapsack_refine_steps=(1.0,),
                                                knapsack_window=False)}


def record_packings(monkeypatch: pytest.MonkeyPatch, capacity: np.ndarray) -> list[tuple[bool, float]]:
    """Whether each knapsack's packing fits ``capacity`` and its cost, in the order the solver packs them."""
    packings: list[tuple[bool, float]] = []
    knapsack = exact._knapsack

    def recorded(tensors: ProblemTensors, cpu: torch.Tensor, bandwidth: torch.Tensor,
                 step: float) -> tuple[torch.Tensor, bool]:
        picked, fitted = knapsack(tensors, cpu, bandwidth, step)
        packed = exact._padded(tensors, bandwidth).gather(1, picked)  # the bandwidths as the knapsack counts them
        totals = np.array([float(cpu.gather(1, picked).sum()), float(packed.sum())])
        packings.append((bool((totals <= capacity).all()), float(totals @ ETA)))
        assert fitted == packings[-1][0]
        return picked, fitted

    monkeypatch.setattr(exact, "_knapsack", recorded)
    return packings


def test_a_refinement_keeps_the_coarser_packing_when_its_frontier_comes_out_higher(
        both_binding: tuple[Problem, SharedOptimum], monkeypatch: pytest.MonkeyPatch) -> None:
    """A finer frontier that does not reproduce the coarser one's bandwidths (here: every refined point 2 Mbps
    higher) cannot make a refinement lose the packing that fitted, nor raise its cost."""
    problem, _ = both_binding
    frontier = exact._frontier
    calls: list[int] = []

    def higher(tensors: ProblemTensors, cpu: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
               settings: ExactSettings) -> exact.Boundary:
        boundary = frontier(tensors, cpu, low, high, settings)
        if calls:
            boundary.bandwidth = boundary.bandwidth + 2.0
        calls.append(cpu.shape[1])
        return boundary

    monkeypatch.setattr(exact, "_frontier", higher)
    packings = record_packings(monkeypatch, np.asarray(problem.capacity) * (1 + CAPACITY_RTOL))
    answer = solve_exact(problem)
    assert len(packings) >= 2 and all(fits for fits, _ in packings), packings
    assert all(finer <= coarse + 1e-9 for (_, coarse), (_, finer) in itertools.pairwise(packings)), packings
    assert answer.feasible


@pytest.mark.parametrize("settings", COARSE_TO_FINE.values(), ids=COARSE_TO_FINE.keys())
def test_every_knapsack_refinement_keeps_a_packing_that_fits(both_binding: tuple[Problem, SharedOptimum],
                                                           float64_model: SliceModel, settings: ExactSettings,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the grids (50 mc first: nothing fits on it here, the last resort does), the last packing fits,
    each packing after the first that fits fits too and costs no more; the answer is feasible and within
    0.5 % of the float64 optimum."""
    problem, optimum = both_binding
    capacity = np.asarray(problem.capacity) * (1 + CAPACITY_RTOL)
    packings = record_packings(monkeypatch, capacity)
    answer = solve_exact(problem, settings)
    assert len(packings) >= 2 and packings[-1][0], packings  # refined, and the answer's packing fits
    first_fit = next(index for index, (fits, _) in enumerate(packings) if fits)
    for (_, cost), (fits, finer_cost) in itertools.pairwise(packings[first_fit:]):
        assert fits and finer_cost <= cost + 1e-9, packings
    assert answer.feasible and (answer.allocation.sum(0) <= capacity).all()
    for s, (cpu, bandwidth) in zip(problem.slices, answer.allocation, strict=True):
        assert expected_degradation(float64_model, s.traffic, s.q_thresh, cpu, bandwidth) <= s.beta_thresh
    assert answer.normalized <= (ETA[0] * optimum.cpu.sum() + ETA[1] * optimum.bandwidth.sum()) * 1.005


def test_least_cpu_is_where_the_qos_starts_to_be_met_at_the_most_bandwidth(
        both_binding: tuple[Problem, SharedOptimum], float64_model: SliceModel) -> None:
    problem, _ = both_binding
    tensors = ProblemTensors.build(problem)
    with torch.no_grad():
        least = exact.least_cpu(tensors, ExactSettings())[:, 0].numpy()
    for s, cpu in zip(problem.slices, least, strict=True):
        degradation = expected_degradation(float64_model, s.traffic, s.q_thresh, np.array([cpu - 0.5, cpu + 0.5]),
                                           BANDWIDTH_BOUNDS[1])
        assert degradation[0] > s.beta_thresh >= degradation[1], (s.name, cpu, degradation)


def test_knapsack_steps_must_nest() -> None:
    with pytest.raises(ValidationError, match="whole multiple of the next"):
        ExactSettings(knapsack_cpu_step=25.0, knapsack_refine_steps=(10.0, 1.0))


def test_capacity_tolerance_is_relative(slice_model: SliceModel) -> None:
    problem = Problem((SliceProblem("s", slice_model, constant(1), 3, 0.3),), capacity=(4000.0, 40.0))
    inside = judge(problem, np.array([[[4000.0 * (1 + CAPACITY_RTOL / 2), 40.0]]]))
    outside = judge(replace(problem, capacity=(3000.0, 40.0)), np.array([[[3000.0 * (1 + 2 * CAPACITY_RTOL), 40.0]]]))
    assert inside.feasible[0] and not outside.feasible[0]


def test_problem_tensors_evaluate_the_slice_model(slice_model: SliceModel) -> None:
    problem = Problem((SliceProblem("s", slice_model, truncated_normal(3, 1.0, 1, 5), 4, 0.2),))
    allocation = torch.tensor([[[500.0, 5.0]], [[1800.0, 17.5]], [[4000.0, 40.0]]])  # (3 candidates, 1 slice, K)
    for dtype in (torch.float32, torch.float64):
        tensors = ProblemTensors.build(problem, dtype=dtype)
        mean, std = tensors.qos_distribution(allocation.to(dtype))
        support = tensors.support[0].float()
        for index, (cpu, bandwidth) in enumerate(allocation[:, 0].tolist()):
            inputs = torch.stack((support, torch.full_like(support, bandwidth), torch.full_like(support, cpu)), -1)
            with torch.no_grad():
                expected_mean, expected_std = slice_model(inputs)
            torch.testing.assert_close(mean[index, 0].float(), expected_mean, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(std[index, 0].float(), expected_std, rtol=1e-4, atol=1e-4)


def test_binding_cpu_capacity_makes_slices_trade_cpu_for_bandwidth(slice_model: SliceModel) -> None:
    slices = tuple(SliceProblem(f"s{users}", slice_model, constant(users), 4, 0.2) for users in (1, 2, 3, 4, 5))
    alone = np.array([solve_microopt(Problem((s,))).allocation[0] for s in slices])
    capacity = (0.98 * alone[:, 0].sum(), 2.0 * alone[:, 1].sum())
    answer = solve_microopt(Problem(slices, capacity=capacity))
    assert answer.feasible
    assert answer.allocation[:, 0].sum() <= capacity[0] * (1 + CAPACITY_RTOL)
    assert answer.allocation[:, 0].sum() < alone[:, 0].sum()  # the capacity really bound
    assert answer.allocation[:, 1].sum() > alone[:, 1].sum()  # and CPU was traded for bandwidth
    assert (answer.expected_degradation <= 0.2).all()


def test_answers_stay_inside_bounds_that_float32_cannot_represent(slice_model: SliceModel) -> None:
    lower, upper = (500.3, 5.1), (4000.7, 40.3)
    problem = Problem((SliceProblem("s", slice_model, constant(1), 3, 0.3, lower=lower, upper=upper),))
    for method in ("exact", "microopt", "grid"):
        answer = solve(problem, method)
        assert (answer.allocation[0] >= np.asarray(lower)).all(), method
        assert (answer.allocation[0] <= np.asarray(upper)).all(), method


def model_with_support(model: SliceModel) -> SliceModel:
    """A copy of ``model`` recording a narrower training range than the MicroOpt data (as models trained on a
    testbed's sweep do): CPU 1000-3000 mc, bandwidth 10-30 Mbps, 1-4 users/s."""
    narrow = copy.deepcopy(model)
    narrow.support = ModelSupport(users=(1.0, 4.0), bandwidth=(10.0, 30.0), cpu=(1000.0, 3000.0))
    return narrow


def test_bounds_are_cut_to_the_training_data_and_outside_traffic_is_refused(slice_model: SliceModel) -> None:
    narrow = model_with_support(slice_model)
    problem = Problem((SliceProblem("s", narrow, constant(3), 4.0, 0.2, lower=(500.0, 5.0), upper=(4500.0, 50.0)),))
    assert (problem.slices[0].lower, problem.slices[0].upper) == ((1000.0, 10.0), (3000.0, 30.0))
    answer = solve_exact(problem)
    assert not answer.extrapolated[0]
    assert (answer.allocation[0] >= (1000.0, 10.0)).all() and (answer.allocation[0] <= (3000.0, 30.0)).all()
    with pytest.raises(InputError, match="5-5 users/s lies outside the model's training data"):
        SliceProblem("s", narrow, constant(5), 4.0, 0.2)
    with pytest.raises(InputError, match="lie outside the model's training data"):
        SliceProblem("s", narrow, constant(3), 4.0, 0.2, lower=(3500.0, 5.0), upper=(4000.0, 40.0))


def test_extrapolation_when_allowed_is_flagged(slice_model: SliceModel) -> None:
    """One user at a loose SLA is cheapest below the recorded data's 1000 mc: allowed, that answer is flagged."""
    narrow = model_with_support(slice_model)
    inside = solve_exact(Problem((SliceProblem("s", narrow, constant(1), 3.0, 0.3),)))
    assert not inside.extrapolated[0] and inside.allocation[0, 0] >= 1000.0
    wider = SliceProblem("s", narrow, constant(1), 3.0, 0.3, lower=(500.0, 5.0), upper=(4000.0, 40.0),
                         allow_extrapolation=True)
    answer = solve_exact(Problem((wider,)))
    assert answer.allocation[0, 0] < 1000.0 and answer.normalized < inside.normalized
    assert answer.extrapolated[0]
    assert answer.per_slice(Problem((wider,)))[0]["extrapolated"] is True
    busy = solve_exact(Problem((replace(wider, traffic=constant(5), q_thresh=4.0, beta_thresh=0.2),)))
    assert busy.extrapolated[0]  # 5 users/s lies outside the 1-4 users/s of the data, wherever the allocation
