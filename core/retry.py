"""Trying something again until it works or a time budget is spent: the one polling and retry loop.

Use it as a ``for`` loop whose body returns (or breaks) on success; when the loop ends by itself the budget
is spent, and the code after it reports the failure::

    attempts = Attempts(budget_s=10, pause_s=0.1)
    for _ in attempts:
        if ready():
            return
    raise SomeError(f"not ready after {attempts.count} attempts in {attempts.spent_s:.1f} s")

Pauses are counted as planned, not as slept, so the budget holds with any ``sleep`` (a test's fake one too);
the time the attempts themselves take is measured with ``clock``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator


class Attempts:
    """Attempts within ``budget_s`` seconds, ``pause_s`` apart, the pause multiplied by ``backoff`` after each
    (up to ``max_pause_s``), at most ``max_attempts`` of them. The first attempt is immediate; no attempt
    starts once the next pause would pass the budget."""

    def __init__(self, budget_s: float, pause_s: float, *, backoff: float = 1.0, max_pause_s: float = math.inf,
                 max_attempts: int | None = None, sleep: Callable[[float], object] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if budget_s < 0 or pause_s < 0 or backoff < 1 or (max_attempts is not None and max_attempts < 1):
            raise ValueError("Attempts needs budget_s >= 0, pause_s >= 0, backoff >= 1 and max_attempts >= 1")
        self.budget_s = budget_s
        self.pause_s = pause_s
        self.backoff = backoff
        self.max_pause_s = max_pause_s
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._clock = clock
        self.count = 0
        """Attempts started so far."""
        self.spent_s = 0.0
        """Seconds spent: the attempts' own time plus the pauses between them (as planned)."""

    def __iter__(self) -> Iterator[int]:
        """Yield the attempt number (1, 2, ...) before each attempt, pausing in between."""
        pause = self.pause_s
        while True:
            self.count += 1
            started = self._clock()
            yield self.count
            self.spent_s += self._clock() - started
            if self.max_attempts is not None and self.count >= self.max_attempts:
                return
            if self.spent_s + pause > self.budget_s:
                return
            self._sleep(pause)
            self.spent_s += pause
            pause = min(pause * self.backoff, self.max_pause_s)
