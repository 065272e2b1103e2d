"""One look at a running testbed: each slice's users, per-user QoS, allocation and usage, from Prometheus.

:func:`read_snapshot` is a pure function of a :class:`~collectors.prometheus.PrometheusReader` (PromQL instant
queries, nothing else) and returns a :class:`TopSnapshot`; rendering lives in :mod:`controller.monitor.view`.
A series that Prometheus does not have (a slice without traffic, an older testbed without the multi-slice
metrics) is ``None``, never 0.

Where each figure comes from (docs/local-data-plane.md):

- type: ``slicebed_slice_info{slice,type}`` (embb, urllc or mmtc);
- users: ``slicebed_active_users`` (the application server);
- QoS per user, by type: eMBB ``slicebed_user_throughput_bps`` (Mbps, higher is better), URLLC
  ``slicebed_user_delay_p95_seconds`` (ms, lower is better), mMTC ``slicebed_user_delivery_ratio`` (higher
  is better). A slice whose type is not exported shows the first of these it has (an older testbed: throughput);
- allocation: ``slicebed_allocation_cpu_millicores`` and ``slicebed_allocation_bandwidth_mbps`` (read back);
- meter rate: the payload rate that reaches the RAN through the slice's meter, the RAN emulator's received
  packets per second times its mean payload bytes per packet (``slicebed_ran_packets_total``,
  ``slicebed_ran_ciphered_bytes_total``);
- RAN CPU: the RAN emulator process's CPU (``process_cpu_seconds_total`` of the scrape target that exports
  ``slicebed_ran_work_factor``), in host millicores; the emulator is the only process in the RAN cgroup;
- shared capacities: ``slicebed_shared_cpu_millicores`` and ``slicebed_shared_bandwidth_mbps``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from collectors.prometheus import PrometheusReader

DEFAULT_RATE_WINDOW_S = 5.0
"""The ``rate()`` window: at least four scrapes at the local testbed's 1 s interval."""


@dataclass(frozen=True)
class QosKind:
    """How one slice type's QoS is measured and judged."""

    name: str
    unit: str
    higher_is_better: bool
    metric: str
    scale: float  # metric value -> unit

    def meets(self, value: float, threshold: float) -> bool:
        """Whether ``value`` satisfies ``threshold`` in this kind's good direction."""
        return value >= threshold if self.higher_is_better else value <= threshold


QOS_KINDS: dict[str, QosKind] = {
    "embb": QosKind("throughput", "Mbps", True, "slicebed_user_throughput_bps", 1e-6),
    "urllc": QosKind("p95 delay", "ms", False, "slicebed_user_delay_p95_seconds", 1e3),
    "mmtc": QosKind("delivery ratio", "", True, "slicebed_user_delivery_ratio", 1.0),
}
"""Slice type -> its QoS; the order is the fallback order for a slice whose type is not exported."""


@dataclass(frozen=True)
class SliceView:
    """One slice at one moment; ``None`` wherever Prometheus has no series."""

    name: str
    type: str | None
    users: float | None
    qos_kind: str | None  # a key of QOS_KINDS, None when no QoS series exists
    qos: dict[str, float]  # user -> QoS in the kind's unit
    threshold: float | None
    cpu_millicores: float | None
    bandwidth_mbps: float | None
    meter_mbps: float | None
    ran_cpu_millicores: float | None

    @property
    def kind(self) -> QosKind | None:
        return QOS_KINDS[self.qos_kind] if self.qos_kind is not None else None

    def worst(self) -> float | None:
        """The worst user's QoS (lowest throughput or ratio, highest delay), None without users' QoS."""
        if self.kind is None or not self.qos:
            return None
        return (min if self.kind.higher_is_better else max)(self.qos.values())

    def meeting(self) -> int | None:
        """How many users meet the threshold, None without a threshold or without users' QoS."""
        kind, threshold = self.kind, self.threshold
        if kind is None or threshold is None or not self.qos:
            return None
        return sum(kind.meets(value, threshold) for value in self.qos.values())

    def as_dict(self) -> dict[str, object]:
        kind = self.kind
        return {"name": self.name, "type": self.type, "users": self.users,
                "qos": None if kind is None else {"kind": kind.name, "unit": kind.unit,
                                                  "higher_is_better": kind.higher_is_better,
                                                  "per_user": self.qos, "worst": self.worst()},
                "threshold": self.threshold, "users_meeting_threshold": self.meeting(),
                "allocation": {"cpu_millicores": self.cpu_millicores, "bandwidth_mbps": self.bandwidth_mbps},
                "meter_mbps": self.meter_mbps, "ran_cpu_host_millicores": self.ran_cpu_millicores}


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
                "meter_mbps": self.meter_mbps, "ran_cpu_host_millicores": self.ran_cpu_millicores}


@dataclass(frozen=True)
class TopSnapshot:
    """Every slice and the shared capacities, as Prometheus had them at ``at``."""

    url: str
    at: datetime
    slices: list[SliceView] = field(default_factory=list)
    shared: SharedView = SharedView(None, None, None, None, None, None)

    def as_dict(self) -> dict[str, object]:
        return {"prometheus": self.url, "at": self.at.isoformat(), "slices": [s.as_dict() for s in self.slices],
                "shared": self.shared.as_dict()}


def read_snapshot(reader: PrometheusReader, thresholds: Mapping[str, float] | None = None,
                  rate_window_s: float = DEFAULT_RATE_WINDOW_S) -> TopSnapshot:
    """Each slice's figures and the shared capacities from instant queries (``thresholds``: slice -> q_thresh)."""
    at = datetime.now(UTC)
    window = f"{rate_window_s:g}s"
    info = _values(reader, "max by (slice, type) (slicebed_slice_info)", ("slice", "type"))
    types = {name: kind for name, kind in info if kind in QOS_KINDS}
    per_slice = {
        "users": _by_slice(reader, "max by (slice) (slicebed_active_users)"),
        "cpu": _by_slice(reader, "max by (slice) (slicebed_allocation_cpu_millicores)"),
        "bandwidth": _by_slice(reader, "max by (slice) (slicebed_allocation_bandwidth_mbps)"),
        "meter": _by_slice(reader, METER_QUERY.format(window=window)),
        "ran_cpu": _by_slice(reader, RAN_CPU_QUERY.format(window=window)),
    }
    qos = {key: _per_user(reader, kind) for key, kind in QOS_KINDS.items()}
    names = {name for name, _type in info} | {name for values in per_slice.values() for name in values} | {
        name for users in qos.values() for name in users}
    slices = []
    for name in sorted(names):
        kind = types.get(name) or next((key for key, users in qos.items() if name in users), None)
        slices.append(SliceView(
            name=name, type=types.get(name), users=per_slice["users"].get(name), qos_kind=kind,
            qos=qos[kind].get(name, {}) if kind is not None else {},
            threshold=(thresholds or {}).get(name), cpu_millicores=per_slice["cpu"].get(name),
            bandwidth_mbps=per_slice["bandwidth"].get(name), meter_mbps=per_slice["meter"].get(name),
            ran_cpu_millicores=per_slice["ran_cpu"].get(name)))
    shared = SharedView(
        cpu_capacity=_scalar(reader, "max(slicebed_shared_cpu_millicores)"),
        bandwidth_capacity=_scalar(reader, "max(slicebed_shared_bandwidth_mbps)"),
        cpu_allocated=_total(s.cpu_millicores for s in slices),
        bandwidth_allocated=_total(s.bandwidth_mbps for s in slices),
        meter_mbps=_total(s.meter_mbps for s in slices),
        ran_cpu_millicores=_total(s.ran_cpu_millicores for s in slices))
    return TopSnapshot(reader.url, at, slices, shared)


METER_QUERY = (
    'sum by (slice) (rate(slicebed_ran_packets_total{{event="received"}}[{window}]))'
    " * sum by (slice) (rate(slicebed_ran_ciphered_bytes_total[{window}]))"
    ' / sum by (slice) (rate(slicebed_ran_packets_total{{event="sent"}}[{window}])) * 8 / 1e6')
"""Mbps through the meter: packets the RAN received per second x mean payload bytes of the packets it sent."""
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


def _by_slice(reader: PrometheusReader, query: str) -> dict[str, float]:
    return {key[0]: value for key, value in _values(reader, query, ("slice",)).items()}


def _per_user(reader: PrometheusReader, kind: QosKind) -> dict[str, dict[str, float]]:
    """Slice -> user -> QoS in the kind's unit."""
    found: dict[str, dict[str, float]] = {}
    for (name, user), value in _values(reader, f"max by (slice, user) ({kind.metric})", ("slice", "user")).items():
        found.setdefault(name, {})[user] = value * kind.scale
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
