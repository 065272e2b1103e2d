"""UE sinks (ue namespace): receive the slice's radio frames and measure each user's QoS.

Every ``--window-s`` the per-user throughput, mean and 95th-percentile one-way delay, and delivery ratio of the
window just ended are published as gauges (the QoS of eMBB, URLLC and mMTC slices: core.slice_types);
cumulative byte and packet counters and ``GET /stats`` give the raw measurements.

    python -m dataplane.ue_sink --slice embb --mgmt 10.99.0.5:9464 --listen 10.101.7.2:6000
"""

from __future__ import annotations

import math
import select
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from dataplane import cipher, packets
from dataplane.service import ControlServer, address, base_parser, stop_event, udp_socket

THROUGHPUT = Gauge("slicebed_user_throughput_bps", "Per-user downlink throughput over the last window",
                   ["slice", "user"])
DELAY = Gauge("slicebed_user_delay_seconds", "Per-user mean one-way delay over the last window", ["slice", "user"])
DELAY_P95 = Gauge("slicebed_user_delay_p95_seconds", "Per-user 95th-percentile one-way delay over the last window "
                  "(the window's length when nothing arrived)", ["slice", "user"])
DELIVERY = Gauge("slicebed_user_delivery_ratio", "Per-user share of the packets sent in the last window that arrived",
                 ["slice", "user"])
RECEIVED = Counter("slicebed_user_received_bytes", "Per-user payload bytes received", ["slice", "user"])
VERIFIED = Counter("slicebed_ue_deciphered_packets", "Packets deciphered and checked by the UE", ["slice", "result"])
PER_USER = (THROUGHPUT, DELAY, DELAY_P95, DELIVERY, RECEIVED)
FORGET_WINDOWS = 3  # a user silent this many windows has left: its series are removed
REORDER_PACKETS = 64
"""Sequence numbers this far below the last window's highest are late packets; further below, a new session."""


@dataclass
class UserWindow:
    """What one user received in the current window and in total.

    Sent packets are counted from the application's sequence numbers: the window expects every number above the
    highest one of the window before (a restarted session, whose numbers fall back, starts counting anew).
    """

    bytes: int = 0
    delays: list[float] = field(default_factory=list)
    lowest: int | None = None
    highest: int | None = None
    previous_highest: int | None = None
    total_bytes: int = 0
    total_packets: int = 0
    silent_windows: int = 0

    def add(self, size: int, sequence: int, delay: float) -> None:
        self.bytes += size
        self.delays.append(delay)
        self.lowest = sequence if self.lowest is None else min(self.lowest, sequence)
        self.highest = sequence if self.highest is None else max(self.highest, sequence)
        self.total_bytes += size
        self.total_packets += 1

    def expected(self) -> int:
        """Packets the application sent in this window, as far as the sequence numbers tell."""
        if self.highest is None or self.lowest is None:
            return 0
        first = self.lowest
        if self.previous_highest is not None and self.lowest > self.previous_highest - REORDER_PACKETS:
            first = self.previous_highest + 1  # the same session: what was lost at the window's start counts here
        return max(self.highest - first + 1, len(self.delays))

    def close(self) -> None:
        if self.highest is not None:
            self.previous_highest = self.highest
        self.bytes, self.delays, self.lowest, self.highest = 0, [], None, None


def percentile_95(values: list[float]) -> float:
    """The nearest-rank 95th percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass
class SinkState:
    """Per-user windows, shared by the receive loop and the window ticker."""

    slice_name: str
    users: dict[int, UserWindow] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_window: dict[str, dict[str, float]] = field(default_factory=dict)

    def record(self, user: int, size: int, sequence: int, delay: float) -> None:
        with self.lock:
            window = self.users.get(user) or self.users.setdefault(user, UserWindow())
            window.add(size, sequence, delay)
        RECEIVED.labels(self.slice_name, str(user)).inc(size)

    def close_window(self, seconds: float) -> None:
        """Publish the window that just ended and start a new one."""
        published: dict[str, dict[str, float]] = {}
        with self.lock:
            for user, window in list(self.users.items()):
                label = str(user)
                window.silent_windows = 0 if window.delays else window.silent_windows + 1
                if window.silent_windows >= FORGET_WINDOWS:
                    del self.users[user]
                    for metric in PER_USER:
                        metric.remove(self.slice_name, label)
                    continue
                throughput = window.bytes * 8 / seconds
                THROUGHPUT.labels(self.slice_name, label).set(throughput)
                if window.delays:
                    DELAY.labels(self.slice_name, label).set(math.fsum(window.delays) / len(window.delays))
                    DELAY_P95.labels(self.slice_name, label).set(percentile_95(window.delays))
                    DELIVERY.labels(self.slice_name, label).set(len(window.delays) / window.expected())
                else:  # starved: nothing arrived for a whole window
                    DELAY_P95.labels(self.slice_name, label).set(seconds)
                    DELIVERY.labels(self.slice_name, label).set(0.0)
                published[label] = {"throughput_bps": throughput, "packets": len(window.delays)}
                window.close()
            self.last_window = published

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"time": time.time(), "slice": self.slice_name, "last_window": self.last_window,
                    "users": {str(user): {"bytes": w.total_bytes, "packets": w.total_packets}
                              for user, w in self.users.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--listen", type=address, required=True, help="HOST:PORT the radio frames arrive on")
    parser.add_argument("--window-s", type=float, default=1.0, help="measurement window (s)")
    parser.add_argument("--verify-every", type=int, default=0,
                        help="decipher and check every Nth packet (0: never; deciphering costs as much as ciphering)")
    parser.add_argument("--work-factor", type=int, default=8, help="the RAN's work factor (for --verify-every)")
    parser.add_argument("--key", type=bytes.fromhex, help="master key as hex (default: the slice's test key)")
    args = parser.parse_args(argv)
    stop = stop_event()
    state = SinkState(args.slice)
    master = args.key or cipher.test_master_key(args.slice)
    sock = udp_socket(args.listen, 1 << 20, "radio")
    server = ControlServer(args.mgmt, {"stats": lambda _body: state.stats()}).start()

    def tick() -> None:
        next_close = time.monotonic() + args.window_s
        while not stop.wait(max(0.0, next_close - time.monotonic())):
            state.close_window(args.window_s)
            next_close += args.window_s

    threading.Thread(target=tick, name="window", daemon=True).start()
    received = 0
    try:
        while not stop.is_set():
            if not select.select([sock], [], [], 0.2)[0]:
                continue
            data = sock.recv(65535)
            now = time.time()
            try:
                frame = packets.parse_radio(data)
            except packets.PacketError:
                continue
            state.record(frame.user, len(frame.ciphered), frame.app.sequence, now - frame.app.sent)
            received += 1
            if args.verify_every and received % args.verify_every == 0:
                plain = cipher.cipher(cipher.ue_key(master, frame.user), frame.count, 1, frame.ciphered,
                                      args.work_factor)
                ok = len(plain) >= packets.APP.size and packets.parse_app(plain) == frame.app
                VERIFIED.labels(args.slice, "ok" if ok else "mismatch").inc()
    finally:
        server.close()


if __name__ == "__main__":
    main()
