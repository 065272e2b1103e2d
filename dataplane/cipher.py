"""PDCP-style ciphering: a per-packet keystream XORed onto the PDU.

The keystream is PBKDF2-HMAC-SHA256 over the UE key with the PDCP COUNT and bearer as salt; its
iteration count (``work_factor``) sets the cost per byte (every 32-byte keystream block costs
``work_factor`` HMAC-SHA256 computations). It stands in for 5G's NEA2 (AES-CTR) with a cost that can be
calibrated so that the emulated RAN is CPU-bound at the testbed's rates. Deciphering is the same
operation.
"""

from __future__ import annotations

import hashlib
import struct


def test_master_key(slice_name: str) -> bytes:
    """The default master key of a slice (fixed and public: the emulator is not a security boundary)."""
    return hashlib.sha256(f"slicebed:{slice_name}".encode()).digest()


def ue_key(master_key: bytes, user: int) -> bytes:
    """The ciphering key of UE ``user`` derived from the slice's master key."""
    return hashlib.sha256(master_key + struct.pack("!H", user)).digest()


def keystream(key: bytes, count: int, bearer: int, length: int, work_factor: int) -> bytes:
    """``length`` keystream bytes for PDCP COUNT ``count`` on ``bearer``."""
    if work_factor < 1:
        raise ValueError(f"work_factor must be >= 1, got {work_factor}")
    salt = struct.pack("!IB", count & 0xFFFFFFFF, bearer)
    return hashlib.pbkdf2_hmac("sha256", key, salt, work_factor, dklen=max(1, length))[:length]


def cipher(key: bytes, count: int, bearer: int, data: bytes, work_factor: int) -> bytes:
    """``data`` XOR keystream: ciphers plaintext and deciphers ciphertext."""
    stream = keystream(key, count, bearer, len(data), work_factor)
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")
