"""RAN emulator (edge): GTP-U in, PDCP-style ciphering and per-UE deficit-round-robin scheduling, radio out.

An emulator, not a gNB: there is no PHY/MAC and no control plane. Its per-packet work is real (every
byte is ciphered, see dataplane.cipher) so its throughput is bound by the CPU its cgroup
allows, like the srsRAN gNB of the MicroOpt testbed.

    python -m dataplane.ran_emulator --slice embb --mgmt 10.99.0.1:9464 \
        --listen 10.100.0.1:2152 --ue 10.101.7.2:6000 --work-factor 8
"""

from __future__ import annotations

import select
import socket

from prometheus_client import Counter, Gauge

from dataplane import cipher, packets
from dataplane.scheduler import DeficitRoundRobin
from dataplane.service import ControlServer, address, base_parser, stop_event, udp_socket

PACKETS = Counter("slicebed_ran_packets", "Downlink packets in the RAN emulator", ["slice", "event"])
BYTES = Counter("slicebed_ran_ciphered_bytes", "Bytes ciphered and transmitted by the RAN emulator", ["slice"])
QUEUED = Gauge("slicebed_ran_queued_packets", "Packets waiting in the per-UE queues", ["slice"])
WORK = Gauge("slicebed_ran_work_factor", "Keystream hash iterations per 32-byte block", ["slice"])
RECEIVE_BATCH = 32
SEND_BATCH = 4


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--listen", type=address, required=True, help="HOST:PORT of the GTP-U (N3) socket")
    parser.add_argument("--ue", type=address, required=True, help="HOST:PORT of the UE sinks (emulated radio)")
    parser.add_argument("--work-factor", type=int, default=8,
                        help="keystream hash iterations per 32-byte block: the ciphering cost per byte")
    parser.add_argument("--queue-packets", type=int, default=64, help="per-UE drop-tail queue length")
    parser.add_argument("--key", type=bytes.fromhex, help="master key as hex (default: the slice's test key)")
    args = parser.parse_args(argv)
    if args.work_factor < 1 or args.queue_packets < 1:
        parser.error("--work-factor and --queue-packets must be >= 1")
    master = args.key or cipher.test_master_key(args.slice)
    stop = stop_event()
    n3 = udp_socket(args.listen, 256 << 10, "GTP-U")
    n3.setblocking(False)
    radio = udp_socket()
    scheduler = DeficitRoundRobin(args.queue_packets)
    counts: dict[int, int] = {}
    keys: dict[int, bytes] = {}
    received, sent, dropped, malformed = (PACKETS.labels(args.slice, event)
                                          for event in ("received", "sent", "dropped", "malformed"))
    ciphered_bytes = BYTES.labels(args.slice)
    queued = QUEUED.labels(args.slice)
    WORK.labels(args.slice).set(args.work_factor)
    server = ControlServer(args.mgmt, {"status": lambda _body: {
        "slice": args.slice, "work_factor": args.work_factor, "queued": len(scheduler),
        "dropped": scheduler.dropped}}).start()
    try:
        while not stop.is_set():
            taken, bad, full = receive_waiting(n3, scheduler)
            received.inc(taken)
            malformed.inc(bad)
            dropped.inc(full)
            frames, size = 0, 0
            for _ in range(SEND_BATCH):
                item = scheduler.next()
                if item is None:
                    break
                user, pdu = item
                count = counts.get(user, 0)
                counts[user] = count + 1
                key = keys.get(user) or keys.setdefault(user, cipher.ue_key(master, user))
                radio.sendto(packets.radio_frame(count, pdu, cipher.cipher(key, count, 1, pdu, args.work_factor)),
                             args.ue)
                frames, size = frames + 1, size + len(pdu)
            sent.inc(frames)
            ciphered_bytes.inc(size)
            queued.set(len(scheduler))
            if not len(scheduler):
                select.select([n3], [], [], 0.2)
    finally:
        server.close()


def receive_waiting(n3: socket.socket, scheduler: DeficitRoundRobin) -> tuple[int, int, int]:
    """Queue what waits on the non-blocking GTP-U socket (at most RECEIVE_BATCH packets) for its UE: (packets
    received, malformed, dropped by a full queue). The metrics are counted once per batch, not per packet."""
    bad = full = 0
    for taken in range(RECEIVE_BATCH):
        try:
            data = n3.recv(65535)
        except BlockingIOError:
            return taken, bad, full
        try:
            teid, pdu = packets.gtpu_decapsulate(data)
        except packets.PacketError:
            bad += 1
            continue
        if packets.app_user(pdu) is None:
            bad += 1
        elif not scheduler.enqueue(teid - 1, pdu):
            full += 1
    return RECEIVE_BATCH, bad, full

if __name__ == "__main__":
    main()
