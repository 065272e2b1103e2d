"""Double DQN (Sec. III-C, eqs. 13-19): an online and a target Q-network, experience replay, MSE loss.

The target of eq. (17)-(19): the online network picks the next action, the target network values it; the target
network copies the online one every ``sync_every`` updates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def q_network(inputs: int, hidden: list[int], actions: int) -> nn.Sequential:
    """An MLP with ReLU activations (the paper: three hidden layers of 128 or 256)."""
    layers: list[nn.Module] = []
    width = inputs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, actions))
    return nn.Sequential(*layers)


class ReplayBuffer:
    """A ring buffer of transitions (state, action, reward, next state, done, next state's valid actions)."""

    def __init__(self, capacity: int, state_size: int, actions: int) -> None:
        self.capacity, self.size, self.position = capacity, 0, 0
        self.states = np.zeros((capacity, state_size), np.float32)
        self.next_states = np.zeros((capacity, state_size), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.dones = np.zeros(capacity, np.float32)
        self.next_masks = np.zeros((capacity, actions), bool)

    def add(self, state: np.ndarray, action: int, reward: float, next_state: np.ndarray, done: bool,
            next_mask: np.ndarray) -> None:
        i = self.position
        self.states[i], self.actions[i], self.rewards[i] = state, action, reward
        self.next_states[i], self.dones[i], self.next_masks[i] = next_state, float(done), next_mask
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        index = rng.integers(0, self.size, batch)
        return tuple(torch.from_numpy(array[index]) for array in (
            self.states, self.actions, self.rewards, self.next_states, self.dones, self.next_masks))

    ARRAYS = ("states", "next_states", "actions", "rewards", "dones", "next_masks")

    def state_dict(self) -> dict[str, Any]:
        """The buffer as tensors and integers (loadable with ``torch.load(weights_only=True)``)."""
        return {"size": self.size, "position": self.position,
                **{name: torch.from_numpy(getattr(self, name)) for name in self.ARRAYS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size, self.position = state["size"], state["position"]
        for name in self.ARRAYS:
            setattr(self, name, state[name].numpy())


class FrozenPolicy:
    """The online network's weights as numpy arrays, for placement decisions.

    One state at a time through a small MLP is dominated by torch's per-call overhead; the same arithmetic in
    numpy takes microseconds, which is what the decision-time comparison with the ILP should measure.
    """

    def __init__(self, network: nn.Sequential) -> None:
        self.layers = [(layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy())
                       for layer in network if isinstance(layer, nn.Linear)]

    def values(self, state: np.ndarray) -> np.ndarray:
        """Q-values of every action in ``state``."""
        x = state
        for weight, bias in self.layers[:-1]:
            x = np.maximum(x @ weight + bias, 0.0)
        weight, bias = self.layers[-1]
        return x @ weight + bias

    def greedy(self, state: np.ndarray, mask: np.ndarray) -> int:
        """The valid action with the largest Q-value (decisions never ask for a tier without room)."""
        return int(np.argmax(np.where(mask, self.values(state), -np.inf)))


class DoubleDQN:
    """One agent: online and target networks, Adam, and the double-Q update."""

    def __init__(self, state_size: int, actions: int, hidden: list[int], learning_rate: float, gamma: float,
                 sync_every: int) -> None:
        self.online = q_network(state_size, hidden, actions)
        self.target = q_network(state_size, hidden, actions)
        self.target.load_state_dict(self.online.state_dict())
        self.target.eval()
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=learning_rate)
        self.gamma, self.sync_every, self.updates = gamma, sync_every, 0
        self.actions = actions

    def explore(self, state: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
        """Epsilon-greedy over every tier (training: a full tier earns the resource penalty, eq. 9)."""
        if rng.random() < epsilon:
            return int(rng.integers(self.actions))
        with torch.no_grad():
            return int(torch.argmax(self.online(torch.from_numpy(state))))

    def learn(self, batch: tuple[torch.Tensor, ...]) -> float:
        """One gradient step on the MSE between Q(s, a) and the double-DQN target; returns the loss."""
        states, actions, rewards, next_states, dones, next_masks = batch
        with torch.no_grad():
            next_online = self.online(next_states).masked_fill(~next_masks, -1e9)
            best = next_online.argmax(dim=1, keepdim=True)
            next_value = self.target(next_states).gather(1, best).squeeze(1)
            target = rewards + self.gamma * (1 - dones) * next_value
        predicted = self.online(states).gather(1, actions.unsqueeze(1)).squeeze(1)
        loss = nn.functional.mse_loss(predicted, target)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        if self.updates % self.sync_every == 0:
            self.target.load_state_dict(self.online.state_dict())
        return loss.item()

    def state_dict(self) -> dict[str, Any]:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = state["updates"]
