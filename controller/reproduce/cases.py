"""The experiments of the MicroOpt paper as evaluation cases, and the budgets of the methods.

- ``threshold`` (Table I, Fig. 6 and the ablation of Fig. 9): constant traffic 1-5 users/s x q_thresh x
  beta_thresh; MicroOpt (as published and with refinement), Atlas, CaDRL, Peak-alloc (Atlas+ and CaDRL+
  equal their counterparts under constant traffic), MicroOpt-0sigma and MicroOpt-2sigma, and the exact
  solver (the best known cost of each case).
- ``dynamic`` (Figs. 7, 8 and 10): truncated normals centred at 1-5 users/s with std sigma_mean and
  sigma_max at q_thresh 5, beta_thresh 0.1; every method.

Every randomized method runs once per seed; the deterministic ones (exact, Peak-alloc) once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from controller.traffic import TrafficDistribution, constant, dynamic_traffic
from core.validation import StrictModel

DEFAULT_SIGMA_MEAN = 0.5
DEFAULT_SIGMA_MAX = 1.5
"""Traffic spreads (users/s) used when no Milan CDR files are given: assumptions, not the paper's values
(the paper does not print them); pass the files to derive them (``collectors.milan``)."""

THRESHOLD_METHODS = ("exact", "microopt", "microopt-alg1", "atlas", "cadrl", "peak")
ABLATION_METHODS = ("microopt-0sigma", "microopt-2sigma")
DYNAMIC_METHODS = ("exact", "microopt", "microopt-alg1", "atlas", "atlas+", "cadrl", "cadrl+", "peak")
DETERMINISTIC_METHODS = ("exact", "peak")
"""Methods whose answer does not depend on the seed: solved for the first seed only."""
MATCHED_BUDGET_METHODS = ("atlas", "atlas+")
"""Methods given MicroOpt's exact-query count on the same case and seed as their budget."""


class ReproduceConfig(StrictModel):
    """What to run: the case grid, the traffic spreads and the methods' settings overrides."""

    users: tuple[float, ...] = (1, 2, 3, 4, 5)
    q_thresh: tuple[float, ...] = (3.0, 4.0, 5.0)
    beta_thresh: tuple[float, ...] = (0.1, 0.2, 0.3)
    dynamic_centres: tuple[float, ...] = (1, 2, 3, 4, 5)
    dynamic_q_thresh: float = 5.0
    dynamic_beta_thresh: float = 0.1
    sigma_mean: float = Field(DEFAULT_SIGMA_MEAN, gt=0)
    sigma_max: float = Field(DEFAULT_SIGMA_MAX, gt=0)
    sigma_source: str = "assumed default (no Milan CDR files given)"
    seeds: tuple[int, ...] = Field((0, 1, 2, 3, 4), min_length=1, description="seeds of the randomized methods")
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict, description="method -> settings overrides")

    @classmethod
    def quick(cls, **fields: Any) -> ReproduceConfig:
        """A CI-sized run: a smaller grid, two seeds and small budgets for the baselines (same code paths)."""
        small_atlas = {"pretrain_samples": 64, "pretrain_epochs": 100, "batch": 128, "finetune_epochs": 10,
                       "candidates": 256}
        return cls(users=(1, 3, 5), q_thresh=(3.0, 5.0), beta_thresh=(0.1, 0.3), dynamic_centres=(2, 4),
                   seeds=(0, 1), settings={
                       "atlas": small_atlas,
                       "atlas+": small_atlas,
                       "cadrl": {"iterations": 60, "training_states": 16, "batch": 256},
                       "cadrl+": {"iterations": 60, "batch": 256},
                       "peak": {"grid": {"cpu_step": 20.0, "bandwidth_step": 0.2}},
                   }, **fields)


@dataclass(frozen=True)
class Case:
    """One evaluation case: an experiment, a traffic distribution and an SLA, solved by ``methods``."""

    experiment: str
    label: str
    traffic: TrafficDistribution
    users: float
    traffic_std: float
    q_thresh: float
    beta_thresh: float
    methods: tuple[str, ...]


def build_cases(config: ReproduceConfig) -> list[Case]:
    """Every case of the run, in execution order."""
    cases = []
    for q_thresh in config.q_thresh:
        for beta in config.beta_thresh:
            for users in config.users:
                cases.append(Case("threshold", f"{users:g} users/s", constant(users), float(users), 0.0,
                                  q_thresh, beta, THRESHOLD_METHODS + ABLATION_METHODS))
    for centre, std, distribution in dynamic_traffic(config.sigma_mean, config.sigma_max, config.dynamic_centres):
        cases.append(Case("dynamic", f"N({centre:g}, {std:.3g})", distribution, centre, std,
                          config.dynamic_q_thresh, config.dynamic_beta_thresh, DYNAMIC_METHODS))
    return cases
