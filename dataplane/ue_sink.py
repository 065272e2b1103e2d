"""UE sinks (ue namespace): receive the slice's radio frames and measure each user's QoS.

Every ``--window-s`` the per-user throughput, mean and 95th-percentile one-way delay, and delivery ratio of the
window just ended are published as gauges (the QoS of eMBB, URLLC and mMTC slices: core.slice_types);
cumulative byte and packet counters and ``GET /stats`` give the raw measurements.

Local testbed: radio frames from the RAN emulator. Lab (``--subscribe``): the app server's packets themselves,
received inside the UE on its tunnel interface (``--device``, e.g. srsUE's ``tun_srsue``, OAI's ``oaitun_ue1``),
after the sink subscribed to the slice's stream through N3 and N6 (dataplane.subscription). The sink waits for the
interface (the UE attaches after the sink starts) and says whether it is there (``slicebed_ue_attached``) and how
long the hellos' round trip to the data network takes (``slicebed_ue_dn_rtt_seconds``).

    python -m dataplane.ue_sink --slice embb --mgmt 10.99.0.5:9464 --listen 10.101.7.2:6000
    python -m dataplane.ue_sink --slice embb --mgmt 0.0.0.0:9464 --listen 0.0.0.0:6000 --device tun_srsue \
        --subscribe embb-dn:5000
"""

from __future__ import annotations

import math
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from dataplane import cipher, packets, subscription
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
ATTACHED = Gauge("slicebed_ue_attached", "Whether the UE's tunnel interface exists (lab: the UE attached)",
                 ["slice"])
HELLOS = Counter("slicebed_ue_dn_hellos", "Hellos sent to the slice's app server through the UE's tunnel", ["slice"])
ECHOES = Counter("slicebed_ue_dn_echoes", "Hello echoes received back from the slice's app server", ["slice"])
DN_RTT = Gauge("slicebed_ue_dn_rtt_seconds", "Round trip UE -> N3 -> N6 -> data network -> UE of the last echoed hello",
               ["slice"])
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
    parser.add_argument("--listen", type=address, required=True, help="HOST:PORT the packets arrive on")
    parser.add_argument("--window-s", type=float, default=1.0, help="measurement window (s)")
    parser.add_argument("--verify-every", type=int, default=0,
                        help="decipher and check every Nth packet (0: never; deciphering costs as much as ciphering)")
    parser.add_argument("--work-factor", type=int, default=8, help="the RAN's work factor (for --verify-every)")
    parser.add_argument("--key", type=bytes.fromhex, help="master key as hex (default: the slice's test key)")
    parser.add_argument("--subscribe", type=address, help="lab: HOST:PORT of the slice's app server stream; the "
                        "packets are then the app server's own, not radio frames")
    parser.add_argument("--device", help="lab: receive (and subscribe) through this interface only, the UE's tunnel")
    parser.add_argument("--hello-s", type=float, default=1.0, help="lab: seconds between hellos to the app server")
    args = parser.parse_args(argv)
    if args.subscribe is None and args.device is not None:
        parser.error("--device needs --subscribe (the local testbed's sink receives radio frames on --listen)")
    stop = stop_event()
    state = SinkState(args.slice)
    master = args.key or cipher.test_master_key(args.slice)
    server = ControlServer(args.mgmt, {"stats": lambda _body: state.stats()}).start()
    sock = wait_for_device(args.listen, args.device, args.slice, stop, "radio" if args.subscribe is None else "stream")
    if sock is None:
        server.close()
        return

    def tick() -> None:
        next_close = time.monotonic() + args.window_s
        while not stop.wait(max(0.0, next_close - time.monotonic())):
            state.close_window(args.window_s)
            next_close += args.window_s

    threading.Thread(target=tick, name="window", daemon=True).start()
    if args.subscribe is not None:
        threading.Thread(target=say_hello, args=(sock, args.subscribe, args.device, args.slice, args.hello_s, stop),
                         name="hello", daemon=True).start()
    echoes, rtt = ECHOES.labels(args.slice), DN_RTT.labels(args.slice)
    received = 0
    try:
        while not stop.is_set():
            if not select.select([sock], [], [], 0.2)[0]:
                continue
            try:
                data = sock.recv(65535)
            except OSError:  # ICMP errors of the hellos surface here (the data network not reachable yet)
                continue
            now = time.time()
            if args.subscribe is not None:
                sent = subscription.parse_hello(data)
                if sent is not None:
                    echoes.inc()
                    rtt.set(time.monotonic() - sent)
                    continue
                try:
                    app = packets.parse_app(data)
                except packets.PacketError:
                    continue
                state.record(app.user, len(data), app.sequence, now - app.sent)
                continue
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


def device_present(device: str) -> bool:
    """Whether network interface ``device`` exists in this namespace."""
    return Path("/sys/class/net", device).exists()


def wait_for_device(listen: tuple[str, int], device: str | None, slice_name: str, stop: threading.Event,
                    what: str) -> socket.socket | None:
    """The ``what`` socket the packets arrive on, bound to ``device`` once that interface exists (None if stopped
    before)."""
    attached = ATTACHED.labels(slice_name)
    while device is not None and not device_present(device):
        attached.set(0)
        if stop.wait(0.5):
            return None
    if device is not None:
        attached.set(1)
    return udp_socket(listen, 1 << 20, what, device)


def say_hello(sock: socket.socket, app_server: tuple[str, int], device: str | None, slice_name: str, every_s: float,
              stop: threading.Event) -> None:
    """Send a hello to the app server every ``every_s`` seconds (and say whether the tunnel is still there)."""
    hellos, attached = HELLOS.labels(slice_name), ATTACHED.labels(slice_name)
    while True:
        if device is not None:
            attached.set(1 if device_present(device) else 0)
        try:
            sock.sendto(subscription.hello(time.monotonic()), app_server)
            hellos.inc()
        except OSError:  # not routable yet, or the name does not resolve yet: the next hello tries again
            pass
        if stop.wait(every_s):
            return


if __name__ == "__main__":
    main()
