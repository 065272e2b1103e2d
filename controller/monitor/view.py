"""The ``testbed top`` table: one row per slice and one for the shared capacities, from a :class:`TopSnapshot`.

Missing figures show as ``-``; a user's QoS is green when it meets the slice's threshold, red when it does not
(no colour without a threshold), and a shared sum is red when it exceeds its capacity.
"""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from controller.monitor.snapshot import QOS_SERIES, SharedView, SliceView, TopSnapshot, meets
from core.slice_types import HIGHER_IS_BETTER, QosKind

MISSING = "-"
USERS_SHOWN = 6
"""Per-user QoS values listed in a row; more users show as ``+N``."""
COLUMNS = ("slice", "type", "UPF", "users", "QoS per user", "worst", "threshold", "met", "CPU mc", "BW Mbps",
           "meter Mbps", "RAN CPU mc")
"""Column names; a space in a name is where its header wraps (units on the second line)."""


def render(snapshot: TopSnapshot) -> Table:
    """The snapshot as a rich table (slices, then the shared row)."""
    scales = snapshot.scales
    table = Table(title=f"slicebed testbed top: {snapshot.url} at {snapshot.at:%H:%M:%S} UTC (nominal units: "
                  f"cpu_scale {scales.cpu:g}, rate_scale {scales.rate:g})", box=box.SIMPLE_HEAD,
                  caption=None if snapshot.slices else "no slicebed series in Prometheus yet (no slice deployed, "
                  "or the first scrapes are pending)")
    for column in COLUMNS:
        header = column if column == "QoS per user" else column.replace(" ", "\n", 1)
        table.add_column(header, justify="left" if column in ("slice", "type", "UPF", "QoS per user") else "right")
    for view in snapshot.slices:
        table.add_row(*slice_cells(view))
    table.add_section()
    table.add_row(*shared_cells(snapshot.shared))
    return table


def slice_cells(view: SliceView) -> list[str | Text]:
    """One slice's cells, in ``COLUMNS`` order."""
    kind = view.qos_kind
    meeting = view.meeting()
    return [view.name, view.type or MISSING, view.upf_tier or MISSING, number(view.users, 0), per_user(view),
            qos(view.worst(), kind), threshold(view.threshold, kind),
            MISSING if meeting is None else f"{meeting}/{len(view.qos)}", number(view.cpu_millicores, 0),
            number(view.bandwidth_mbps, 1), number(view.meter_mbps, 1), number(view.ran_cpu_millicores, 0)]


def shared_cells(shared: SharedView) -> list[str | Text]:
    """The shared row: sums over the slices against the capacities, in ``COLUMNS`` order."""
    return ["shared", "", "", "", "", "", "", "", against(shared.cpu_allocated, shared.cpu_capacity, 0),
            against(shared.bandwidth_allocated, shared.bandwidth_capacity, 1), number(shared.meter_mbps, 1),
            number(shared.ran_cpu_millicores, 0)]


def per_user(view: SliceView) -> Text:
    """``user value`` pairs, each coloured by the threshold, the first ``USERS_SHOWN`` of them."""
    kind = view.qos_kind
    if kind is None or not view.qos:
        return Text(MISSING)
    text = Text()
    for user, value in list(view.qos.items())[:USERS_SHOWN]:
        style = "" if view.threshold is None else "green" if meets(kind, value, view.threshold) else "bold red"
        text.append(f"{user}:", style="dim").append(f"{value:.3g}", style=style).append(" ")
    hidden = len(view.qos) - USERS_SHOWN
    if hidden > 0:
        text.append(f"+{hidden}", style="dim")
    text.rstrip()
    return text


def qos(value: float | None, kind: QosKind | None) -> str:
    """A QoS value with its unit (``-`` when missing)."""
    if value is None or kind is None:
        return MISSING
    return f"{value:.3g} {QOS_SERIES[kind].unit}".rstrip()


def threshold(value: float | None, kind: QosKind | None) -> str:
    """``> 3 Mbps`` or ``< 10 ms``: what a user's QoS must be to meet the threshold (equal is degraded)."""
    if value is None:
        return MISSING
    if kind is None:
        return f"{value:g}"
    return f"{'>' if HIGHER_IS_BETTER[kind] else '<'} {value:g} {QOS_SERIES[kind].unit}".rstrip()


def number(value: float | None, digits: int) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def against(total: float | None, capacity: float | None, digits: int) -> Text:
    """``sum/capacity``, red when the sum exceeds the capacity."""
    text = Text(f"{number(total, digits)}/{number(capacity, digits)}")
    if total is not None and capacity is not None and total > capacity:
        text.stylize("bold red")
    return text
