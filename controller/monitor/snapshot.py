"""One look at a running testbed: each slice's users, per-user QoS, allocation and usage, from Prometheus.

:func:`read_snapshot` is a pure function of a :class:`~collectors.prometheus.PrometheusReader` (PromQL instant
queries, nothing else) and returns a :class:`TopSnapshot`; rendering lives in :mod:`controller.monitor.view`.
A series that Prometheus does not have (a slice without traffic, an older testbed without the multi-slice
metrics) is ``None``, never 0.

Where each figure comes from (docs/local-data-plane.md):

- type: ``slicebed_slice_info{slice,type}`` (embb, urllc or mmtc);
- users: ``slicebed_active_users`` (the application server);
- QoS per user, the type's kind (:mod:`core.slice_types`): eMBB ``slicebed_user_throughput_bps`` (Mbps, higher is
  better), URLLC ``slicebed_user_delay_p95_seconds`` (ms, lower is better), mMTC ``slicebed_user_delivery_ratio``
  (higher is better). A slice whose type is not exported shows the first of these it has (an older testbed:
  throughput);
- allocation: ``slicebed_allocation_cpu_millicores`` and ``slicebed_allocation_bandwidth_mbps`` (read back);
- meter rate: the payload rate that reaches the RAN through the slice's meter, the RAN emulator's received
  packets per second times its mean payload bytes per packet (``slicebed_ran_packets_total``,
  ``slicebed_ran_ciphered_bytes_total``);
- RAN CPU: the RAN emulator process's CPU (``process_cpu_seconds_total`` of the scrape target that exports
  ``slicebed_ran_work_factor``; the emulator is the only process in its RAN cgroup);
- both usages are divided by the testbed's :class:`Scales` into the allocation's nominal units;
- shared capacities: ``slicebed_shared_cpu_millicores`` and ``slicebed_shared_bandwidth_mbps``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from collectors.prometheus import PrometheusReader
from core.slice_types import HIGHER_IS_BETTER, QOS_OF_TYPE, SLICE_TYPES, QosKind, SliceType, degraded

DEFAULT_RATE_WINDOW_S = 5.0
"""The ``rate()`` window: at least four scrapes at the local testbed's 1 s interval."""


@dataclass(frozen=True)
class QosSeries:
    """Where one QoS kind (:mod:`core.slice_types`) is exported per user, and the unit it shows in."""

    metric: str
    scale: float  # metric value -> unit
    unit: str


QOS_SERIES: dict[QosKind, QosSeries] = {
    "throughput_mbps": QosSeries("slicebed_user_throughput_bps", 1e-6, "Mbps"),
    "delay_p95_ms": QosSeries("slicebed_user_delay_p95_seconds", 1e3, "ms"),
    "delivery_ratio": QosSeries("slicebed_user_delivery_ratio", 1.0, ""),
}
"""The order is the fallback order for a slice whose type is not exported."""


def meets(kind: QosKind, value: float, threshold: float) -> bool:
    """Whether a user's QoS is not degraded against ``threshold`` (:func:`core.slice_types.degraded`)."""
    return not bool(degraded(value, threshold, HIGHER_IS_BETTER[kind]))


@dataclass(frozen=True)
class SliceView:
    """One slice at one moment; ``None`` wherever Prometheus has no series."""

    name: str
    type: SliceType | None
    users: float | None
    qos_kind: QosKind | None  # from the type; without one, the first kind with series; else None
    qos: dict[str, float]  # user -> QoS in the kind's unit (QOS_SERIES)
    threshold: float | None
    cpu_millicores: float | None
    bandwidth_mbps: float | None
    meter_mbps: float | None
    ran_cpu_millicores: float | None
    upf_tier: str | None = None  # the node the slice's UPF is scraped on (its placement; `testbed place` moves it)

    def worst(self) -> float | None:
        """The worst user's QoS (lowest throughput or ratio, highest delay), None without users' QoS."""
        if self.qos_kind is None or not self.qos:
            return None
        return (min if HIGHER_IS_BETTER[self.qos_kind] else max)(self.qos.values())

    def meeting(self) -> int | None:
        """How many users meet the threshold, None without a threshold or without users' QoS."""
        kind, threshold = self.qos_kind, self.threshold
        if kind is None or threshold is None or not self.qos:
            return None
        return sum(meets(kind, value, threshold) for value in self.qos.values())

    def as_dict(self) -> dict[str, object]:
        kind = self.qos_kind
        return {"name": self.name, "type": self.type, "users": self.users,
                "qos": None if kind is None else {"kind": kind, "unit": QOS_SERIES[kind].unit,
                                                  "higher_is_better": HIGHER_IS_BETTER[kind],
                                                  "per_user": self.qos, "worst": self.worst()},
                "threshold": self.threshold, "users_meeting_threshold": self.meeting(),
                "allocation": {"cpu_millicores": self.cpu_millicores, "bandwidth_mbps": self.bandwidth_mbps},
                "meter_mbps": self.meter_mbps, "ran_cpu_millicores": self.ran_cpu_millicores,
                "upf_tier": self.upf_tier}


@dataclass(frozen=True)
class Scales:
    """Host units per nominal unit (the local inventory's ``cpu_scale`` and ``rate_scale``; 1 on a lab): usage is
    shown in the allocation's nominal units, as ``testbed check`` does."""

    cpu: float = 1.0
    rate: float = 1.0


@dataclass(frozen=True)
class SharedView:
    """The shared capacities against the sums over the slices (sums of the values present)."""

    cpu_capacity: float | None
    bandwidth_capacity: float | None
    cpu_allocated: float | None
    bandwidth_allocated: float | None
    meter_mbps: float | None
    ran_cpu_millicores: float | None

    def as_dict(self) -> dict[str, object]:
        return {"cpu_millicores": {"allocated": self.cpu_allocated, "capacity": self.cpu_capacity},
                "bandwidth_mbps": {"allocated": self.bandwidth_allocated, "capacity": self.bandwidth_capacity},
                "meter_mbps": self.meter_mbps, "ran_cpu_millicores": self.ran_cpu_millicores}


@dataclass(frozen=True)
class TopSnapshot:
    """Every slice and the shared capacities, as Prometheus had them at ``at``."""

    url: str
    at: datetime
    slices: list[SliceView] = field(default_factory=list)
    shared: SharedView = SharedView(None, None, None, None, None, None)
    scales: Scales = Scales()

    def as_dict(self) -> dict[str, object]:
        return {"prometheus": self.url, "at": self.at.isoformat(),
                "scales": {"cpu_scale": self.scales.cpu, "rate_scale": self.scales.rate},
                "slices": [s.as_dict() for s in self.slices], "shared": self.shared.as_dict()}


def read_snapshot(reader: PrometheusReader, thresholds: Mapping[str, float] | None = None,
                  scales: Scales = Scales(), rate_window_s: float = DEFAULT_RATE_WINDOW_S) -> TopSnapshot:
    """Each slice's figures and the shared capacities from instant queries (``thresholds``: slice -> q_thresh;
    the meter rate and the RAN CPU divided by ``scales`` into nominal units)."""
    at = datetime.now(UTC)
    window = f"{rate_window_s:g}s"
    info = _values(reader, "max by (slice, type) (slicebed_slice_info)", ("slice", "type"))
    types = {name: kind for name, kind in info if kind in SLICE_TYPES}
    per_slice = {
        "users": _by_slice(reader, "max by (slice) (slicebed_active_users)"),
        "cpu": _by_slice(reader, "max by (slice) (slicebed_allocation_cpu_millicores)"),
        "bandwidth": _by_slice(reader, "max by (slice) (slicebed_allocation_bandwidth_mbps)"),
        "meter": _by_slice(reader, METER_QUERY.format(window=window), scales.rate),
        "ran_cpu": _by_slice(reader, RAN_CPU_QUERY.format(window=window), scales.cpu),
    }
    qos = {kind: _per_user(reader, series) for kind, series in QOS_SERIES.items()}
    upf_tiers = {name: node for name, node in _values(reader, UPF_NODE_QUERY, ("slice", "node"))}
    names = {name for name, _type in info} | {name for values in per_slice.values() for name in values} | {
        name for users in qos.values() for name in users}
    slices = []
    for name in sorted(names):
        slice_type = types.get(name)
        kind = QOS_OF_TYPE[slice_type] if slice_type is not None else next(
            (key for key, users in qos.items() if name in users), None)
        slices.append(SliceView(
            name=name, type=slice_type, users=per_slice["users"].get(name), qos_kind=kind,
            qos=qos[kind].get(name, {}) if kind is not None else {},
            threshold=(thresholds or {}).get(name), cpu_millicores=per_slice["cpu"].get(name),
            bandwidth_mbps=per_slice["bandwidth"].get(name), meter_mbps=per_slice["meter"].get(name),
            ran_cpu_millicores=per_slice["ran_cpu"].get(name), upf_tier=upf_tiers.get(name)))
    shared = SharedView(
        cpu_capacity=_scalar(reader, "max(slicebed_shared_cpu_millicores)"),
        bandwidth_capacity=_scalar(reader, "max(slicebed_shared_bandwidth_mbps)"),
        cpu_allocated=_total(s.cpu_millicores for s in slices),
        bandwidth_allocated=_total(s.bandwidth_mbps for s in slices),
        meter_mbps=_total(s.meter_mbps for s in slices),
        ran_cpu_millicores=_total(s.ran_cpu_millicores for s in slices))
    return TopSnapshot(reader.url, at, slices, shared, scales)


METER_QUERY = (
    'sum by (slice) (rate(slicebed_ran_packets_total{{event="received"}}[{window}]))'
    " * sum by (slice) (rate(slicebed_ran_ciphered_bytes_total[{window}]))"
    ' / sum by (slice) (rate(slicebed_ran_packets_total{{event="sent"}}[{window}])) * 8 / 1e6')
"""Mbps through the meter: packets the RAN received per second x mean payload bytes of the packets it sent."""
UPF_NODE_QUERY = "count by (slice, node) (slicebed_upf_bytes_total)"
"""The node label of the scrape target that exports each slice's UPF counters: the tier the UPF runs on."""
RAN_CPU_QUERY = (
    "sum by (slice) (1000 * rate(process_cpu_seconds_total[{window}])"
    " * on (job, instance) group_left (slice) (max by (job, instance, slice) (slicebed_ran_work_factor) * 0 + 1))")
"""Host millicores of the process behind each scrape target that exports ``slicebed_ran_work_factor``."""


def _values(reader: PrometheusReader, query: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """Label values -> finite value of each series ``query`` returns (a series without a label is skipped)."""
    frame = reader.instant(query)
    if frame.empty or not set(labels) <= set(frame.columns):
        return {}
    return {tuple(str(row[label]) for label in labels): float(row["value"])
            for _, row in frame.iterrows()
            if math.isfinite(row["value"]) and all(isinstance(row[label], str) for label in labels)}


def _by_slice(reader: PrometheusReader, query: str, scale: float = 1.0) -> dict[str, float]:
    """Slice -> the query's value divided by ``scale``."""
    return {key[0]: value / scale for key, value in _values(reader, query, ("slice",)).items()}


def _per_user(reader: PrometheusReader, series: QosSeries) -> dict[str, dict[str, float]]:
    """Slice -> user -> QoS in the series' unit."""
    found: dict[str, dict[str, float]] = {}
    for (name, user), value in _values(reader, f"max by (slice, user) ({series.metric})", ("slice", "user")).items():
        found.setdefault(name, {})[user] = value * series.scale
    return {name: dict(sorted(users.items(), key=lambda item: _user_order(item[0])))
            for name, users in found.items()}


def _user_order(user: str) -> tuple[int, str]:
    """Numeric user ids in numeric order (2 before 10), other ids after them by name."""
    return (int(user), "") if user.isdigit() else (1 << 62, user)


def _scalar(reader: PrometheusReader, query: str) -> float | None:
    values = list(_values(reader, query, ()).values())
    return values[0] if values else None


def _total(values: Iterable[float | None]) -> float | None:
    """The sum of the values present, None when none is."""
    present = [value for value in values if value is not None]
    return sum(present) if present else None
