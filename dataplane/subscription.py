"""How a lab's UE sinks get their slice's stream: they subscribe to the app server across the real 5G data path.

On a lab the app server runs in the slice's data network (N6) and the sink inside the UE, bound to its tunnel
interface. The UPF NATs the UE subnet (manifests/open5gs/slice/upf/n6.sh), so the data network cannot open a flow
towards a UE: the sink sends a hello datagram every second from its receiving socket, through the tunnel, N3 and N6,
to the app server's stream address; the app server echoes each hello at once and streams the users' packets back to
every address a hello came from in the last ``TIMEOUT_S`` (the NAT's mapping, kept alive by the hellos). The echo
gives the sink the round trip UE -> N3 -> N6 -> data network -> UE (``slicebed_ue_dn_rtt_seconds``).
"""

from __future__ import annotations

import struct
import threading
import time

HELLO = struct.Struct("!8sd")  # magic, the sink's send time (its monotonic clock; only the sink reads it)
MAGIC = b"sbhello1"
TIMEOUT_S = 5.0
"""A subscriber silent this long has gone (its UE detached, or the sink stopped)."""


def hello(sent: float) -> bytes:
    """A hello datagram carrying the sink's send time ``sent``."""
    return HELLO.pack(MAGIC, sent)


def parse_hello(data: bytes) -> float | None:
    """The send time of a hello (or of its echo); None for any other datagram."""
    if len(data) != HELLO.size:
        return None
    magic, sent = HELLO.unpack(data)
    return sent if magic == MAGIC else None


class Subscribers:
    """The addresses that said hello in the last ``timeout_s`` seconds, in the order they first did."""

    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.last_seen: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()

    def saw(self, address: tuple[str, int], now: float | None = None) -> None:
        with self.lock:
            self.last_seen[address] = time.monotonic() if now is None else now

    def current(self, now: float | None = None) -> list[tuple[str, int]]:
        """The live subscribers (the silent ones are forgotten)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            for address in [a for a, seen in self.last_seen.items() if now - seen > self.timeout_s]:
                del self.last_seen[address]
            return list(self.last_seen)
