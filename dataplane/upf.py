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
    try:
        while not stop.is_set():
            if not select.select([n6], [], [], 0.2)[0]:
                continue
            data = n6.recv(65535)
            received.inc()
            try:
                user = packets.parse_app(data).user
            except packets.PacketError:
                malformed.inc()
                continue
            n3.sendto(packets.gtpu_encapsulate(user + 1, data), args.ran)
            forwarded.inc()
            forwarded_bytes.inc(len(data))
    finally:
        server.close()


if __name__ == "__main__":
    main()
