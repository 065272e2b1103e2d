"""The slice resource-allocation problem (MicroOpt eq. 2) and its exact evaluation on slice models.

Resources are ``RESOURCES`` = (CPU millicores, transport bandwidth Mbps). Allocations are tensors whose
last dimension is the resource and whose second-to-last is the slice, so any number of candidate
allocations (random starts, grid points) is evaluated in one batched pass per distinct slice model.

The QoS direction is the slice model's: for a higher-is-better QoS (throughput) a traffic slot degrades when
q <= q_thresh, for a lower-is-better one (delay) when q >= q_thresh.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special

from analysis.slice_model import SliceModel
from collectors.dataset import FEATURES
from controller.optimizer_settings import DEFAULT_ETA
from controller.support import narrowed, outside_data
from controller.traffic import TrafficDistribution
from core.errors import InputError

RESOURCES: tuple[str, str] = ("cpu_millicores", "bandwidth_mbps")
DATA_LOWER: tuple[float, float] = (500.0, 5.0)
DATA_UPPER: tuple[float, float] = (4000.0, 40.0)
"""The MicroOpt dataset's allocation range (Sec. V-D): the default bounds (cut further to a model's own data)."""
CAPACITY_RTOL = 1e-6
"""Relative tolerance of the shared-capacity constraints: sum_s r_s <= R (1 + CAPACITY_RTOL)."""


@dataclass(frozen=True)
class SliceProblem:
    """One slice: its model, traffic over the interval, QoS thresholds and resource bounds.

    By default the bounds are cut to the model's training data and traffic outside it is refused (one
    line, naming the range); with ``allow_extrapolation`` they stand, and answers outside the data are
    flagged ``extrapolated``.
    """

    name: str
    model: SliceModel
    traffic: TrafficDistribution
    q_thresh: float
    beta_thresh: float
    lower: tuple[float, float] = DATA_LOWER
    upper: tuple[float, float] = DATA_UPPER
    allow_extrapolation: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.beta_thresh < 1.0:
            raise InputError(f"slice {self.name}: beta_thresh must be in (0, 1), got {self.beta_thresh}")
        if self.q_thresh <= 0:
            raise InputError(f"slice {self.name}: q_thresh must be > 0 Mbps, got {self.q_thresh}")
        for resource, low, high in zip(RESOURCES, self.lower, self.upper, strict=True):
            if not 0 < low <= high:
                raise InputError(f"slice {self.name}: {resource} bounds must satisfy 0 < min <= max, "
                                 f"got [{low}, {high}]")
        if self.allow_extrapolation:
            return
        support = self.model.support
        users = self.traffic.support
        if users.min() < support.users[0] or users.max() > support.users[1]:
            raise InputError(f"slice {self.name}: traffic of {users.min():g}-{users.max():g} users/s lies outside the "
                             f"model's training data ({support.users[0]:g}-{support.users[1]:g} users/s); allow "
                             "extrapolation to solve it anyway")
        inside = narrowed(self.lower, self.upper, support)
        if inside is None:
            raise InputError(f"slice {self.name}: bounds {self.lower}-{self.upper} lie outside the model's training "
                             f"data (cpu {support.cpu[0]:g}-{support.cpu[1]:g} millicores, bandwidth "
                             f"{support.bandwidth[0]:g}-{support.bandwidth[1]:g} Mbps); allow extrapolation to "
                             "solve it anyway")
        object.__setattr__(self, "lower", inside[0])  # frozen: the bounds as given, cut to the data
        object.__setattr__(self, "upper", inside[1])

    @property
    def higher_is_better(self) -> bool:
        """Whether more QoS is better (throughput), as the slice model was trained; False for delay."""
        return self.model.higher_is_better

    def extrapolated(self, allocation: np.ndarray) -> bool:
        """Whether the slice model is asked outside its training data, at ``allocation`` (2,) or a traffic value."""
        return outside_data(self.model.support, allocation, self.traffic.support)


@dataclass(frozen=True)
class Problem:
    """Several slices sharing capacities ``capacity`` (None: unlimited), cost weights ``eta``."""

    slices: tuple[SliceProblem, ...]
    eta: tuple[float, float] = DEFAULT_ETA
    capacity: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.slices:
            raise InputError("a problem needs at least one slice")
        if any(weight <= 0 for weight in self.eta):
            raise InputError(f"eta weights must be > 0, got {self.eta}")
        if self.capacity is not None and any(value <= 0 for value in self.capacity):
            raise InputError(f"capacities R must be > 0, got {self.capacity}")


@dataclass
class ProblemTensors:
    """The problem's constants laid out as tensors for batched evaluation."""

    lower: torch.Tensor  # (S, K)
    upper: torch.Tensor  # (S, K)
    eta: torch.Tensor  # (K,)
    capacity: torch.Tensor | None  # (K,)
    support: torch.Tensor  # (S, T) users/s, padded
    weights: torch.Tensor  # (S, T) eq. (1) weights, zero on padding
    q_thresh: torch.Tensor  # (S,)
    beta_thresh: torch.Tensor  # (S,)
    direction: torch.Tensor  # (S,) +1 where higher QoS is better, -1 where lower is
    z: torch.Tensor  # (S,) Phi^-1(1 - beta_thresh)
    constant_traffic: torch.Tensor  # (S,) bool: one traffic value, so the constraint is deterministic
    model_groups: list[tuple[SliceModel, torch.Tensor]]
    """Each distinct model (a frozen copy in evaluation mode, in the tensors' dtype) with the indices of the
    slices it serves."""
    queries: int = 0
    """Slice allocations evaluated so far (exact queries of the slice models)."""

    @classmethod
    def build(cls, problem: Problem, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> ProblemTensors:
        """The problem on ``device`` in ``dtype`` (float32 to search; float64 to judge final answers)."""
        slices = problem.slices
        width = max(s.traffic.support.size for s in slices)
        support = np.ones((len(slices), width))
        weights = np.zeros((len(slices), width))
        for index, s in enumerate(slices):
            size = s.traffic.support.size
            support[index, :size] = s.traffic.support
            weights[index, :size] = s.traffic.degradation_weights()
        groups: dict[int, tuple[SliceModel, list[int]]] = {}
        for index, s in enumerate(slices):
            groups.setdefault(id(s.model), (s.model, []))[1].append(index)

        def tensor(values: object) -> torch.Tensor:
            return torch.as_tensor(np.asarray(values, dtype=np.float64), device=device, dtype=dtype)

        beta = np.array([s.beta_thresh for s in slices])
        return cls(
            lower=tensor([s.lower for s in slices]),
            upper=tensor([s.upper for s in slices]),
            eta=tensor(problem.eta),
            capacity=tensor(problem.capacity) if problem.capacity is not None else None,
            support=tensor(support),
            weights=tensor(weights),
            q_thresh=tensor([s.q_thresh for s in slices]),
            beta_thresh=tensor(beta),
            direction=tensor([1.0 if s.higher_is_better else -1.0 for s in slices]),
            z=tensor(special.ndtri(1.0 - beta)),
            constant_traffic=torch.as_tensor([s.traffic.support.size == 1 for s in slices], device=device),
            model_groups=[
                (_frozen(model, device, dtype), torch.as_tensor(indices, device=device))
                for model, indices in groups.values()
            ],
        )

    def qos_distribution(self, allocation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of QoS (Mbps) for allocations of shape (..., S, K), per traffic point: (..., S, T).

        Evaluates the slice models (evaluation mode); differentiable in the allocation.
        """
        self.queries += allocation[..., 0].numel()
        shape = (*allocation.shape[:-1], self.support.shape[-1])
        columns = {"n_users": self.support.expand(shape),
                   "bw": allocation[..., 1, None].expand(shape),
                   "cpu": allocation[..., 0, None].expand(shape)}
        inputs = torch.stack([columns[name] for name in FEATURES], -1)  # (..., S, T, 3)
        if len(self.model_groups) == 1:
            distribution: tuple[torch.Tensor, torch.Tensor] = self.model_groups[0][0](inputs)
            return distribution
        parts = [(indices, model(inputs[..., indices, :, :])) for model, indices in self.model_groups]
        order = torch.cat([indices for indices, _ in parts]).argsort()
        mean = torch.cat([part[0] for _, part in parts], dim=-2)[..., order, :]
        std = torch.cat([part[1] for _, part in parts], dim=-2)[..., order, :]
        return mean, std

    def degradation_from(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Exact expected degradation of eq. (1), (..., S): the model's QoS is Gaussian, so the probability
        that a slot degrades, P(q <= q_thresh) (P(q >= q_thresh) for a lower-is-better QoS), is a normal CDF."""
        degraded: torch.Tensor = torch.special.ndtr(self.direction[:, None] * (self.q_thresh[:, None] - mean) / std)
        return (degraded * self.weights).sum(-1)

    def margin(self, allocation: torch.Tensor) -> torch.Tensor:
        """How far allocations (..., S, K) are inside each slice's QoS constraint, (..., S); >= 0 when met.

        Under constant traffic E[beta] <= beta_thresh is the deterministic constraint
        mu - z sigma >= q_thresh (mu + z sigma <= q_thresh for a lower-is-better QoS), z = Phi^-1(1 - beta),
        and the margin is its slack in QoS units; otherwise it is beta_thresh - E[beta].
        """
        mean, std = self.qos_distribution(allocation)
        deterministic = self.direction * (mean[..., 0] - self.q_thresh) - self.z * std[..., 0]
        distribution = self.beta_thresh - self.degradation_from(mean, std)
        return torch.where(self.constant_traffic, deterministic, distribution)

    def expected_degradation(self, allocation: torch.Tensor) -> torch.Tensor:
        """Exact expected degradation E[beta] per slice for allocations (..., S, K)."""
        return self.degradation_from(*self.qos_distribution(allocation))

    def cost(self, allocation: torch.Tensor) -> torch.Tensor:
        """Objective sum_s eta^T r_s for allocations (..., S, K)."""
        return (allocation * self.eta).sum((-1, -2))

    def capacity_excess(self, allocation: torch.Tensor) -> torch.Tensor:
        """sum_s r_s - R per resource, (..., K); zeros when capacities are unlimited."""
        total = allocation.sum(-2)
        return total - self.capacity if self.capacity is not None else torch.zeros_like(total)

    def within_capacity(self, allocation: torch.Tensor) -> torch.Tensor:
        """Whether allocations (..., S, K) respect every shared capacity, up to ``CAPACITY_RTOL``, (...)."""
        if self.capacity is None:
            return torch.ones(allocation.shape[:-2], dtype=torch.bool, device=allocation.device)
        return (self.capacity_excess(allocation) <= CAPACITY_RTOL * self.capacity).all(-1)

    def feasible(self, degradation: torch.Tensor, allocation: torch.Tensor) -> torch.Tensor:
        """Strict feasibility (..,): every slice within beta_thresh and every capacity respected."""
        return (degradation <= self.beta_thresh).all(-1) & self.within_capacity(allocation)

    def violation(self, degradation: torch.Tensor, allocation: torch.Tensor) -> torch.Tensor:
        """Total constraint violation (..,), in degradation units plus capacity overflow relative to R."""
        qos = (degradation - self.beta_thresh).clamp(min=0).sum(-1)
        if self.capacity is None:
            return qos
        return qos + (self.capacity_excess(allocation) / self.capacity).clamp(min=0).sum(-1)


def _frozen(model: SliceModel, device: torch.device | str, dtype: torch.dtype) -> SliceModel:
    """A copy of ``model`` on ``device`` in ``dtype`` and evaluation mode whose weights take no gradient (the
    optimizers differentiate with respect to allocations only), leaving the caller's model as it was."""
    return copy.deepcopy(model).to(device=device, dtype=dtype).eval().requires_grad_(False)
