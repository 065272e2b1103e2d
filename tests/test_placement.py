"""Slice placement (issue 14): the model, the exact ILP, the heuristics, the double-DQN agents, the reproduction.

Everything runs for real: CP-SAT solves, torch trains (tiny budgets), the reproduction writes its run directory.
The ILP's optimum is checked against brute-force enumeration of a small instance.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO

from controller.placement.heuristics import HEURISTICS, place_heuristic
from controller.placement.ilp import IlpSettings, solve_batch, solve_online
from controller.placement.placement import Occupancy, score
from controller.placement.problem import Problem, Requests, build_problem, draw_requests
from controller.placement.reproduce import ReproduceConfig, check_targets, run_reproduction, summary_by_load
from controller.placement.rl.env import MAX_INVALID, PlacementEnv
from controller.placement.rl.training import TrainingSettings, load_agents, place_with_agents, train_agent
from controller.placement.spec import PlacementSpec
from core.errors import InputError

TINY = TrainingSettings(episodes=30, batch_size=16, buffer_size=500, checkpoint_every=10, sync_every=20,
                        hidden={"urllc": [16], "embb": [16], "mmtc": [16], "monolithic": [16]})


@pytest.fixture(scope="module")
def problem() -> Problem:
    return build_problem(PlacementSpec())


@pytest.fixture(scope="module")
def agents_dir(tmp_path_factory: pytest.TempPathFactory, problem: Problem) -> Path:
    """Every agent of the default problem, trained for 30 episodes (seconds)."""
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("agents")
    for name in (*problem.types, "monolithic"):
        train_agent(problem, name, TINY, directory)
    return directory


def test_defaults_are_the_papers_setting(problem: Problem) -> None:
    assert problem.tiers == ("edge", "regional", "central")
    assert problem.cap_cpu.tolist() == [16000, 32000, 64000] and problem.cap_mem.tolist() == [16384, 32768, 65536]
    assert problem.upf_latency_ms.tolist() == [5, 7.5, 10]
    assert problem.vnfs == ("nrf", "uua", "amf", "smf", "upf", "cu", "du")
    prices = [tier.cost_per_core_hour for tier in problem.spec.tiers]
    assert prices == sorted(prices, reverse=True)  # costs highest at the edge
    # 5 / 10 / 15 slices are 25 / 50 / 75 % of the CPU on average (types 0.2 / 0.3 / 0.5)
    mean_slice = 0.2 * problem.cpu[0].sum() + 0.3 * problem.cpu[1].sum() + 0.5 * problem.cpu[2].sum()
    assert [round(100 * n * mean_slice / problem.cap_cpu.sum()) for n in (5, 10, 15)] == [25, 50, 75]
    # eq. (4): edge-only user plane 5 ms; all on regional 5 + 7.5 ms; all central 15 + 10 ms
    assert problem.path_latency_ms((0, 0, 0)) == 5
    assert problem.path_latency_ms((1, 1, 1)) == 12.5
    assert problem.path_latency_ms((2, 2, 2)) == 25
    assert problem.latency_ms[0, 2] == 15  # edge-central: through regional (shortest path)
    assert problem.allowed_paths[0] == {(0, 0, 0)}  # URLLC (10 ms): the whole user plane at the edge
    assert problem.flavors[1][4] == "medium"  # an eMBB UPF (1.5 cores) takes the 2-core flavor


def test_latency_read_from_the_testbed_inventory(tmp_path: Path) -> None:
    spec = PlacementSpec(latency_inventory=REPO / "inventory" / "local.yml")
    problem = build_problem(spec)
    assert problem.latency_ms[0, 1] == 5 and problem.latency_ms[1, 2] == 10 and problem.latency_ms[0, 2] == 15


def _brute_force(problem: Problem, requests: Requests) -> float:
    """The cheapest feasible placement, by trying every one."""
    options = list(itertools.product(range(problem.n_tiers), repeat=problem.n_vnfs))
    best = np.inf
    for choice in itertools.product(options, repeat=len(requests)):
        occupancy = Occupancy(problem)
        for t, tiers in zip(requests.types, choice, strict=True):
            occupancy.add_slice(t, tiers)
        if (occupancy.cpu > problem.cap_cpu).any() or (occupancy.mem > problem.cap_mem).any():
            continue
        if all(problem.sla_met(t, tiers) for t, tiers in zip(requests.types, choice, strict=True)):
            best = min(best, sum(problem.slice_cost(t, tiers) for t, tiers in zip(requests.types, choice,
                                                                                  strict=True)))
    return best


def _small_spec() -> PlacementSpec:
    """Three VNFs, tight tiers: capacity, latency and consolidation all bind."""
    return PlacementSpec.model_validate({
        "tiers": [{"name": "edge", "cpu_cores": 3, "memory_gib": 4, "cost_per_core_hour": 0.1,
                   "cost_per_gib_hour": 0.02, "upf_latency_ms": 5},
                  {"name": "regional", "cpu_cores": 3, "memory_gib": 4, "cost_per_core_hour": 0.06,
                   "cost_per_gib_hour": 0.01, "upf_latency_ms": 7.5},
                  {"name": "central", "cpu_cores": 4, "memory_gib": 4, "cost_per_core_hour": 0.03,
                   "cost_per_gib_hour": 0.005, "upf_latency_ms": 10}],
        "vnfs": [{"name": "smf", "plane": "control", "cpu_cores": 1, "memory_gib": 1, "image": "smf:1"},
                 {"name": "cu", "plane": "user", "cpu_cores": 1, "memory_gib": 1, "image": "cu:1"},
                 {"name": "upf", "plane": "user", "cpu_cores": 1, "memory_gib": 1, "image": "upf:1"}],
        "user_plane_path": ["cu", "upf"],
        "slice_types": {"fast": {"latency_bound_ms": 13}, "bulk": {"latency_bound_ms": 40, "consolidate":
                                                                   ["smf", "upf"]}}})


@pytest.mark.parametrize("types", [(0, 0, 1), (1, 1, 0), (0, 1, 1)])
def test_ilp_optimum_equals_brute_force(types: tuple[int, ...]) -> None:
    problem = build_problem(_small_spec())
    requests = Requests(("a", "b", "c"), types)
    placement = solve_batch(problem, requests)
    assert placement.details["status"] == "OPTIMAL" and placement.details["gap"] == 0
    result = score(problem, requests, placement)
    assert result["sla_violations"] == 0 and result["rejected"] == 0
    assert result["cost_per_hour"] == pytest.approx(_brute_force(problem, requests), abs=1e-6)
    assert placement.details["objective"] == pytest.approx(result["cost_per_hour"], abs=1e-6)


def test_ilp_proves_fifteen_slices_with_a_warm_start(problem: Problem) -> None:
    requests = draw_requests(problem, 15, np.random.default_rng(3))
    placement = solve_batch(problem, requests)
    assert placement.details["status"] == "OPTIMAL" and placement.details["gap"] == 0
    assert placement.details["warm_start"] in HEURISTICS
    result = score(problem, requests, placement)
    assert result["sla_violations"] == result["rejected"] == 0
    for name, t in zip(requests.names, requests.types, strict=True):
        tiers = placement.assignment[name]
        assert problem.sla_met(t, tiers)
        if problem.types[t] == "urllc":
            assert [tiers[v] for v in problem.path] == [0, 0, 0]


def test_ilp_two_hundred_slices_within_one_percent(problem: Problem) -> None:
    scale = 200 / 15
    spec = problem.spec.model_copy(update={"tiers": [tier.model_copy(update={
        "cpu_cores": tier.cpu_cores * scale, "memory_gib": tier.memory_gib * scale}) for tier in problem.spec.tiers]})
    large = build_problem(spec)
    requests = draw_requests(large, 200, np.random.default_rng(0))
    placement = solve_batch(large, requests, IlpSettings(relative_gap=0.01, time_limit_s=5))
    assert placement.details["status"] in ("OPTIMAL", "FEASIBLE") and placement.details["gap"] <= 0.01
    assert score(large, requests, placement)["sla_violations"] == 0


def test_infeasible_instance_names_the_binding_constraints(problem: Problem) -> None:
    requests = Requests(tuple(f"u{i}" for i in range(9)), (0,) * 9)  # 9 URLLC user planes: 18 cores on a 16-core edge
    placement = solve_batch(problem, requests)
    assert placement.details["status"] == "INFEASIBLE"
    assert placement.details["binding"] == ["edge CPU capacity (16 cores, 0 in use)",
                                            "latency bound of the urllc slices (10 ms)"]
    assert all(tiers is None for tiers in placement.assignment.values())


def test_online_keeps_earlier_placements_and_costs_no_less_than_batch(problem: Problem) -> None:
    requests = draw_requests(problem, 15, np.random.default_rng(7))
    online = solve_online(problem, requests)
    batch = solve_batch(problem, requests)
    assert score(problem, requests, online)["cost_per_hour"] >= score(problem, requests, batch)["cost_per_hour"] - 1e-9
    prefix = Requests(requests.names[:8], requests.types[:8])
    earlier = solve_online(problem, prefix)
    assert all(online.assignment[name] == earlier.assignment[name] for name in prefix.names)
    # a slice that no longer fits is rejected, the others stay
    crowded = Requests(tuple(f"u{i}" for i in range(9)), (0,) * 9)
    placed = solve_online(problem, crowded)
    assert sum(tiers is None for tiers in placed.assignment.values()) == 1 and placed.assignment["u0"] is not None


def test_heuristics_follow_their_rule_and_never_overfill(problem: Problem) -> None:
    requests = draw_requests(problem, 25, np.random.default_rng(1))  # more than fits: some are rejected
    for name in HEURISTICS:
        placement = place_heuristic(problem, requests, name, seed=4)
        occupancy = Occupancy(problem)
        for slice_name, t in zip(requests.names, requests.types, strict=True):
            if placement.assignment[slice_name] is not None:
                occupancy.add_slice(t, placement.assignment[slice_name])
        assert (occupancy.cpu <= problem.cap_cpu).all() and (occupancy.mem <= problem.cap_mem).all(), name
    one = Requests(("s1",), (1,))
    assert place_heuristic(problem, one, "cost-aware").assignment["s1"] == (2,) * 7  # central is cheapest
    assert place_heuristic(problem, one, "performance-aware").assignment["s1"] == (0,) * 7  # edge is closest
    balanced = place_heuristic(problem, one, "load-balancing").assignment["s1"]
    assert balanced[0] == 2  # the emptiest (largest) tier first
    draws = {place_heuristic(problem, requests, "random", seed).assignment["s1"] for seed in range(5)}
    assert len(draws) > 1
    assert place_heuristic(problem, requests, "random", 3).assignment == \
        place_heuristic(problem, requests, "random", 3).assignment


def test_environment_rewards(problem: Problem) -> None:
    env = PlacementEnv(problem, [0], monolithic=False, resource_penalty=10, cost_reward=5, max_queue=1)
    env.reset(np.random.default_rng(0))
    env.occupancy.cpu[:] = [0, 0, problem.cap_cpu[2]]  # central full
    env.occupancy.mem[:] = 0
    before = env._state()
    state, reward, done = env.step(2)  # no room: the penalty, same state, the same VNF still to place
    assert reward == -10 and not done and np.array_equal(state, before)
    assert env.step(2)[1:] == (-10, False)
    assert MAX_INVALID == 3 and env.step(2)[1:] == (-10 - 20, True)  # third miss: the slice fails its SLA (URLLC 20)
    env.reset(np.random.default_rng(1))
    env.occupancy.cpu[:] = 0
    env.occupancy.mem[:] = 0
    total = [env.step(tier) for tier in (2, 2, 2, 2, 0, 0, 0)]
    assert total[-1][2] and total[-1][1] == pytest.approx(0 + 20)  # edge reward 0, SLA met: +20 (URLLC)
    assert total[0][1] == pytest.approx(5.0)  # the cheapest tier earns the whole cost reward


def test_training_is_seeded_and_resumes_from_its_checkpoint(problem: Problem, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    straight = train_agent(problem, "urllc", TINY, tmp_path / "straight")

    class Stop(Exception):
        pass

    def interrupt(episode: int) -> None:
        if episode == 15:
            raise Stop

    with pytest.raises(Stop):
        train_agent(problem, "urllc", TINY, tmp_path / "resumed", interrupt)
    resumed = train_agent(problem, "urllc", TINY, tmp_path / "resumed")
    assert resumed["episodes"] == straight["episodes"] == 30
    a = torch.load(tmp_path / "straight" / "urllc.pt", weights_only=True)["dqn"]["online"]
    b = torch.load(tmp_path / "resumed" / "urllc.pt", weights_only=True)["dqn"]["online"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert (tmp_path / "resumed" / "urllc.json").is_file()


def test_agents_place_online_and_refuse_another_problem(problem: Problem, agents_dir: Path) -> None:
    agents = load_agents(problem, agents_dir)
    requests = draw_requests(problem, 10, np.random.default_rng(2))
    for monolithic in (False, True):
        placement = place_with_agents(problem, requests, agents, monolithic, "rl")
        result = score(problem, requests, placement)
        assert result["rejected"] == 0 and result["decision_s"] > 0
    four = problem.spec.model_dump()
    four["tiers"].append({**four["tiers"][2], "name": "far"})
    four["latency"] = [{"a": "edge", "b": "regional", "delay_ms": 5}, {"a": "regional", "b": "central", "delay_ms": 10},
                       {"a": "central", "b": "far", "delay_ms": 20}]
    with pytest.raises(InputError, match=r"trained for 3 tiers .* this problem has 4"):
        load_agents(build_problem(PlacementSpec.model_validate(four)), agents_dir)


def test_reproduction_scores_every_method_on_the_same_instances(problem: Problem, agents_dir: Path) -> None:
    agents = load_agents(problem, agents_dir)
    config = ReproduceConfig(slices=(5, 15), trials=1, seed=1)
    result = run_reproduction(problem, agents, config)
    rows = result.rows
    assert len(rows) == 2 * 8 and set(rows["method"]) == {"ilp", "ilp-online", "slicepilot", "monolithic",
                                                          *HEURISTICS}
    ilp = rows[rows["method"] == "ilp"]
    assert (ilp["cost_gap_pct"] == 0).all() and (ilp["sla_violations"] == 0).all()
    feasible = rows[(rows["sla_violations"] == 0) & (rows["rejected"] == 0)]
    assert (feasible["cost_gap_pct"] >= -1e-9).all()  # nothing that meets every SLA beats the proven optimum
    table = summary_by_load(rows)
    assert table[table["method"] == "ilp"]["speedup_vs_ilp"].tolist() == [1.0, 1.0]
    targets = check_targets(rows, table)
    assert targets["target"].str.contains("CP-SAT proves").any() and targets["holds"].dtype == bool
