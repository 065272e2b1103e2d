"""Application server (app namespace): per-user video-like downlink towards the slice's UPF.

Each active user gets a variable-bit-rate stream: the per-user rate profile (constant ``rate_mbps``
or a recorded per-second rate trace, replayed from a different offset for each user) modulated per
video frame by a log-normal size factor, paced evenly within the frame. ``POST /control`` with
``{"users": N}`` (and optionally ``rate_mbps`` or ``rate_trace``) sets the active users: users
0..N-1 stream, the others have left.

    python -m dataplane.app_server --slice embb --mgmt 10.99.0.4:9464 --upf 10.100.0.2:5000
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from dataplane import packets
from dataplane.service import ControlServer, address, base_parser, stop_event, udp_socket

ACTIVE = Gauge("slicebed_active_users", "Users active in the slice (streaming)", ["slice"])
OFFERED = Gauge("slicebed_user_offered_rate_bps", "Per-user rate of the profile now (before frame variation)",
                ["slice"])
SENT = Counter("slicebed_app_sent_bytes", "Bytes sent by the application server", ["slice"])
TICK_S = 0.002
MAX_USERS = 1000


class RateProfile:
    """Per-user rate in bit/s at a time: a constant, or a per-second trace replayed cyclically."""

    def __init__(self, rate_mbps: float, trace_mbps: list[float] | None = None) -> None:
        values = trace_mbps or [rate_mbps]
        if any(not math.isfinite(v) or v < 0 for v in values) or not values:
            raise ValueError("rates must be finite and >= 0 Mbps")
        self.trace = np.asarray(values, dtype=float) * 1e6

    def rate(self, user: int, seconds: float) -> float:
        return float(self.trace[(int(seconds) + 7 * user) % len(self.trace)])

    def describe(self) -> dict[str, Any]:
        if len(self.trace) == 1:
            return {"rate_mbps": self.trace[0] / 1e6, "rate_trace": None}
        return {"rate_mbps": None, "rate_trace": (self.trace / 1e6).tolist()}


class Streamer:
    """The sender: paces every active user's stream and applies control changes."""

    def __init__(self, slice_name: str, upf: tuple[str, int], profile: RateProfile, packet_bytes: int,
                 fps: float, vbr_sigma: float, seed: int) -> None:
        self.slice_name, self.upf, self.profile = slice_name, upf, profile
        self.packet_bytes, self.fps, self.vbr_sigma = packet_bytes, fps, vbr_sigma
        self.rng = np.random.default_rng(seed)
        self.users = 0
        self.lock = threading.Lock()
        self.credit: dict[int, float] = {}
        self.factor: dict[int, float] = {}
        self.sequence: dict[int, int] = {}
        self.sock = udp_socket()
        ACTIVE.labels(slice_name).set(0)

    def control(self, body: dict[str, Any] | None) -> dict[str, Any]:
        """GET: the current settings; POST: change ``users`` and/or the rate profile."""
        with self.lock:
            if body:
                unknown = set(body) - {"users", "rate_mbps", "rate_trace"}
                if unknown:
                    raise ValueError(f"unknown control keys {sorted(unknown)}; allowed: users, rate_mbps, rate_trace")
                if "rate_mbps" in body or "rate_trace" in body:
                    rate = body.get("rate_mbps")
                    current = self.profile.describe()["rate_mbps"] or 0.0
                    self.profile = RateProfile(float(current if rate is None else rate), body.get("rate_trace"))
                if "users" in body:
                    users = int(body["users"])
                    if not 0 <= users <= MAX_USERS:
                        raise ValueError(f"users must be in [0, {MAX_USERS}], got {users}")
                    self._set_users(users)
            return {"slice": self.slice_name, "users": self.users, **self.profile.describe()}

    def _set_users(self, users: int) -> None:
        for user in range(users, self.users):  # departures
            self.credit.pop(user, None)
            self.factor.pop(user, None)
        for user in range(self.users, users):  # arrivals start a new session
            self.credit[user], self.factor[user], self.sequence[user] = 0.0, 1.0, 0
        self.users = users
        ACTIVE.labels(self.slice_name).set(users)

    def run(self, stop: threading.Event) -> None:
        start = last = time.monotonic()
        next_frame = start
        sent_bytes = SENT.labels(self.slice_name)
        offered = OFFERED.labels(self.slice_name)
        while not stop.wait(TICK_S):
            now = time.monotonic()
            elapsed, last = now - last, now
            with self.lock:
                if now >= next_frame:
                    next_frame = now + 1 / self.fps
                    sigma = self.vbr_sigma
                    for user in self.factor:
                        self.factor[user] = float(self.rng.lognormal(-sigma * sigma / 2, sigma)) if sigma else 1.0
                offered.set(self.profile.rate(0, now - start))
                burst_cap = max(self.packet_bytes, 2 * self.profile.trace.max() / 8 / self.fps)
                for user in range(self.users):
                    rate = self.profile.rate(user, now - start) * self.factor[user]
                    credit = min(self.credit[user] + rate / 8 * elapsed, burst_cap)
                    while credit >= self.packet_bytes:
                        self.sock.sendto(packets.app_packet(user, self.sequence[user], time.time(),
                                                            self.packet_bytes), self.upf)
                        self.sequence[user] += 1
                        credit -= self.packet_bytes
                        sent_bytes.inc(self.packet_bytes)
                    self.credit[user] = credit


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--upf", type=address, required=True, help="HOST:PORT of the UPF's N6 socket")
    parser.add_argument("--users", type=int, default=0, help="active users at start")
    parser.add_argument("--rate-mbps", type=float, default=12.0, help="per-user rate (constant profile)")
    parser.add_argument("--rate-trace", type=argparse_trace, help="file of per-second per-user rates in Mbps")
    parser.add_argument("--packet-bytes", type=int, default=1400, help="UDP payload size")
    parser.add_argument("--fps", type=float, default=30.0, help="video frames per second")
    parser.add_argument("--vbr-sigma", type=float, default=0.25, help="log-normal sigma of the frame-size factor")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not packets.APP.size <= args.packet_bytes <= 65000:
        parser.error(f"--packet-bytes must be in [{packets.APP.size}, 65000]")
    streamer = Streamer(args.slice, args.upf, RateProfile(args.rate_mbps, args.rate_trace), args.packet_bytes,
                        args.fps, args.vbr_sigma, args.seed)
    streamer.control({"users": args.users})
    stop = stop_event()
    server = ControlServer(args.mgmt, {"control": streamer.control}).start()
    try:
        streamer.run(stop)
    finally:
        server.close()


def argparse_trace(path: str) -> list[float]:
    """A one-column file of Mbps values (``#`` comments allowed), for argparse ``type=``."""
    try:
        values = np.loadtxt(path, dtype=float, ndmin=1, comments="#")
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{path}: not a one-column Mbps trace ({exc})") from None
    if values.size == 0:
        raise argparse.ArgumentTypeError(f"{path}: the trace is empty")
    return values.tolist()


if __name__ == "__main__":
    main()
