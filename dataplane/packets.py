"""Wire formats of the emulated eMBB data plane.

- App header (app server -> UPF, inside every later layer): user id, sequence number, send time.
- GTP-U (UPF -> RAN, 3GPP TS 29.281): version 1, PT=1, message type 255 (G-PDU), length, TEID = user id + 1.
- Radio header (RAN -> UE): user id, PDCP COUNT, the app's sequence number and send time in clear (the emulated
  MAC/PHY delivers to the right UE; the sequence lets the UE count losses, the time measure one-way delay),
  followed by the ciphered PDU.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

APP = struct.Struct("!HId")  # user, sequence, send time (time.time())
USER = struct.Struct("!H")  # the app header's first field
GTPU = struct.Struct("!BBHI")  # flags, message type, length, TEID
RADIO = struct.Struct("!HIId")  # user, PDCP COUNT, app sequence, app send time
GTPU_FLAGS = 0x30  # version 1, protocol type GTP
GTPU_GPDU = 0xFF


class PacketError(ValueError):
    """A packet too short or with an unexpected header."""


@dataclass(frozen=True)
class AppHeader:
    user: int
    sequence: int
    sent: float


def app_packet(user: int, sequence: int, sent: float, size: int) -> bytes:
    """An application datagram of ``size`` bytes (at least the header) for ``user``."""
    header = APP.pack(user, sequence & 0xFFFFFFFF, sent)
    return header + bytes(max(0, size - APP.size))


def app_user(data: bytes) -> int | None:
    """The user id of an application datagram, or None when it is shorter than its header (the per-packet path)."""
    return USER.unpack_from(data)[0] if len(data) >= APP.size else None


def parse_app(data: bytes) -> AppHeader:
    if len(data) < APP.size:
        raise PacketError(f"application datagram of {len(data)} bytes is shorter than its header")
    return AppHeader(*APP.unpack_from(data))


def gtpu_encapsulate(teid: int, payload: bytes) -> bytes:
    """A GTP-U G-PDU carrying ``payload`` on tunnel ``teid``."""
    return GTPU.pack(GTPU_FLAGS, GTPU_GPDU, len(payload), teid) + payload


def gtpu_decapsulate(data: bytes) -> tuple[int, bytes]:
    """(TEID, inner payload) of a G-PDU."""
    if len(data) < GTPU.size:
        raise PacketError(f"GTP-U packet of {len(data)} bytes is shorter than its header")
    flags, kind, length, teid = GTPU.unpack_from(data)
    if flags & 0xE0 != 0x20 or kind != GTPU_GPDU or length != len(data) - GTPU.size:
        raise PacketError(f"not a GTP-U v1 G-PDU (flags {flags:#x}, type {kind}, length {length})")
    return teid, data[GTPU.size:]


@dataclass(frozen=True)
class RadioFrame:
    user: int
    count: int
    """PDCP COUNT (the RAN's, per user)."""
    app: AppHeader
    """The application header's sequence number and send time, in clear."""
    ciphered: bytes


def radio_frame(count: int, pdu: bytes, ciphered: bytes) -> bytes:
    """The radio frame of ``pdu`` (an application datagram) ciphered as ``ciphered`` with PDCP COUNT ``count``."""
    user, sequence, sent = APP.unpack_from(pdu)
    return RADIO.pack(user, count & 0xFFFFFFFF, sequence, sent) + ciphered


def parse_radio(data: bytes) -> RadioFrame:
    """The header fields and ciphered PDU of a radio frame."""
    if len(data) < RADIO.size:
        raise PacketError(f"radio frame of {len(data)} bytes is shorter than its header")
    user, count, sequence, sent = RADIO.unpack_from(data)
    return RadioFrame(user, count, AppHeader(user, sequence, sent), data[RADIO.size:])
