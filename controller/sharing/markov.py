"""Maximum-likelihood Markov chains of slice states and their stationary distributions (Algorithm 1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import InputError


@dataclass(frozen=True)
class MarkovChain:
    """A finite Markov chain over integer ``states`` (sorted) with row-stochastic ``transition``."""

    states: np.ndarray
    transition: np.ndarray

    def index(self, values: np.ndarray) -> np.ndarray:
        """Positions of ``values`` in ``states``; -1 for a value the chain has never seen."""
        positions = np.searchsorted(self.states, values)
        positions = np.minimum(positions, len(self.states) - 1)
        return np.where(self.states[positions] == values, positions, -1)

    def stationary(self) -> np.ndarray:
        """The stationary distribution (see :func:`stationary_distribution`)."""
        return stationary_distribution(self.transition)


def fit_chain(sequence: np.ndarray, what: str) -> MarkovChain:
    """The maximum-likelihood chain of ``sequence``: transition counts over the visits of each state.

    A state seen only at the end of the sequence has no observed transition out and is left out. A sequence that
    never changes gives a one-state chain (a constant component, e.g. a testbed's fixed MCS).

    Raises:
        InputError: fewer than two samples, or an absorbing state (entered and never left while other states
            exist), naming ``what``.
    """
    sequence = np.asarray(sequence)
    if len(sequence) < 2:
        raise InputError(f"{what}: {len(sequence)} sample(s), a chain needs at least two")
    sources, targets = sequence[:-1], sequence[1:]
    states = np.unique(sources)
    while True:  # a state left only towards states without outgoing transitions (the trace's end) goes too
        keep = np.isin(sources, states) & np.isin(targets, states)
        counts = np.zeros((len(states), len(states)))
        np.add.at(counts, (np.searchsorted(states, sources[keep]), np.searchsorted(states, targets[keep])), 1.0)
        totals = counts.sum(axis=1)
        if totals.all():
            break
        states = states[totals > 0]
    absorbing = np.flatnonzero(counts[np.arange(len(states)), np.arange(len(states))] == totals)
    if absorbing.size and len(states) > 1:  # a component that never changes (one state) is a constant, not a trap
        state = states[absorbing[0]]
        raise InputError(f"{what}: the trial chain has an absorbing state {state} (entered and never left in "
                         f"{int(totals[absorbing[0]])} transitions): use a longer trial phase or coarser quantization")
    return MarkovChain(states=states, transition=counts / totals[:, None])


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """The distribution ``pi`` with ``pi P = pi`` and ``sum(pi) = 1`` (least squares; transient states get 0)."""
    size = len(transition)
    system = np.vstack([transition.T - np.eye(size), np.ones((1, size))])
    right = np.zeros(size + 1)
    right[-1] = 1.0
    solution, *_ = np.linalg.lstsq(system, right, rcond=None)
    solution = np.clip(solution, 0.0, None)
    return solution / solution.sum()
