"""Training the SlicePilot agents (one per slice type) and the monolithic agent, saving and loading them.

Training is seeded (numpy and torch), checkpointed every ``checkpoint_every`` episodes into the output
directory (networks, optimizer, replay buffer, random states: an interrupted run resumes where it stopped) and
reports progress per episode. Each agent is one file ``<name>.pt`` with the tiers, VNFs and slice types it
was trained for, so an agent is never used on a problem of another shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from controller.placement.placement import Placement, Step, place_sequentially
from controller.placement.problem import DEFAULT_TYPE_PROBABILITIES, Problem, Requests
from controller.placement.rl.agent import DoubleDQN, FrozenPolicy, ReplayBuffer
from controller.placement.rl.env import PlacementEnv, observation_size, observe, queue_of
from core.errors import InputError
from core.runstore import write_json_atomic
from core.validation import StrictModel

MONOLITHIC = "monolithic"


class TrainingSettings(StrictModel):
    """Hyperparameters (the paper's where its text kept them; see docs/placement.md for the chosen ones)."""

    episodes: int = Field(1000, ge=1, le=1_000_000, description="episodes per agent")
    batch_size: int = Field(64, ge=1, le=4096)
    buffer_size: int = Field(10_000, ge=1, le=10_000_000)
    sync_every: int = Field(200, ge=1, description="updates between target-network copies")
    gamma: float = Field(0.9, ge=0, lt=1)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    epsilon_start: float = Field(1.0, ge=0, le=1)
    epsilon_end: float = Field(0.02, ge=0, le=1)
    epsilon_decay: float = Field(0.6, gt=0, le=1, description="fraction of the episodes epsilon decays over")
    hidden: dict[str, list[int]] = Field(default_factory=lambda: {
        "embb": [128, 128, 128], "urllc": [128, 128, 128], "mmtc": [256, 256, 256], MONOLITHIC: [128, 128, 128]})
    resource_penalty: float = Field(10, gt=0, description="eq. (9): penalty for a tier without room")
    cost_reward: float = Field(5, gt=0, description="eq. (10): reward for the cheapest tier (0 on the dearest)")
    max_queue: int = Field(8, ge=1, le=100, description="most slices queued in one training episode")
    train_every: int = Field(2, ge=1, description="environment steps per gradient step")
    checkpoint_every: int = Field(250, ge=1)
    seed: int = 0
    threads: int = Field(1, ge=1, le=64, description="torch CPU threads")

    @classmethod
    def quick(cls, **fields: Any) -> TrainingSettings:
        """The CI-sized budget: short training of small networks (same code paths)."""
        small = [64, 64]
        return cls(**{"episodes": 150, "checkpoint_every": 50, "sync_every": 100, "hidden": {
            "embb": small, "urllc": small, "mmtc": small, MONOLITHIC: small}, **fields})

    def hidden_for(self, name: str) -> list[int]:
        return self.hidden.get(name, [128, 128, 128])


class TrainedAgent:
    """An agent and the problem shape it was trained for."""

    def __init__(self, name: str, dqn: DoubleDQN, meta: dict[str, Any]) -> None:
        self.name, self.dqn, self.meta = name, dqn, meta
        self.policy = FrozenPolicy(dqn.online)


def _shape(problem: Problem) -> dict[str, Any]:
    return {"tiers": list(problem.tiers), "vnfs": list(problem.vnfs), "types": list(problem.types)}


def agent_names(problem: Problem) -> list[str]:
    """The per-type agents' names (the slice types) and the monolithic agent's."""
    return [*problem.types, MONOLITHIC]


def _new_agent(problem: Problem, name: str, settings: TrainingSettings) -> DoubleDQN:
    return DoubleDQN(observation_size(problem, name == MONOLITHIC), problem.n_tiers, settings.hidden_for(name),
                     settings.learning_rate, settings.gamma, settings.sync_every)


def _environment(problem: Problem, name: str, settings: TrainingSettings) -> PlacementEnv:
    if name == MONOLITHIC:
        weights = np.array([DEFAULT_TYPE_PROBABILITIES.get(t, 0.0) for t in problem.types])
        return PlacementEnv(problem, list(range(len(problem.types))), True, settings.resource_penalty,
                            settings.cost_reward, settings.max_queue,
                            weights / weights.sum() if weights.sum() > 0 else None)
    return PlacementEnv(problem, [problem.type_index(name)], False, settings.resource_penalty, settings.cost_reward,
                        settings.max_queue)


def train_agent(problem: Problem, name: str, settings: TrainingSettings, out_dir: Path,
                on_episode: Callable[[int], None] = lambda _episode: None) -> dict[str, Any]:
    """Train (or resume) agent ``name`` (a slice type, or ``monolithic``) and save ``out_dir/<name>.pt``.

    Returns the training summary: episodes, seconds, mean reward of the last tenth of the episodes.
    """
    torch.set_num_threads(settings.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.pt"
    seed = settings.seed + agent_names(problem).index(name)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dqn = _new_agent(problem, name, settings)
    env = _environment(problem, name, settings)
    buffer = ReplayBuffer(settings.buffer_size, observation_size(problem, name == MONOLITHIC), problem.n_tiers)
    first, rewards, seconds, steps = 0, [], 0.0, 0
    if path.exists():
        state = _read(path)
        if _comparable(state["meta"].get("settings", {})) != _comparable(settings.model_dump(mode="json")) or \
                state["meta"]["shape"] != _shape(problem):
            raise InputError(f"{path}: an agent trained with other settings or for another problem is there; "
                             "choose another --out directory")
        dqn.load_state_dict(state["dqn"])
        if state["meta"]["finished"]:
            return state["meta"]["summary"]
        buffer.load_state_dict(state["buffer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        first, rewards, seconds = state["meta"]["episode"], state["rewards"], state["meta"]["seconds"]
        steps = state["meta"]["steps"]
    started = time.perf_counter() - seconds
    for episode in range(first, settings.episodes):
        epsilon = _epsilon(settings, episode)
        state_vector, total, done = env.reset(rng), 0.0, not env.queue
        while not done:
            action = dqn.explore(state_vector, epsilon, rng)
            next_vector, reward, done = env.step(action)
            next_mask = env.mask() if not done else np.zeros(problem.n_tiers, bool)
            buffer.add(state_vector, action, reward, next_vector, done, next_mask)
            state_vector, total, steps = next_vector, total + reward, steps + 1
            if buffer.size >= settings.batch_size and steps % settings.train_every == 0:
                dqn.learn(buffer.sample(settings.batch_size, rng))
        rewards.append(total)
        on_episode(episode + 1)
        finished = episode + 1 == settings.episodes
        if finished or (episode + 1) % settings.checkpoint_every == 0:
            summary = {"agent": name, "episodes": episode + 1, "steps": steps, "seconds": time.perf_counter() - started,
                       "final_reward": float(np.mean(rewards[-max(1, len(rewards) // 10):]))}
            _save(path, problem, name, settings, dqn, buffer, rng, rewards, summary, finished)
    return summary


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings that change what is learned (the thread count does not)."""
    return {key: value for key, value in settings.items() if key != "threads"}


def _epsilon(settings: TrainingSettings, episode: int) -> float:
    progress = min(1.0, episode / max(1.0, settings.epsilon_decay * settings.episodes))
    return settings.epsilon_start + (settings.epsilon_end - settings.epsilon_start) * progress


def _save(path: Path, problem: Problem, name: str, settings: TrainingSettings, dqn: DoubleDQN, buffer: ReplayBuffer,
          rng: np.random.Generator, rewards: list[float], summary: dict[str, Any], finished: bool) -> None:
    meta = {"agent": name, "shape": _shape(problem), "settings": settings.model_dump(mode="json"),
            "hidden": settings.hidden_for(name), "episode": summary["episodes"], "steps": summary["steps"],
            "seconds": summary["seconds"],
            "finished": finished, "summary": summary}
    state = {"meta": meta, "dqn": dqn.state_dict(), "rewards": rewards}
    if not finished:  # what resuming needs; a finished agent keeps only its networks
        state |= {"buffer": buffer.state_dict(), "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
    partial = path.with_suffix(".pt.partial")
    torch.save(state, partial)
    partial.replace(path)
    if finished:
        write_json_atomic(path.with_suffix(".json"), meta)


def _read(path: Path) -> dict[str, Any]:
    try:  # weights_only: an agent file holds tensors and plain data, and loading runs no pickled code
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated, foreign or unsafe file: torch raises many kinds
        raise InputError(f"{path}: not a slicebed placement agent ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "meta" not in state or "dqn" not in state:
        raise InputError(f"{path}: not a slicebed placement agent")
    return state


def load_agents(problem: Problem, directory: Path, names: list[str] | None = None) -> dict[str, TrainedAgent]:
    """The trained agents in ``directory`` (default: every per-type agent and the monolithic one).

    InputError when one is missing, unfinished, or was trained for other tiers, VNFs or slice types.
    """
    agents = {}
    for name in names or agent_names(problem):
        path = directory / f"{name}.pt"
        if not path.is_file():
            raise InputError(f"{path}: no trained agent {name!r}; train with `slicebed place train --out {directory}`")
        state = _read(path)
        meta, shape = state["meta"], _shape(problem)
        if len(meta["shape"]["tiers"]) != problem.n_tiers:
            raise InputError(f"{path}: agent {name} was trained for {len(meta['shape']['tiers'])} tiers "
                             f"({', '.join(meta['shape']['tiers'])}); this problem has {problem.n_tiers} "
                             f"({', '.join(problem.tiers)}); retrain it")
        for key in ("tiers", "vnfs", "types"):
            if meta["shape"][key] != shape[key]:
                raise InputError(f"{path}: agent {name} was trained for {key} {', '.join(meta['shape'][key])}; this "
                                 f"problem has {', '.join(shape[key])}; retrain it")
        if not meta["finished"]:
            raise InputError(f"{path}: agent {name} stopped after {meta['episode']} episodes; finish it with "
                             "`slicebed place train` on the same --out")
        dqn = DoubleDQN(observation_size(problem, name == MONOLITHIC), problem.n_tiers, meta["hidden"],
                        meta["settings"]["learning_rate"], meta["settings"]["gamma"], meta["settings"]["sync_every"])
        dqn.load_state_dict(state["dqn"])
        dqn.online.eval()
        agents[name] = TrainedAgent(name, dqn, meta)
    return agents


def place_with_agents(problem: Problem, requests: Requests, agents: dict[str, TrainedAgent], monolithic: bool,
                      method: str) -> Placement:
    """Place ``requests`` online: each slice by its type's agent (or all by the monolithic agent), VNF by VNF."""

    def choose(step: Step) -> int:
        agent = agents[MONOLITHIC] if monolithic else agents[problem.types[step.type_index]]
        waiting = [t for t in step.requests.types[step.slice_index:] if monolithic or t == step.type_index]
        state = observe(problem, step.occupancy, step.type_index, step.vnf, step.partial,
                        queue_of(problem, waiting), monolithic)
        return agent.policy.greedy(state, step.fits)

    return place_sequentially(problem, requests, method, choose)
