"""CaDRL and CaDRL+ (MicroOpt Sec. VI-A2, after Liu et al., ref. [13]): constrained deep RL with
interior-point policy optimization (IPO) on the slice-model environment.

Environment: one reconfiguration interval is one step. The state describes the interval's traffic
distribution (mean, std and peak users/s, over 5); the action is the slice's allocation scaled to
[0, 1] per resource (a Gaussian policy, clipped to the bounds); the reward is -eta^T r and the
constraint cost is the expected degradation of eq. (1) under the state's traffic, queried from the
slice model. The SLA (q_thresh, beta_thresh) is fixed per policy: a new SLA needs a new policy.

IPO maximizes the PPO clipped surrogate of the reward plus a logarithmic barrier
(1/t) log(beta_thresh - J_C) per training traffic distribution, J_C being the importance-weighted
estimate of the policy's expected cost in that state; below a margin the barrier continues linearly.
In a state where the sampled actions break the constraint on average, the policy only minimizes the
cost surrogate until it is feasible again (the barrier is undefined there); each batch's gradient
steps stop early once the policy has moved past ``target_kl`` (PPO's usual guard). The states of one
step are independent, so the baseline of the advantages is the mean reward of the actions sampled in
the same state.

CaDRL trains one policy per SLA to generalize over random traffic distributions (constant and
truncated normal on [1, 5] users/s) and reuses it for every problem with that SLA (cached in the
process); CaDRL+ trains from scratch on the predicted distribution of each problem, so its solve
time includes the training. The deployed action is the policy's mean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from controller.optimizers.base import Solution, finalize
from controller.problem import Problem, ProblemTensors, SliceProblem
from controller.traffic import TrafficDistribution, constant, truncated_normal
from core.validation import StrictModel

USERS_LOW, USERS_HIGH = 1.0, 5.0
"""The users/s range of the generalist policy's training distributions (the dataset's range)."""


class CaDRLSettings(StrictModel):
    """Training budget and hyper-parameters of IPO."""

    traffic: Literal["general", "predicted"] = Field(
        "general", description="general: CaDRL, one policy per SLA over random traffic; predicted: CaDRL+")
    iterations: int = Field(1000, ge=1, description="policy updates (each on a fresh batch)")
    training_states: int = Field(32, ge=1, description="random traffic distributions trained on (CaDRL)")
    batch: int = Field(512, ge=2, description="actions sampled per iteration, spread evenly over the states")
    epochs: int = Field(4, ge=1, description="gradient steps per batch")
    clip: float = Field(0.2, gt=0, description="PPO ratio clip")
    barrier_t: float = Field(20.0, gt=0, description="IPO barrier parameter t (larger: closer to the boundary)")
    barrier_margin: float = Field(0.1, gt=0, lt=1, description="share of beta_thresh below which the barrier "
                                  "continues linearly")
    target_kl: float = Field(0.02, gt=0, description="stop a batch's gradient steps past this approximate KL")
    lr: float = Field(3e-3, gt=0, description="first Adam step of the policy, annealed linearly to 0")
    max_grad_norm: float = Field(0.5, gt=0, description="gradient-norm clip of each step")
    hidden: int = Field(64, ge=1)
    initial_log_std: float = Field(-1.5, description="log std of the Gaussian policy at the start and its "
                                   "maximum (unit scale): exploration may only narrow, so the policy cannot "
                                   "turn into a spread of clipped actions that its mean does not represent")
    max_std: float = Field(2.0, gt=0, description="largest traffic std of the training distributions, users/s")
    seed: int = 0


@dataclass
class TrainedPolicy:
    """A trained policy network and what training it cost."""

    network: torch.nn.Module
    train_seconds: float

    @torch.no_grad()
    def act(self, traffic: TrafficDistribution) -> np.ndarray:
        """The deployed (mean) action for ``traffic``: unit-scaled allocation (2,)."""
        return torch.sigmoid(self.network(state_of([traffic])))[0].numpy().astype(np.float64)


_GENERAL_POLICIES: dict[tuple[object, ...], TrainedPolicy] = {}
"""CaDRL's per-SLA policies, trained once per process (keyed by model, SLA, bounds, eta and settings;
the key holds the model, so a new model object never reuses another's policy)."""


def state_of(traffics: list[TrafficDistribution]) -> torch.Tensor:
    """Policy input per traffic distribution: mean, std and peak users/s over ``USERS_HIGH`` (N, 3)."""
    rows = []
    for traffic in traffics:
        std = float(np.sqrt(traffic.probabilities @ (traffic.support - traffic.mean) ** 2))
        rows.append((traffic.mean, std, float(traffic.support.max())))
    return torch.tensor(rows, dtype=torch.float32) / USERS_HIGH


def training_distributions(count: int, max_std: float, generator: np.random.Generator) -> list[TrafficDistribution]:
    """CaDRL's training traffic: half constant, half truncated normal on [1, 5] users/s, random parameters."""
    distributions = []
    for index in range(count):
        centre = float(generator.uniform(USERS_LOW, USERS_HIGH))
        if index % 2 == 0:
            distributions.append(constant(centre))
        else:
            std = float(generator.uniform(0.1, max_std))
            distributions.append(truncated_normal(centre, std, USERS_LOW, USERS_HIGH))
    return distributions


def train_policy(template: SliceProblem, eta: tuple[float, float], traffics: list[TrafficDistribution],
                 settings: CaDRLSettings, device: torch.device | str = "cpu") -> TrainedPolicy:
    """Train an IPO policy for ``template``'s SLA and bounds over the traffic distributions ``traffics``."""
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    environment = ProblemTensors.build(Problem(tuple(
        replace(template, name=f"state-{index}", traffic=traffic) for index, traffic in enumerate(traffics)),
        eta=eta), device)
    states = state_of(traffics)
    network = torch.nn.Sequential(torch.nn.Linear(3, settings.hidden), torch.nn.Tanh(),
                                  torch.nn.Linear(settings.hidden, settings.hidden), torch.nn.Tanh(),
                                  torch.nn.Linear(settings.hidden, 2))
    log_std = torch.nn.Parameter(torch.full((2,), settings.initial_log_std))
    parameters = [*network.parameters(), log_std]
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    # PPO's usual schedule: the step anneals linearly to zero, so late updates cannot undo the policy
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: 1 - done / settings.iterations)
    beta = float(template.beta_thresh)

    def current() -> torch.distributions.Normal:
        """The policy's action distribution in every state (unit scale), std capped at its initial value."""
        return torch.distributions.Normal(torch.sigmoid(network(states)),
                                          log_std.clamp(max=settings.initial_log_std).exp())

    for _ in range(settings.iterations):
        with torch.no_grad():
            policy = current()
            actions = policy.sample((max(2, settings.batch // len(traffics)),))  # (A, N, 2)
            old_log_prob = policy.log_prob(actions).sum(-1)
            reward, cost = _step(environment, actions.clamp(0.0, 1.0))
        advantage = reward - reward.mean(0)
        cost_advantage = cost - cost.mean(0)
        infeasible = cost.mean(0) >= beta  # (N,) states where the policy breaks the constraint: recover first
        for _ in range(settings.epochs):
            policy = current()
            log_prob = policy.log_prob(actions).sum(-1)
            ratio = (log_prob - old_log_prob).exp()
            clipped = ratio.clamp(1 - settings.clip, 1 + settings.clip)
            reward_objective = torch.minimum(ratio * advantage, clipped * advantage).mean(0)  # (N,)
            cost_surrogate = torch.maximum(ratio * cost_advantage, clipped * cost_advantage).mean(0)
            barrier = _barrier(beta - cost.mean(0) - cost_surrogate, beta * settings.barrier_margin,
                               settings.barrier_t)
            objective = torch.where(infeasible, -cost_surrogate, reward_objective + barrier)
            optimizer.zero_grad(set_to_none=True)
            (-objective.mean()).backward()
            torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
            optimizer.step()
            if (old_log_prob - log_prob).mean().item() > settings.target_kl:
                break  # PPO's early stop: the policy moved far enough from the one that sampled the batch
        schedule.step()
    return TrainedPolicy(network.eval(), time.perf_counter() - started)


def _step(environment: ProblemTensors, unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward -eta^T r and cost E[beta] of unit-scaled actions (A, N, 2), one state per slice: (A, N) each."""
    allocation = environment.lower + unit.to(environment.lower.device) * (environment.upper - environment.lower)
    cost = environment.expected_degradation(allocation)
    return -(allocation @ environment.eta).cpu(), cost.cpu()


def _barrier(slack: torch.Tensor, margin: float, t: float) -> torch.Tensor:
    """IPO's log barrier log(slack) / t, continued by its tangent below ``margin`` (so infeasible is finite)."""
    safe = slack.clamp(min=margin)
    return torch.where(slack >= margin, torch.log(safe), np.log(margin) + (slack - margin) / margin) / t


def policy_for(slice_problem: SliceProblem, eta: tuple[float, float], settings: CaDRLSettings,
               device: torch.device | str = "cpu") -> TrainedPolicy:
    """CaDRL's generalist policy for this slice's SLA (trained on first use), or CaDRL+'s for its traffic."""
    if settings.traffic == "predicted":
        return train_policy(slice_problem, eta, [slice_problem.traffic], settings, device)
    key = (slice_problem.model, slice_problem.q_thresh, slice_problem.beta_thresh, slice_problem.lower,
           slice_problem.upper, eta, settings)
    if key not in _GENERAL_POLICIES:
        traffics = training_distributions(settings.training_states, settings.max_std,
                                          np.random.default_rng(settings.seed))
        _GENERAL_POLICIES[key] = train_policy(slice_problem, eta, traffics, settings, device)
    return _GENERAL_POLICIES[key]


def solve_cadrl(problem: Problem, settings: CaDRLSettings | None = None,
                device: torch.device | str = "cpu") -> Solution:
    """CaDRL (``traffic='general'``) or CaDRL+ (``traffic='predicted'``): each slice's policy action.

    ``seconds`` covers what this call did: for CaDRL+ the training and the inference, for CaDRL the
    inference plus the policy's training only when this call trained it (see ``policy_for``).
    """
    settings = settings or CaDRLSettings()
    started = time.perf_counter()
    allocation = np.zeros((len(problem.slices), 2))
    for index, slice_problem in enumerate(problem.slices):
        unit = policy_for(slice_problem, problem.eta, settings, device).act(slice_problem.traffic)
        lower, upper = np.asarray(slice_problem.lower), np.asarray(slice_problem.upper)
        allocation[index] = lower + unit * (upper - lower)
    method = "cadrl" if settings.traffic == "general" else "cadrl+"
    return finalize(problem, allocation, method, started, settings.iterations)
