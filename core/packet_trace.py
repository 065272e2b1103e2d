"""Recorded packet traces: packet sizes and inter-arrival times, from a CSV file or a libpcap capture.

CSV: a header row with ``interarrival_s`` and ``size_bytes`` (other columns are ignored), one packet per row.
pcap: the classic libpcap format (microsecond or nanosecond timestamps, either byte order); each record's original
length less its link, IP and UDP headers is the payload size, the gap between timestamps the inter-arrival time.

Every mistake (a negative inter-arrival time, a non-positive size, an empty trace, a trace that takes no time) is one
:class:`~core.errors.InputError` line naming the file and the row.
"""

from __future__ import annotations

import csv
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from core.errors import InputError

MAX_PAYLOAD_BYTES = 65000
PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
              b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
HEADER_BYTES = {1: 14 + 20 + 8, 101: 20 + 8, 113: 16 + 20 + 8, 228: 20 + 8}
"""Link, IPv4 and UDP header bytes by pcap link type (Ethernet, raw IP, Linux cooked, raw IPv4)."""


@dataclass(frozen=True)
class PacketTrace:
    """One packet per entry: the seconds since the previous packet and the payload bytes."""

    gaps_s: tuple[float, ...]
    sizes: tuple[int, ...]

    @property
    def duration_s(self) -> float:
        return math.fsum(self.gaps_s)

    @property
    def mean_rate_mbps(self) -> float:
        """The trace's average payload rate, replayed cyclically."""
        return sum(self.sizes) * 8 / self.duration_s / 1e6


def load_trace(path: str | Path) -> PacketTrace:
    """Read a ``.pcap`` capture or a CSV trace (any other suffix) and check it (see the module docstring)."""
    path = Path(path)
    try:
        rows = _pcap_rows(path) if path.suffix in {".pcap", ".cap"} else _csv_rows(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the trace ({exc.strerror or exc})") from None
    if not rows:
        raise InputError(f"{path}: the trace has no packets")
    for where, gap, size in rows:
        if not math.isfinite(gap) or gap < 0:
            raise InputError(f"{path}: {where}: inter-arrival time {gap:g} s is negative or not finite; "
                             "a trace lists packets in time order")
        if not 0 < size <= MAX_PAYLOAD_BYTES:
            raise InputError(f"{path}: {where}: packet size {size} bytes is outside 1..{MAX_PAYLOAD_BYTES}")
    trace = PacketTrace(tuple(gap for _, gap, _ in rows), tuple(size for _, _, size in rows))
    if trace.duration_s <= 0:
        raise InputError(f"{path}: every inter-arrival time is 0; the trace must take some time to replay")
    return trace


def _csv_rows(path: Path) -> list[tuple[str, float, int]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(line for line in handle if not line.startswith("#"))
        missing = {"interarrival_s", "size_bytes"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{path}: the CSV header lacks {', '.join(sorted(missing))} "
                             "(columns: interarrival_s,size_bytes)")
        rows = []
        for number, row in enumerate(reader, start=2):
            try:
                rows.append((f"row {number}", float(row["interarrival_s"]), int(row["size_bytes"])))
            except (TypeError, ValueError):
                raise InputError(f"{path}: row {number}: interarrival_s and size_bytes must be numbers, got "
                                 f"{row['interarrival_s']!r}, {row['size_bytes']!r}") from None
        return rows


def _pcap_rows(path: Path) -> list[tuple[str, float, int]]:
    data = path.read_bytes()
    if len(data) < 24 or data[:4] not in PCAP_MAGIC:
        raise InputError(f"{path}: not a libpcap capture (pcapng is not read: convert it with "
                         "`editcap -F pcap`)")
    order, tick = PCAP_MAGIC[data[:4]]
    link_type = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    overhead = HEADER_BYTES.get(link_type, 0)
    record = struct.Struct(order + "IIII")
    rows: list[tuple[str, float, int]] = []
    offset, previous = 24, None
    while offset + record.size <= len(data):
        seconds, fraction, captured, original = record.unpack_from(data, offset)
        stamp = seconds + fraction * tick
        rows.append((f"packet {len(rows) + 1}", 0.0 if previous is None else stamp - previous,
                     original - overhead))
        previous, offset = stamp, offset + record.size + captured
    return rows
