"""The slice resource-allocation problem (MicroOpt eq. 2) and its exact evaluation on slice models.

Resources are ``RESOURCES`` = (CPU millicores, transport bandwidth Mbps). Allocations are tensors whose
last dimension is the resource and whose second-to-last is the slice, so any number of candidate
allocations (random starts, grid points) is evaluated in one batched pass per distinct slice model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from analysis.slice_model import SliceModel
from collectors.dataset import FEATURES
from controller.optimizer_settings import DEFAULT_ETA
from controller.traffic import TrafficDistribution
from core.errors import InputError

RESOURCES: tuple[str, str] = ("cpu_millicores", "bandwidth_mbps")


@dataclass(frozen=True)
class SliceProblem:
    """One slice: its model, traffic over the interval, QoS thresholds and resource bounds."""

    name: str
    model: SliceModel
    traffic: TrafficDistribution
    q_thresh: float
    beta_thresh: float
    lower: tuple[float, float] = (500.0, 5.0)
    upper: tuple[float, float] = (4500.0, 50.0)

    def __post_init__(self) -> None:
        if not 0.0 < self.beta_thresh < 1.0:
            raise InputError(f"slice {self.name}: beta_thresh must be in (0, 1), got {self.beta_thresh}")
        if self.q_thresh <= 0:
            raise InputError(f"slice {self.name}: q_thresh must be > 0 Mbps, got {self.q_thresh}")
        for resource, low, high in zip(RESOURCES, self.lower, self.upper, strict=True):
            if not 0 < low <= high:
                raise InputError(f"slice {self.name}: {resource} bounds must satisfy 0 < min <= max, "
                                 f"got [{low}, {high}]")


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
    model_groups: list[tuple[SliceModel, torch.Tensor]]
    """Each distinct model (a frozen copy in evaluation mode) with the indices of the slices it serves."""

    @classmethod
    def build(cls, problem: Problem, device: torch.device | str = "cpu") -> ProblemTensors:
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
            return torch.as_tensor(np.asarray(values, dtype=np.float32), device=device)

        return cls(
            lower=tensor([s.lower for s in slices]),
            upper=tensor([s.upper for s in slices]),
            eta=tensor(problem.eta),
            capacity=tensor(problem.capacity) if problem.capacity is not None else None,
            support=tensor(support),
            weights=tensor(weights),
            q_thresh=tensor([s.q_thresh for s in slices]),
            beta_thresh=tensor([s.beta_thresh for s in slices]),
            model_groups=[
                (_frozen(model, device), torch.as_tensor(indices, device=device)) for model, indices in groups.values()
            ],
        )

    def qos_distribution(self, allocation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of QoS (Mbps) for allocations of shape (..., S, K), per traffic point: (..., S, T).

        Evaluates the slice models (evaluation mode); differentiable in the allocation.
        """
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
        """Exact expected degradation of eq. (1), (..., S): the model's QoS is Gaussian, so
        P(q <= q_thresh) is the normal CDF."""
        below = torch.special.ndtr((self.q_thresh[:, None] - mean) / std)
        return (below * self.weights).sum(-1)

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

    def feasible(self, degradation: torch.Tensor, allocation: torch.Tensor) -> torch.Tensor:
        """Strict feasibility (..,): every slice within beta_thresh and every capacity respected."""
        meets_qos = (degradation <= self.beta_thresh).all(-1)
        return meets_qos & (self.capacity_excess(allocation) <= 1e-6).all(-1)

    def violation(self, degradation: torch.Tensor, allocation: torch.Tensor) -> torch.Tensor:
        """Total constraint violation (..,), in degradation units plus capacity overflow relative to R."""
        qos = (degradation - self.beta_thresh).clamp(min=0).sum(-1)
        if self.capacity is None:
            return qos
        return qos + (self.capacity_excess(allocation) / self.capacity).clamp(min=0).sum(-1)


def _frozen(model: SliceModel, device: torch.device | str) -> SliceModel:
    """A copy of ``model`` on ``device`` in evaluation mode whose weights take no gradient (the optimizers
    differentiate with respect to allocations only), leaving the caller's model as it was."""
    return copy.deepcopy(model).to(device).eval().requires_grad_(False)
