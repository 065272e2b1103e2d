"""The exact multiple-choice knapsack that couples slices through shared CPU and bandwidth capacities.

Each slice picks one point of its CPU-bandwidth frontier: CPU ``lower + step * units`` and the least
bandwidth meeting its QoS there. For a given total CPU, the cheapest and the least bandwidth-hungry choice
are the same one (the cost is linear in the totals), so a dynamic program over the CPU spent that keeps the
least total bandwidth per amount is exact on the grid for both capacities at once.
"""

from __future__ import annotations

import torch


def least_total_bandwidth(units: torch.Tensor, bandwidth: torch.Tensor,
                          budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic program over slices: the least total bandwidth for each total of CPU units.

    Args:
        units: (S, C) CPU units of each slice's choices (>= 0).
        bandwidth: (S, C) bandwidth of each choice; inf where the choice is not allowed.
        budget: the most CPU units the slices may spend together.

    Returns:
        ``least`` (budget + 1,): the least total bandwidth spending exactly that many units (inf: none), and
        ``choice`` (S, budget + 1): the choice of each slice on the way to each total, for :func:`backtrack`.
    """
    spent = torch.arange(budget + 1, device=units.device)
    least = torch.full((budget + 1,), torch.inf, dtype=bandwidth.dtype, device=units.device)
    least[0] = 0.0
    choices = []
    for slice_units, slice_bandwidth in zip(units, bandwidth, strict=True):
        before = spent[:, None] - slice_units[None, :]  # (budget + 1, C): units spent by the earlier slices
        total = least[before.clamp(min=0)] + slice_bandwidth[None, :]
        total = torch.where(before >= 0, total, torch.inf)
        least, choice = total.min(1)
        choices.append(choice)
    return least, torch.stack(choices)


def backtrack(units: torch.Tensor, choice: torch.Tensor, total: int) -> torch.Tensor:
    """Each slice's choice index (S,) on the way to ``total`` units, from :func:`least_total_bandwidth`'s choices."""
    picked = torch.empty(units.shape[0], dtype=torch.long, device=units.device)
    for index in range(units.shape[0] - 1, -1, -1):
        picked[index] = choice[index, total]
        total -= int(units[index, picked[index]])
    return picked
