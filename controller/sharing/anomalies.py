"""Anomalous slices (paper Sec. VI-I): a user chain without its lowest states, started smoothly.

The lowest ``share`` of the user chain's states are deleted. A kept state's transitions into deleted states move
to its largest remaining transition, so the new chain has no transition the trial chain lacked (otherwise any
test would catch it at once) while its users run higher. A kept state left with no transition at all is deleted
too. The anomalous sequence starts at the first slot, after the first ``start_after`` slots, at which the normal
sequence is in a kept state, and follows the new chain to the end of the regular phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.sharing.markov import MarkovChain


@dataclass(frozen=True)
class AnomalousChain:
    """The modified user chain and how many of the trial chain's states it lost."""

    chain: MarkovChain
    removed: int


def remove_lowest_states(chain: MarkovChain, share: float) -> AnomalousChain:
    """``chain`` without its lowest ``share`` of states (at least one state is always kept)."""
    size = len(chain.states)
    removed = np.zeros(size, dtype=bool)
    removed[: min(int(np.floor(share * size + 1e-9)), size - 1)] = True
    transition = chain.transition.copy()
    while True:
        moved = transition.copy()
        moved[:, removed] = 0.0
        moved[removed] = 0.0
        stranded = ~removed & (moved.sum(axis=1) == 0)
        if not stranded.any():
            break
        removed |= stranded
    for row in np.flatnonzero(~removed):
        moved[row, np.argmax(moved[row])] += transition[row, removed].sum()
    kept = ~removed
    return AnomalousChain(chain=MarkovChain(states=chain.states[kept], transition=moved[np.ix_(kept, kept)]),
                          removed=int(removed.sum()))


def anomalous_users(users: np.ndarray, anomalous: MarkovChain, start_after: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, int | None]:
    """``users`` with the anomalous chain from its smooth start on; the start slot is None if it never starts."""
    kept = np.flatnonzero(np.isin(users[start_after:], anomalous.states))
    if not kept.size:
        return users.copy(), None
    start = start_after + int(kept[0])
    result = users.astype(np.int64)
    cumulative = np.cumsum(anomalous.transition, axis=1)
    state = int(anomalous.index(np.array([users[start]]))[0])
    for slot, draw in zip(range(start + 1, len(users)), rng.random(len(users) - start - 1), strict=True):
        state = min(int(np.searchsorted(cumulative[state], draw, side="right")), len(anomalous.states) - 1)
        result[slot] = anomalous.states[state]
    return result, start
