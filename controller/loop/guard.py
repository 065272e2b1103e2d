"""Live safety during a validation window: a slice starved by an optimistic model is given its safe allocation.

The guard watches one slice's per-second QoS. Once ``min_seconds`` are in, it tests after every second whether
the running degradation (eq. 1 over the seconds so far) exceeds beta_thresh + ``margin`` with evidence
(:mod:`controller.loop.evidence`). The window's error rate ``alpha`` is split evenly over its looks (Bonferroni),
so an allocation that truly holds beta_thresh + margin trips the guard with probability at most ``alpha``.
"""

from __future__ import annotations

from controller.loop.evidence import Evidence, degradation_evidence
from controller.spec import GuardSpec
from core.slice_types import degraded


class SafetyGuard:
    """Decides, second by second, whether a slice must fall back to its safe (peak) allocation."""

    def __init__(self, settings: GuardSpec, q_thresh: float, beta_thresh: float, window_s: int, *,
                 higher_is_better: bool = True) -> None:
        self.settings = settings
        self.q_thresh = q_thresh
        self.higher_is_better = higher_is_better
        self.bound = beta_thresh + settings.margin
        self.alpha_per_look = settings.alpha / max(1, window_s - settings.min_seconds + 1)
        self.users: list[float] = []
        self.degraded: list[bool] = []

    def observe(self, users: float, qos: float) -> Evidence | None:
        """Record one second; the evidence if the slice must fall back now, else None."""
        self.users.append(users)
        self.degraded.append(bool(degraded(qos, self.q_thresh, self.higher_is_better)))
        if not self.settings.enabled or len(self.users) < self.settings.min_seconds or self.bound >= 1:
            return None
        evidence = self.evidence()
        return evidence if evidence.exceeds(self.alpha_per_look) else None

    def evidence(self) -> Evidence:
        """The seconds observed so far against the guard's bound."""
        return degradation_evidence(self.users, self.degraded, self.bound)
