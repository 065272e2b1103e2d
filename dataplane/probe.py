"""A UDP echo server and round-trip prober, run inside testbed namespaces to measure the delay between tiers.

``python -m dataplane.probe serve --port P --seconds S`` echoes datagrams for S seconds;
``python -m dataplane.probe rtt --host H --port P --count N`` prints the round-trip times as JSON.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Sequence


def serve(port: int, seconds: float) -> None:
    """Echo every datagram back to its sender until ``seconds`` pass without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("0.0.0.0", port))
        server.settimeout(seconds)
        try:
            while True:
                payload, sender = server.recvfrom(2048)
                server.sendto(payload, sender)
        except TimeoutError:
            return


def round_trips(host: str, port: int, count: int, interval_s: float, timeout_s: float = 1.0) -> list[float]:
    """Round-trip times (seconds) of ``count`` probes; lost probes are left out."""
    times: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(timeout_s)
        for sequence in range(count):
            payload = sequence.to_bytes(4, "big")
            sent = time.monotonic()
            client.sendto(payload, (host, port))
            try:
                while client.recvfrom(2048)[0] != payload:
                    pass
            except TimeoutError:
                continue
            times.append(time.monotonic() - sent)
            time.sleep(interval_s)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    serve_parser = actions.add_parser("serve")
    serve_parser.add_argument("--port", type=int, required=True)
    serve_parser.add_argument("--seconds", type=float, default=10.0)
    rtt_parser = actions.add_parser("rtt")
    rtt_parser.add_argument("--host", required=True)
    rtt_parser.add_argument("--port", type=int, required=True)
    rtt_parser.add_argument("--count", type=int, default=40)
    rtt_parser.add_argument("--interval-s", type=float, default=0.02)
    args = parser.parse_args(argv)
    if args.action == "serve":
        serve(args.port, args.seconds)
    else:
        print(json.dumps({"rtt_s": round_trips(args.host, args.port, args.count, args.interval_s)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
