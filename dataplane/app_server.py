"""Application server (app namespace): per-user downlink towards the slice's UPF, shaped by the slice type.

Each active user has its own packet source (dataplane.sources): eMBB video (the per-user rate profile, constant
``rate_mbps`` or a per-second rate trace, modulated per video frame), URLLC interactive small packets, mMTC
periodic messages from a group of devices, or a recorded packet trace (``--trace``, CSV or pcap). ``POST
/control`` with ``{"users": N}`` (and for eMBB optionally ``rate_mbps`` or ``rate_trace``) sets the active users:
users 0..N-1 send, the others have left.

Local testbed: every packet goes to the slice's emulated UPF (``--upf``). Lab: the app server sits in the slice's
data network and streams to the UE sinks that subscribe on ``--listen`` through the real UPF (dataplane.subscription);
user ``u`` goes to the ``u mod n``-th of the ``n`` live subscribers.

    python -m dataplane.app_server --slice embb --type embb --mgmt 10.99.0.4:9464 --upf 10.100.0.2:5000
    python -m dataplane.app_server --slice embb --mgmt 0.0.0.0:9464 --listen 0.0.0.0:5000 --packet-bytes 1300
"""

from __future__ import annotations

import argparse
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from core.errors import InputError
from core.packet_trace import load_trace
from core.slice_types import SLICE_TYPES
from dataplane import packets, subscription
from dataplane.service import ControlServer, address, base_parser, stop_event, udp_socket
from dataplane.sources import RateProfile, Source, SourceSettings, user_source

ACTIVE = Gauge("slicebed_active_users", "Users active in the slice (sending)", ["slice"])
OFFERED = Gauge("slicebed_user_offered_rate_bps", "Per-user rate of the eMBB profile now (before frame variation)",
                ["slice"])
SENT = Counter("slicebed_app_sent_bytes", "Bytes sent by the application server", ["slice"])
SUBSCRIBED = Gauge("slicebed_app_subscribers", "UE sinks subscribed to the slice's stream (lab)", ["slice"])
TICK_S = 0.002
MAX_USERS = 1000
MAX_LAG_S = 0.5
"""A sender that fell this far behind (a stalled process) skips the backlog instead of bursting it."""
DEFAULT_PACKET_BYTES = {"embb": 1400, "urllc": 200, "mmtc": 100}


@dataclass
class Flow:
    """One active user: its source, the next packet's size and when it leaves, the next sequence number."""

    source: Source
    size: int
    due: float
    sequence: int = 0


class Streamer:
    """The sender: paces every active user's source and applies control changes.

    Packets go to ``upf`` if given, else to the live subscribers of ``subscribers`` (``sock`` is then the socket
    they subscribe on: the stream leaves from the address their hellos reached, as the UPF's NAT expects).
    """

    def __init__(self, slice_name: str, upf: tuple[str, int] | None, settings: SourceSettings, profile: RateProfile,
                 seed: int, sock: socket.socket | None = None,
                 subscribers: subscription.Subscribers | None = None) -> None:
        self.slice_name, self.upf, self.settings, self.profile = slice_name, upf, settings, profile
        self.rng = np.random.default_rng(seed)
        self.flows: dict[int, Flow] = {}
        self.lock = threading.Lock()
        self.sock = sock or udp_socket()
        self.subscribers = subscribers
        ACTIVE.labels(slice_name).set(0)

    @property
    def users(self) -> int:
        return len(self.flows)

    def control(self, body: dict[str, Any] | None) -> dict[str, Any]:
        """GET: the current settings; POST: change ``users`` and/or (eMBB) the rate profile."""
        with self.lock:
            if body:
                allowed = {"users", "rate_mbps", "rate_trace"} if self.settings.slice_type == "embb" else {"users"}
                unknown = set(body) - allowed
                if unknown:
                    raise ValueError(f"unknown control keys {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
                if "rate_mbps" in body or "rate_trace" in body:
                    rate = body.get("rate_mbps")
                    current = float(self.profile.trace[0]) / 1e6 if len(self.profile.trace) == 1 else 0.0
                    self.profile = RateProfile(float(current if rate is None else rate), body.get("rate_trace"))
                if "users" in body:
                    users = int(body["users"])
                    if not 0 <= users <= MAX_USERS:
                        raise ValueError(f"users must be in [0, {MAX_USERS}], got {users}")
                    self._set_users(users)
            return {"slice": self.slice_name, "type": self.settings.slice_type, "users": self.users,
                    **self.profile.describe()}

    def _set_users(self, users: int) -> None:
        for user in range(users, len(self.flows)):  # departures
            del self.flows[user]
        now = time.monotonic()
        for user in range(len(self.flows), users):  # arrivals start a new session
            source = user_source(self.settings, lambda: self.profile, user, self.rng)
            gap, size = next(source)
            self.flows[user] = Flow(source, size, now + gap)
        ACTIVE.labels(self.slice_name).set(users)

    def destinations(self, now: float) -> list[tuple[str, int]]:
        """Where packets go now: the UPF, or the live subscribers (none: the users' packets are not sent)."""
        if self.subscribers is None:
            assert self.upf is not None
            return [self.upf]
        current = self.subscribers.current(now)
        SUBSCRIBED.labels(self.slice_name).set(len(current))
        return current

    def run(self, stop: threading.Event) -> None:
        sent_bytes = SENT.labels(self.slice_name)
        offered = OFFERED.labels(self.slice_name)
        start = time.monotonic()
        while not stop.wait(TICK_S):
            now = time.monotonic()
            targets = self.destinations(now)
            with self.lock:
                offered.set(self.profile.rate(0, now - start))
                for user, flow in self.flows.items():
                    if now - flow.due > MAX_LAG_S:
                        flow.due = now
                    while flow.due <= now:
                        if flow.size and targets:
                            target = targets[user % len(targets)]
                            self.sock.sendto(packets.app_packet(user, flow.sequence, time.time(), flow.size), target)
                            sent_bytes.inc(flow.size)
                        if flow.size:
                            flow.sequence += 1  # a packet nobody subscribed to is lost, as on a network
                        gap, flow.size = next(flow.source)
                        flow.due += gap


def answer_hellos(sock: socket.socket, subscribers: subscription.Subscribers, stop: threading.Event) -> None:
    """Echo every hello on ``sock`` and record its sender as a subscriber, until ``stop`` is set."""
    while not stop.is_set():
        if not select.select([sock], [], [], 0.2)[0]:
            continue
        try:
            data, sender = sock.recvfrom(2048)
        except OSError:  # e.g. ICMP port unreachable of a subscriber that has gone
            continue
        if subscription.parse_hello(data) is not None:
            subscribers.saw(sender)
            sock.sendto(data, sender)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--upf", type=address, help="HOST:PORT of the emulated UPF's N6 socket (local testbed)")
    target.add_argument("--listen", type=address, help="HOST:PORT the UE sinks subscribe on (lab: the stream goes "
                        "back to each subscriber through the UPF)")
    parser.add_argument("--type", choices=SLICE_TYPES, default="embb", help="slice type: how the users send")
    parser.add_argument("--users", type=int, default=0, help="active users at start")
    parser.add_argument("--rate-mbps", type=float, default=12.0, help="eMBB: per-user rate (constant profile)")
    parser.add_argument("--rate-trace", type=argparse_rates, help="eMBB: file of per-second per-user rates in Mbps")
    parser.add_argument("--packet-bytes", type=int, help="UDP payload size (default by type: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_PACKET_BYTES.items()) + ")")
    parser.add_argument("--fps", type=float, default=SourceSettings.fps, help="eMBB: video frames per second")
    parser.add_argument("--vbr-sigma", type=float, default=SourceSettings.vbr_sigma,
                        help="eMBB: log-normal sigma of the frame size")
    parser.add_argument("--interval-ms", type=float, default=SourceSettings.interval_ms,
                        help="URLLC: mean inter-arrival time per user")
    parser.add_argument("--devices", type=int, default=SourceSettings.devices, help="mMTC: devices per user")
    parser.add_argument("--period-s", type=float, default=SourceSettings.period_s,
                        help="mMTC: each device's reporting period")
    parser.add_argument("--trace", type=argparse_packet_trace,
                        help="recorded packets to replay instead (CSV interarrival_s,size_bytes or .pcap)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    packet_bytes = args.packet_bytes or DEFAULT_PACKET_BYTES[args.type]
    if not packets.APP.size <= packet_bytes <= 65000:
        parser.error(f"--packet-bytes must be in [{packets.APP.size}, 65000]")
    if min(args.fps, args.interval_ms, args.devices, args.period_s) <= 0:
        parser.error("--fps, --interval-ms, --devices and --period-s must be > 0")
    settings = SourceSettings(args.type, packet_bytes, args.fps, args.vbr_sigma, args.interval_ms, args.devices,
                              args.period_s, args.trace)
    subscribers = subscription.Subscribers() if args.listen else None
    sock = udp_socket(args.listen, 1 << 20, "stream") if args.listen else None
    streamer = Streamer(args.slice, args.upf, settings, RateProfile(args.rate_mbps, args.rate_trace), args.seed, sock,
                        subscribers)
    streamer.control({"users": args.users})
    stop = stop_event()
    if sock is not None and subscribers is not None:
        threading.Thread(target=answer_hellos, args=(sock, subscribers, stop), name="hellos", daemon=True).start()
    server = ControlServer(args.mgmt, {"control": streamer.control}).start()
    try:
        streamer.run(stop)
    finally:
        server.close()


def argparse_rates(path: str) -> list[float]:
    """A one-column file of Mbps values (``#`` comments allowed), for argparse ``type=``."""
    try:
        values = np.loadtxt(path, dtype=float, ndmin=1, comments="#")
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{path}: not a one-column Mbps trace ({exc})") from None
    if values.size == 0:
        raise argparse.ArgumentTypeError(f"{path}: the trace is empty")
    return values.tolist()


def argparse_packet_trace(path: str) -> Any:
    """A recorded packet trace (core.packet_trace), for argparse ``type=``."""
    try:
        return load_trace(path)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    main()
