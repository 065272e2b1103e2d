"""The slice resource-allocation problem (MicroOpt eq. 2) and its exact evaluation on slice models.

Resources are ``RESOURCES`` = (CPU millicores, transport bandwidth Mbps). Allocations are tensors whose
last dimension is the resource and whose second-to-last is the slice, so any number of candidate
allocations (random starts, grid points) is evaluated in one batched pass per distinct slice model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from analysis.slice_model import SIGMA_FLOOR, SliceModel
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


@dataclass(frozen=True)
class FoldedSliceModel:
    """A slice model's evaluation-mode forward as a few plain tensor operations.

    BatchNorm is folded into the first linear layer, whose weights are kept per input feature so the
    caller can add the per-feature terms itself; the mean and std heads are merged into one layer of
    concatenated units and one block-diagonal output layer. Outputs equal ``SliceModel.forward``.
    """

    first_weight: torch.Tensor  # (3, H), rows in FEATURES order
    first_bias: torch.Tensor  # (H,)
    hidden: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (H, H) weights applied as x @ W, biases
    head_weight: torch.Tensor  # (H, 2 * head_width)
    head_bias: torch.Tensor
    out_weight: torch.Tensor  # (2 * head_width, 2): column 0 the mean, column 1 the std pre-activation
    out_bias: torch.Tensor
    low: float
    span: float

    @classmethod
    @torch.no_grad()
    def fold(cls, model: SliceModel) -> FoldedSliceModel:
        """Fold ``model`` (evaluation mode: BatchNorm uses its running statistics)."""
        norm, *layers = model.shared
        linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        shift = norm.bias - norm.running_mean * scale
        first = linears[0]
        mean_hidden, _, mean_out = model.mean_head
        std_hidden, _, std_out, _ = model.std_head
        width = mean_hidden.out_features
        out_weight = torch.zeros(2 * width, 2, dtype=first.weight.dtype, device=first.weight.device)
        out_weight[:width, 0] = mean_out.weight[0]
        out_weight[width:, 1] = std_out.weight[0]
        return cls(
            first_weight=(first.weight * scale).T.contiguous(),
            first_bias=first.bias + first.weight @ shift,
            hidden=tuple((layer.weight.T.contiguous(), layer.bias.clone()) for layer in linears[1:]),
            head_weight=torch.cat((mean_hidden.weight, std_hidden.weight)).T.contiguous(),
            head_bias=torch.cat((mean_hidden.bias, std_hidden.bias)),
            out_weight=out_weight,
            out_bias=torch.cat((mean_out.bias, std_out.bias)),
            low=model.scale.low,
            span=model.scale.span,
        )

    def from_first_layer(self, pre_activation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (Mbps) from the first layer's pre-activation (..., H)."""
        hidden = torch.relu(pre_activation)
        for weight, bias in self.hidden:
            hidden = torch.relu(torch.addmm(bias, hidden.reshape(-1, weight.shape[0]), weight))
        heads = torch.relu(torch.addmm(self.head_bias, hidden, self.head_weight))
        out = torch.addmm(self.out_bias, heads, self.out_weight)
        mean = out[:, 0] * self.span + self.low
        std = (functional.softplus(out[:, 1]) + SIGMA_FLOOR) * self.span
        shape = pre_activation.shape[:-1]
        return mean.reshape(shape), std.reshape(shape)


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
    """Each distinct model with the indices of the slices it serves."""
    folded_groups: list[tuple[FoldedSliceModel, torch.Tensor]] = field(init=False)
    """``model_groups`` folded for fast evaluation, same order."""
    first_layer: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = field(init=False)
    """Per slice, the first layer's constant term (users and bias, (S, T, H)) and its bandwidth and CPU
    weights ((S, 1, H) each), so an allocation's pre-activation is two multiply-adds."""

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
                (model.to(device).eval(), torch.as_tensor(indices, device=device))
                for model, indices in groups.values()
            ],
        )

    def __post_init__(self) -> None:
        """Fold the models: fill ``folded_groups`` and ``first_layer`` from ``model_groups``."""
        self.folded_groups = [(FoldedSliceModel.fold(model), indices) for model, indices in self.model_groups]
        n_slices, width = self.support.shape
        widths = {folded.first_bias.shape[0] for folded, _ in self.folded_groups}
        if len(widths) > 1:
            raise InputError(f"slices sharing one problem need slice models of one width, got widths {sorted(widths)}")
        hidden = widths.pop()
        constant = torch.empty(n_slices, width, hidden, device=self.support.device)
        bandwidth = torch.empty(n_slices, 1, hidden, device=self.support.device)
        cpu = torch.empty_like(bandwidth)
        for folded, indices in self.folded_groups:
            users_weight, bandwidth_weight, cpu_weight = folded.first_weight  # FEATURES: n_users, bw, cpu
            constant[indices] = self.support[indices, :, None] * users_weight + folded.first_bias
            bandwidth[indices] = bandwidth_weight
            cpu[indices] = cpu_weight
        self.first_layer = (constant, bandwidth, cpu)

    def qos_distribution(self, allocation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of QoS (Mbps) for allocations of shape (..., S, K), per traffic point: (..., S, T).

        Evaluates the folded models (equal to the slice models in evaluation mode); differentiable.
        """
        constant, bandwidth_weight, cpu_weight = self.first_layer
        pre_activation = (constant + allocation[..., 1, None, None] * bandwidth_weight
                          + allocation[..., 0, None, None] * cpu_weight)  # (..., S, T, H)
        if len(self.folded_groups) == 1:
            return self.folded_groups[0][0].from_first_layer(pre_activation)
        parts = [(indices, folded.from_first_layer(pre_activation[..., indices, :, :]))
                 for folded, indices in self.folded_groups]
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
