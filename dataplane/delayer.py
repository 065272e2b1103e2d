"""Userspace delay stage for kernels without sch_netem: hold packets from an NFQUEUE, release them after a delay.

Run on the receiving side, inside the receiving node's namespace, with an iptables rule that sends the peer's
packets to the queue, e.g. ``iptables -t mangle -A PREROUTING -i tr0 -m mac --mac-source MAC -j NFQUEUE
--queue-num 2``. Each packet is released ``delay ± uniform jitter`` after it arrived, never before the packet
ahead of it (no reordering, as TCP would suffer from it). Standalone: needs only the standard library and the
``netfilterqueue`` package. Stops on SIGTERM, releasing what it holds.
"""

from __future__ import annotations

import argparse
import random
import select
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from netfilterqueue import NetfilterQueue


class Packet(Protocol):
    """A queued packet: NFQUEUE lets it through when accepted."""

    def accept(self) -> None: ...

MAX_HELD_PACKETS = 65536


class Delayer:
    """Keeps packets in arrival order with their release times."""

    def __init__(self, delay_s: float, jitter_s: float, rng: random.Random) -> None:
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.rng = rng
        self.held: deque[tuple[float, Packet]] = deque()
        self.last_release = 0.0

    def hold(self, packet: Packet) -> None:
        """Queue ``packet`` for release after the delay (never before the previous packet)."""
        jitter = self.rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s > 0 else 0.0
        release = max(time.monotonic() + max(self.delay_s + jitter, 0.0), self.last_release)
        self.last_release = release
        self.held.append((release, packet))

    def release_due(self, now: float) -> None:
        """Accept every packet whose release time has come."""
        while self.held and self.held[0][0] <= now:
            self.held.popleft()[1].accept()

    def release_all(self) -> None:
        while self.held:
            self.held.popleft()[1].accept()

    def seconds_to_next(self, now: float) -> float | None:
        return max(self.held[0][0] - now, 0.0) if self.held else None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number")
    parser.add_argument("--delay-ms", type=float, required=True, help="mean added delay")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="uniform jitter amplitude (±)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.jitter_ms < 0:
        parser.error("--delay-ms and --jitter-ms must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    delayer = Delayer(args.delay_ms / 1000, args.jitter_ms / 1000, random.Random(args.seed))
    queue = NetfilterQueue()
    queue.bind(args.queue, delayer.hold, max_len=MAX_HELD_PACKETS)
    stopping = False

    def stop(_signal: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    descriptor = queue.get_fd()
    try:
        while not stopping:
            timeout = delayer.seconds_to_next(time.monotonic())
            try:
                readable, _, _ = select.select([descriptor], [], [], 0.5 if timeout is None else timeout)
            except InterruptedError:
                continue
            if readable:
                queue.run(block=False)
            delayer.release_due(time.monotonic())
    finally:
        delayer.release_all()
        queue.unbind()
    return 0


if __name__ == "__main__":
    sys.exit(main())
