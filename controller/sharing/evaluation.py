"""A scenario's trial phase and regular phase under every scheme and anomaly case (paper Secs. V-VII).

The trial phase fits each slice's chains and provisions the capacities; the regular phase replays the slices'
regular traces (one slice made anomalous per case) slot by slot through the multiplexer. The regular phase only
accepts traces outside the trial's time span (:func:`controller.sharing.traces.ensure_disjoint`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.sharing.anomalies import anomalous_users, remove_lowest_states
from controller.sharing.campaign_source import campaign_trace
from controller.sharing.detection import SliceDetector, check_window
from controller.sharing.madrid import madrid_trace
from controller.sharing.markov import MarkovChain, fit_chain
from controller.sharing.multiplexer import Multiplexer, Scheme
from controller.sharing.provisioning import Provisioning, ProvisioningRule, provision
from controller.sharing.spec import CampaignSource, MadridSource, SharingSliceSpec, SharingSpec
from controller.sharing.synthetic import synthetic_trace
from controller.sharing.tbs import TbsTable
from controller.sharing.traces import Quantization, SecondTrace, SlotTrace, ensure_disjoint, split_phases, to_slots


@dataclass(frozen=True)
class ScenarioTraces:
    """Each slice's trial and regular slots, aligned to the same number of slots across slices."""

    names: list[str]
    availability: list[float]
    trial: list[SlotTrace]
    regular: list[SlotTrace]


@dataclass(frozen=True)
class SliceModel:
    """What the trial phase learned about one slice."""

    chains: list[MarkovChain]
    users_chain: MarkovChain
    trial_span: tuple[int, int]


@dataclass(frozen=True)
class TrialResult:
    models: list[SliceModel]
    provisioning: Provisioning


def second_trace(slice_spec: SharingSliceSpec, seed: int, index: int) -> SecondTrace:
    """The slice's per-second trace from its source (synthetic traces are seeded by ``seed`` and the slice)."""
    source = slice_spec.source
    days = slice_spec.trial_segments + slice_spec.regular_segments
    if isinstance(source, MadridSource):
        return madrid_trace(source, days)
    if isinstance(source, CampaignSource):
        return campaign_trace(source)
    return synthetic_trace(source, days, np.random.default_rng([seed, index]), f"slice {slice_spec.name} (synthetic)")


def load_traces(spec: SharingSpec, table: TbsTable, seed: int) -> ScenarioTraces:
    """Every slice's trace in slots, split into the trial and regular phases."""
    trial, regular = [], []
    for index, slice_spec in enumerate(spec.slices):
        quantization = Quantization(**slice_spec.quantization.model_dump())
        slots = to_slots(second_trace(slice_spec, seed, index), slice_spec.name, slice_spec.bitrate_mbps, table,
                         spec.slot_s, quantization, spec.demand_aggregation)
        first, second = split_phases(slots, slice_spec.trial_segments, slice_spec.regular_segments)
        trial.append(first)
        regular.append(second)
    trial_slots = min(len(t) for t in trial)
    regular_slots = min(len(r) for r in regular)
    for window in spec.windows:
        check_window(window, regular_slots)
    return ScenarioTraces(names=[s.name for s in spec.slices], availability=[s.availability for s in spec.slices],
                          trial=[t.take(slice(0, trial_slots)) for t in trial],
                          regular=[r.take(slice(0, regular_slots)) for r in regular])


def run_trial(traces: ScenarioTraces, joint: bool, rule: ProvisioningRule = "replay") -> TrialResult:
    """Algorithm 1: maximum-likelihood chains per slice and the provisioned capacities."""
    models = []
    for name, trial in zip(traces.names, traces.trial, strict=True):
        labels = ["state"] if joint else ["users", "MCS"]
        chains = [fit_chain(sequence, f"slice {name} {label}") for sequence, label in
                  zip(trial.components(joint), labels, strict=True)]
        users_chain = chains[0] if not joint else fit_chain(trial.users, f"slice {name} users")
        models.append(SliceModel(chains=chains, users_chain=users_chain, trial_span=trial.span))
    return TrialResult(models=models, provisioning=provision([t.demand for t in traces.trial], traces.availability,
                                                                rule))


@dataclass(frozen=True)
class Case:
    """A regular phase to evaluate: the slices' traces, with ``anomalous`` (an index) following a modified chain."""

    name: str
    regular: list[SlotTrace]
    anomalous: int | None = None
    removed_share: float = 0.0
    removed_states: int = 0
    start: int | None = None


def anomaly_case(traces: ScenarioTraces, trial: TrialResult, anomalous: int, share: float, start_after: int,
                 rng: np.random.Generator) -> Case:
    """The regular phase with slice ``anomalous`` following its user chain without the lowest ``share`` states."""
    modified = remove_lowest_states(trial.models[anomalous].users_chain, share)
    regular = list(traces.regular)
    users, start = anomalous_users(regular[anomalous].users, modified.chain, start_after, rng)
    regular[anomalous] = regular[anomalous].with_users(users)
    return Case(name=f"{traces.names[anomalous]} anomalous, {share:.0%} of user states removed", regular=regular,
                anomalous=anomalous, removed_share=share, removed_states=modified.removed, start=start)


class AllocationLog:
    """A :class:`~controller.sharing.multiplexer.BandwidthApplier` that adds up the PRBs given to each slice."""

    def __init__(self, names: list[str]) -> None:
        self.total = dict.fromkeys(names, 0)

    def apply(self, prbs: Mapping[str, int]) -> None:
        for name, value in prbs.items():
            self.total[name] += value


def run_regular(traces: ScenarioTraces, trial: TrialResult, case: Case, scheme: Scheme, joint: bool,
                alpha: float) -> dict[str, Any]:
    """Algorithm 2 over the case's regular phase: acceptance per slice and the test outcomes."""
    for name, model, regular in zip(traces.names, trial.models, case.regular, strict=True):
        ensure_disjoint(name, model.trial_span, regular)
    provisioning = trial.provisioning
    capacity = provisioning.nosh if scheme.kind == "nosh" else provisioning.shared
    multiplexer = Multiplexer(traces.names, capacity, traces.availability, scheme, provisioning.reserved)
    demands = np.vstack([r.demand for r in case.regular]).T.tolist()
    detectors = []
    if scheme.kind == "sht":
        assert scheme.window is not None
        detectors = [SliceDetector(model.chains, regular.components(joint), scheme.window, alpha)
                     for model, regular in zip(trial.models, case.regular, strict=True)]
    log = AllocationLog(traces.names)
    accepted = np.zeros(len(traces.names))
    outcomes: list[tuple[int, list[bool]]] = []
    test_seconds = [0.0]
    for slot, column in enumerate(demands):
        decision = multiplexer.run_slot(column, log, _tests(detectors, slot, test_seconds) if detectors else None)
        accepted += decision.accepted
        if decision.failed_test is not None and detectors:
            outcomes.append((slot, decision.failed_test))
    return {"acceptance": (accepted / len(demands)).tolist(), "capacity": capacity,
            "mean_prbs": {name: total / len(demands) for name, total in log.total.items()},
            **_rejections(outcomes, case, len(traces.names)),
            "test_seconds": test_seconds[0] / max(len(outcomes) * len(traces.names), 1),
            "tests": len(outcomes)}


def _tests(detectors: list[SliceDetector], slot: int, seconds: list[float]) -> Callable[[], list[bool]]:
    def failing() -> list[bool]:
        started = time.perf_counter()
        result = [detector.rejects(slot) for detector in detectors]
        seconds[0] += time.perf_counter() - started
        return result

    return failing


def _rejections(outcomes: list[tuple[int, list[bool]]], case: Case, count: int) -> dict[str, float]:
    """Correct and wrong rejection ratios of the anomalous slice, and false alarms of the others."""
    ratios = {"correct_rejection": float("nan"), "wrong_rejection": float("nan"), "false_alarm": float("nan")}
    if not outcomes:
        return ratios
    well = [index for index in range(count) if index != case.anomalous]
    ratios["false_alarm"] = float(np.mean([failed[index] for _, failed in outcomes for index in well])) if well else \
        float("nan")
    if case.anomalous is not None:
        start = case.start if case.start is not None else len(case.regular[0])
        during = [failed[case.anomalous] for slot, failed in outcomes if slot >= start]
        before = [failed[case.anomalous] for slot, failed in outcomes if slot < start]
        ratios["correct_rejection"] = float(np.mean(during)) if during else float("nan")
        ratios["wrong_rejection"] = float(np.mean(before)) if before else float("nan")
    return ratios


def evaluate(spec: SharingSpec, table: TbsTable, seed: int,
             advance: Callable[[str], None] = lambda _label: None) -> tuple[list[dict[str, Any]], TrialResult,
                                                                           ScenarioTraces]:
    """Every case x scheme of ``spec`` for one seed: rows of per-slice results (see :func:`case_rows`)."""
    traces = load_traces(spec, table, seed)
    joint = spec.components == "joint"
    trial = run_trial(traces, joint, spec.provisioning)
    rng = np.random.default_rng([seed, 7919])
    cases = [Case(name="all slices normal", regular=traces.regular)]
    start_after = max(spec.windows)
    for name in spec.anomalous:
        for share in spec.removed_state_shares:
            cases.append(anomaly_case(traces, trial, traces.names.index(name), share, start_after, rng))
    rows: list[dict[str, Any]] = []
    for case in cases:
        for scheme in spec.schemes:
            result = run_regular(traces, trial, case, scheme, joint, spec.alpha)
            rows += case_rows(spec, traces, case, scheme, result, seed)
            advance(f"{spec.name} seed {seed}: {scheme.name}")
    return rows, trial, traces


def case_rows(spec: SharingSpec, traces: ScenarioTraces, case: Case, scheme: Scheme, result: dict[str, Any],
              seed: int) -> list[dict[str, Any]]:
    """One row per slice: its acceptance and whether it met its availability, with the case's test outcomes."""
    rows = []
    for index, name in enumerate(traces.names):
        acceptance = result["acceptance"][index]
        rows.append({
            "scenario": spec.name, "seed": seed, "case": case.name,
            "anomalous": traces.names[case.anomalous] if case.anomalous is not None else "",
            "removed_share": case.removed_share, "removed_states": case.removed_states,
            "anomaly_start": case.start if case.start is not None else -1,
            "scheme": scheme.name, "window": scheme.window or 0, "prbs": result["capacity"], "slice": name,
            "well_behaved": index != case.anomalous, "availability": traces.availability[index],
            "acceptance": acceptance, "met": acceptance >= traces.availability[index] - 1e-12,
            "mean_allocated_prbs": result["mean_prbs"][name],
            "correct_rejection": result["correct_rejection"], "wrong_rejection": result["wrong_rejection"],
            "false_alarm": result["false_alarm"], "tests": result["tests"], "test_seconds": result["test_seconds"],
        })
    return rows


def cases_per_seed(spec: SharingSpec) -> int:
    """How many (case, scheme) evaluations one seed of ``spec`` runs (for progress bars)."""
    return (1 + len(spec.anomalous) * len(spec.removed_state_shares)) * len(spec.schemes)
