"""Training the paper's slice model: mini-batches of rows, Gaussian NLL, the paper's learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable

import torch

from analysis.evaluation import metrics_from_tensors
from analysis.paper_model import PaperModel

StepCallback = Callable[[float], None]
"""Called with the epoch's mean training loss after each epoch."""


def fit_paper(model: PaperModel, inputs: torch.Tensor, target: torch.Tensor, epochs: int, learning_rate: float,
              drop_epoch: int, batch_size: int, seed: int, after_epoch: StepCallback,
              validation: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place with Adam on shuffled mini-batches (lr divided by ten after ``drop_epoch``).

    Returns the loss history every 50 epochs (train NLL and, given ``validation``, validation NLL).
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[drop_epoch], gamma=0.1)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    history: list[dict[str, float]] = []
    n_rows = inputs.shape[0]
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n_rows, generator=generator).to(inputs.device)
        total = 0.0
        for start in range(0, n_rows, batch_size):
            batch = order[start : start + batch_size]
            if batch.numel() < 2:
                continue
            loss = model.gaussian_nll(inputs[batch], target[batch]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * batch.numel()
        schedule.step()
        train_loss = total / n_rows
        if epoch % 50 == 0 or epoch == epochs:
            model.eval()
            record = {"epoch": float(epoch), "train_nll_normalized": train_loss}
            if validation is not None:
                record["validation_nll_normalized"] = metrics_from_tensors(model, *validation).nll_normalized
            history.append(record)
        after_epoch(train_loss)
    model.eval()
    return history
