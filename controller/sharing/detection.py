"""Neyman-Pearson tests of a slice's last n states against its trial chain (paper eqs. 13-15, Algorithm 2).

Null hypothesis: the window follows the trial chain. The composite alternative is the chain estimated from the
window itself (maximum likelihood). The statistic ``2 log`` of the likelihood ratio is compared with the chi-square
quantile ``1 - alpha`` at the test's degrees of freedom: for each state left in the window, the number of
transitions the trial chain allows from it, minus one (the free parameters of that row). A transition the trial
chain never made has likelihood 0 under the null and rejects at once. With independent state components the
statistics and degrees of freedom add up (one test at ``alpha``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np
from scipy.stats import chi2

from controller.sharing.markov import MarkovChain
from core.errors import InputError

MIN_WINDOW = 2
"""A window needs two samples for one transition."""


@cache
def chi2_threshold(dof: int, alpha: float) -> float:
    """The chi-square ``1 - alpha`` quantile with ``dof`` degrees of freedom (0 when there is none to estimate)."""
    return float(chi2.ppf(1.0 - alpha, dof)) if dof > 0 else 0.0


def check_window(window: int, regular_slots: int) -> None:
    """Refuse a window the test cannot use: under two samples, or longer than the regular phase."""
    if window < MIN_WINDOW:
        raise InputError(f"window n={window}: the test needs at least {MIN_WINDOW} samples (one transition)")
    if window > regular_slots:
        raise InputError(f"window n={window} is longer than the regular phase ({regular_slots} slots): "
                         "the test would never have a full window")


class _Component:
    """One state component's transitions through the regular phase, prepared for window sums.

    The window's transition and row counts are kept and slid forward between calls, so a test costs O(1) per slot
    passed instead of O(n); a call for an earlier window recounts.
    """

    def __init__(self, chain: MarkovChain, sequence: np.ndarray) -> None:
        index = chain.index(np.asarray(sequence))
        sources, targets = index[:-1], index[1:]
        known = (sources >= 0) & (targets >= 0)
        probability = np.where(known, chain.transition[np.maximum(sources, 0), np.maximum(targets, 0)], 0.0)
        impossible = probability == 0.0
        log_probability = np.log(np.where(impossible, 1.0, probability))
        self.log_cumulative = np.concatenate([[0.0], np.cumsum(log_probability)]).tolist()
        self.impossible_cumulative = np.concatenate([[0], np.cumsum(impossible)]).tolist()
        self.sources = sources.tolist()
        self.pairs = (sources * len(chain.states) + targets).tolist()
        self.free = ((chain.transition > 0).sum(axis=1) - 1).tolist()
        self._reset(0)

    def _reset(self, low: int) -> None:
        self.low = self.high = low
        self.pair_counts: dict[int, int] = {}
        self.row_counts: dict[int, int] = {}
        self.pair_sum = self.row_sum = 0.0  # sums of count x log(count)
        self.dof = 0

    def _change(self, transition: int, step: int) -> None:
        pair, row = self.pairs[transition], self.sources[transition]
        count = self.pair_counts.get(pair, 0)
        self.pair_sum += _xlogx(count + step) - _xlogx(count)
        self.pair_counts[pair] = count + step
        count = self.row_counts.get(row, 0)
        self.row_sum += _xlogx(count + step) - _xlogx(count)
        self.row_counts[row] = count + step
        if count + step == 0 or count == 0:  # the row enters or leaves the window
            self.dof += step * self.free[row]

    def statistic(self, low: int, high: int) -> tuple[float, int]:
        """``2 log`` likelihood ratio and degrees of freedom of transitions ``low`` to ``high - 1``."""
        if self.impossible_cumulative[high] > self.impossible_cumulative[low]:
            return math.inf, 0
        if low < self.low or high < self.high or low >= self.high:
            self._reset(low)
        for transition in range(self.high, high):
            self._change(transition, 1)
        for transition in range(self.low, low):
            self._change(transition, -1)
        self.low, self.high = low, high
        null = self.log_cumulative[high] - self.log_cumulative[low]
        return 2.0 * max(self.pair_sum - self.row_sum - null, 0.0), self.dof


def _xlogx(count: int) -> float:
    return count * math.log(count) if count > 0 else 0.0


class SliceDetector:
    """The test of one slice at each slot of its regular phase, over its last ``window`` states."""

    def __init__(self, chains: Sequence[MarkovChain], sequences: Sequence[np.ndarray], window: int,
                 alpha: float) -> None:
        check_window(window, len(sequences[0]))
        self.window = window
        self.alpha = alpha
        self.components = [_Component(chain, sequence) for chain, sequence in zip(chains, sequences, strict=True)]

    def statistic(self, slot: int) -> tuple[float, int]:
        """Statistic and degrees of freedom over the states of slots ``slot - window + 1`` to ``slot``.

        Early in the regular phase the window holds the regular states seen so far (never trial states).
        """
        low, high = max(0, slot - self.window + 1), slot
        total, dof = 0.0, 0
        if high <= low:
            return total, dof
        for component in self.components:
            value, free = component.statistic(low, high)
            total += value
            dof += free
        return total, dof

    def rejects(self, slot: int) -> bool:
        """Whether the slice fails its test at ``slot`` (selects the alternative: it does not behave normally)."""
        value, dof = self.statistic(slot)
        return value > chi2_threshold(dof, self.alpha) + 1e-9
