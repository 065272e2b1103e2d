"""User-plane function (regional): receives the slice's downlink on N6 and tunnels it to the RAN in GTP-U.

    python -m dataplane.upf --slice embb --mgmt 10.99.0.2:9464 \
        --listen 10.100.0.2:5000 --ran 10.100.0.1:2152 --dscp 10
"""

from __future__ import annotations

import select
import socket

from prometheus_client import Counter

from dataplane import packets
from dataplane.service import ControlServer, address, base_parser, stop_event, udp_socket

PACKETS = Counter("slicebed_upf_packets", "Downlink packets handled by the UPF", ["slice", "event"])
BYTES = Counter("slicebed_upf_bytes", "Downlink payload bytes forwarded by the UPF", ["slice"])
RECEIVE_BATCH = 64


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--listen", type=address, required=True, help="HOST:PORT of N6 (from the app server)")
    parser.add_argument("--ran", type=address, required=True, help="HOST:PORT of the RAN emulator's GTP-U socket")
    parser.add_argument("--dscp", type=int, default=0, choices=range(64), metavar="0-63",
                        help="DSCP of the GTP-U packets (the transport meters the slice by it)")
    args = parser.parse_args(argv)
    stop = stop_event()
    n6 = udp_socket(args.listen, 1 << 20, "N6")
    n3 = udp_socket()
    n3.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, args.dscp << 2)
    received, forwarded, malformed = (PACKETS.labels(args.slice, event) for event in ("received", "forwarded",
                                                                                    "malformed"))
    forwarded_bytes = BYTES.labels(args.slice)
    server = ControlServer(args.mgmt, {"status": lambda _body: {"slice": args.slice, "ran": list(args.ran)}}).start()
    n6.setblocking(False)
    try:
        while not stop.is_set():
            if not select.select([n6], [], [], 0.2)[0]:
                continue
            count, good, size = forward_waiting(n6, n3, args.ran)
            received.inc(count)
            malformed.inc(count - good)
            forwarded.inc(good)
            forwarded_bytes.inc(size)
    finally:
        server.close()


def forward_waiting(n6: socket.socket, n3: socket.socket, ran: tuple[str, int]) -> tuple[int, int, int]:
    """Tunnel what waits on the non-blocking ``n6`` (at most RECEIVE_BATCH packets) to ``ran``: (packets received,
    packets forwarded, payload bytes forwarded). The metrics are counted once per batch, not per packet."""
    count = good = size = 0
    for count in range(RECEIVE_BATCH):
        try:
            data = n6.recv(65535)
        except BlockingIOError:
            return count, good, size
        user = packets.app_user(data)
        if user is not None:
            n3.sendto(packets.gtpu_encapsulate(user + 1, data), ran)
            good += 1
            size += len(data)
    return count + 1, good, size


if __name__ == "__main__":
    main()
