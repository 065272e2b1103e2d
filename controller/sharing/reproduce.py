"""Run sharing scenarios over their seeds and collect the rows the report is made of."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from controller.sharing.evaluation import ScenarioTraces, TrialResult, evaluate, load_traces, run_trial
from controller.sharing.spec import SharingSpec
from controller.sharing.tbs import TbsTable


@dataclass(frozen=True)
class SharingResults:
    """Every scenario's per-slice result rows, trial-phase rows and (first seed) trial users per slice."""

    results: pd.DataFrame
    trial: pd.DataFrame
    users: dict[str, dict[str, np.ndarray]]


def trial_row(spec: SharingSpec, seed: int, trial: TrialResult, traces: ScenarioTraces) -> dict[str, Any]:
    """Provisioned PRBs and chain sizes of one scenario and seed."""
    provisioning = trial.provisioning
    chains = []
    for name, model in zip(traces.names, trial.models, strict=True):
        users = model.users_chain
        mean_users = float(users.stationary() @ users.states)
        chains.append(f"{name}: {len(users.states)} user states (stationary mean {mean_users:.0f}), "
                      + ", ".join(str(len(chain.states)) for chain in model.chains) + " test-chain states")
    return {"scenario": spec.name, "seed": seed, "trial_slots": len(traces.trial[0]),
            "regular_slots": len(traces.regular[0]), "NoSh_prbs": provisioning.nosh, "Sh_prbs": provisioning.shared,
            "saving_pct": 100.0 * (1 - provisioning.shared / provisioning.nosh),
            "Sh_trial_acceptance": min(provisioning.trial_acceptance), "chains": "; ".join(chains)}


def check_scenarios(specs: Sequence[SharingSpec], table: TbsTable) -> None:
    """Load each scenario's traces (first seed) and run its trial phase, so bad data fails before a run exists."""
    for spec in specs:
        run_trial(load_traces(spec, table, spec.seeds[0]), spec.components == "joint", spec.provisioning)


def run_scenarios(specs: Sequence[SharingSpec], table: TbsTable,
                  advance: Callable[[str], None] = lambda _label: None) -> SharingResults:
    """Evaluate every spec for each of its seeds."""
    rows: list[dict[str, Any]] = []
    trial_rows = []
    users: dict[str, dict[str, np.ndarray]] = {}
    for spec in specs:
        for seed in spec.seeds:
            result_rows, trial, traces = evaluate(spec, table, seed, advance)
            rows += result_rows
            trial_rows.append(trial_row(spec, seed, trial, traces))
            users.setdefault(spec.name, {name: t.users for name, t in zip(traces.names, traces.trial, strict=True)})
    return SharingResults(results=pd.DataFrame(rows), trial=pd.DataFrame(trial_rows), users=users)
