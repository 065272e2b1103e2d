"""A replay QoS source drawing from a slice model (kept apart from ``replay`` so that replaying a dataset
needs no torch)."""

from __future__ import annotations

import numpy as np
import torch

from analysis.slice_model import SliceModel
from controller.testbeds.base import Allocation


class ModelQosSource:
    """Per-user QoS drawn from a slice model's predicted Gaussian (clipped at zero)."""

    def __init__(self, model: SliceModel) -> None:
        self.model = model.eval()

    @torch.no_grad()
    def draw(self, users: int, allocation: Allocation, count: int, rng: np.random.Generator) -> np.ndarray:
        inputs = torch.tensor([[users, allocation.bandwidth_mbps, allocation.cpu_millicores]], dtype=torch.float32)
        mean, std = self.model(inputs)
        return rng.normal(mean.item(), std.item(), size=count).clip(min=0.0)
