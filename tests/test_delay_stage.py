"""The local testbed's delay stage (build/slicebed-delay from dataplane/delay_stage.c) on a real NFQUEUE.

Two namespaces of the test's own joined by a veth pair; the receiving one sends the pair's packets to the stage
with the same iptables rule the netem role writes. A sender stamps each UDP datagram with its sequence number and
CLOCK_MONOTONIC (one clock for every namespace), the receiver measures each one's delay.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import assert_one_error_line, needs_root

from controller.deploy.preflight import DELAY_STAGE, KernelFeatures, require_features
from core.errors import InputError

QUEUE = 7
PORT = 7000
RECEIVER = """
import json, socket, struct, sys, time
count, timeout = int(sys.argv[1]), float(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("10.238.0.2", 7000))
sock.settimeout(timeout)
print("ready", flush=True)
got = []
try:
    while len(got) < count:
        data = sock.recv(2048)
        sequence, sent = struct.unpack_from("!Id", data)
        got.append([sequence, time.monotonic() - sent, time.monotonic()])
except TimeoutError:
    pass
print(json.dumps(got), flush=True)
"""
SENDER = """
import socket, struct, sys, time
count, gap = int(sys.argv[1]), float(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for sequence in range(count):
    sock.sendto(struct.pack("!Id", sequence, time.monotonic()) + bytes(1000), ("10.238.0.2", 7000))
    time.sleep(gap)
"""


@dataclass(frozen=True)
class Pair:
    sender: str
    receiver: str


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


@pytest.fixture
def pair() -> Iterator[Pair]:
    """Namespaces ``<prefix>s`` (10.238.0.1) and ``<prefix>r`` (10.238.0.2, its tr0 queued to QUEUE)."""
    prefix = f"sbd{secrets.token_hex(2)}"
    namespaces = Pair(f"{prefix}s", f"{prefix}r")
    try:
        for namespace in (namespaces.sender, namespaces.receiver):
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("link", "add", f"{prefix}a", "netns", namespaces.sender, "type", "veth", "peer", "name", "tr0", "netns",
            namespaces.receiver)
        for namespace, device, address in ((namespaces.sender, f"{prefix}a", "10.238.0.1/24"),
                                           (namespaces.receiver, "tr0", "10.238.0.2/24")):
            _ip("-n", namespace, "addr", "add", address, "dev", device)
            _ip("-n", namespace, "link", "set", device, "up")
        subprocess.run(["ip", "netns", "exec", namespaces.receiver, "iptables", "-t", "mangle", "-A", "PREROUTING",
                        "-i", "tr0", "-p", "udp", "-j", "NFQUEUE", "--queue-num", str(QUEUE)], check=True)
        yield namespaces
    finally:
        for namespace in (namespaces.sender, namespaces.receiver):  # the veth pair and the rule go with them
            subprocess.run(["ip", "netns", "delete", namespace], check=False, capture_output=True)


def _in(namespace: str, *argv: str, **options: object) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", namespace, *argv], text=True, **options)  # type: ignore[call-overload]


def _stage(pair: Pair, delay_ms: float, jitter_ms: float) -> subprocess.Popen[str]:
    assert DELAY_STAGE.exists(), f"{DELAY_STAGE} is not built: run `make setup`"
    stage = _in(pair.receiver, str(DELAY_STAGE), f"--queue={QUEUE}", f"--delay-ms={delay_ms}",
                f"--jitter-ms={jitter_ms}", stderr=subprocess.PIPE)
    time.sleep(0.3)  # bound to the queue (without a reader the kernel drops queued packets)
    assert stage.poll() is None, stage.communicate()[1]
    return stage


def _receiver(pair: Pair, count: int, timeout_s: float) -> subprocess.Popen[str]:
    """A receiver of ``count`` datagrams (or what came within ``timeout_s`` of the previous), once it listens."""
    receiver = _in(pair.receiver, sys.executable, "-c", RECEIVER, str(count), str(timeout_s), stdout=subprocess.PIPE)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    return receiver


def _send(pair: Pair, count: int, gap_s: float) -> None:
    subprocess.run(["ip", "netns", "exec", pair.sender, sys.executable, "-c", SENDER, str(count), str(gap_s)],
                   check=True)


def _received(receiver: subprocess.Popen[str]) -> list[list[float]]:
    """[sequence, delay s, arrival time] per datagram received."""
    return json.loads(receiver.communicate(timeout=30)[0])


@needs_root
def test_the_stage_delays_every_packet_by_the_delay_within_the_jitter_in_order(pair: Pair) -> None:
    stage = _stage(pair, 20, 1)
    try:
        receiver = _receiver(pair, 300, 5)
        _send(pair, 300, 0.002)
        got = _received(receiver)
    finally:
        stage.send_signal(signal.SIGTERM)
        assert stage.wait(5) == 0
    sequences, delays = [g[0] for g in got], [g[1] * 1000 for g in got]
    assert sequences == list(range(300))  # every packet, none reordered
    assert min(delays) >= 19.0 - 0.05, min(delays)  # never before delay - jitter
    assert sum(delays) / len(delays) == pytest.approx(20, abs=2 + 2.0), sum(delays) / len(delays)  # 2 ms + 10 %
    assert max(delays) < 20 + 1 + 5, max(delays)


@needs_root
def test_sigterm_releases_the_held_packets_at_once(pair: Pair) -> None:
    stage = _stage(pair, 5000, 0)
    receiver = _receiver(pair, 5, 8)
    _send(pair, 5, 0.01)
    time.sleep(0.5)
    stopped = time.monotonic()
    stage.send_signal(signal.SIGTERM)
    assert stage.wait(5) == 0
    got = _received(receiver)
    assert [g[0] for g in got] == list(range(5))  # held 5 s, released in order when stopped
    assert all(arrived - stopped < 0.5 for _, _, arrived in got), got
    assert all(delay < 2 for _, delay, _ in got), got


def test_the_stage_rejects_bad_options_in_one_line() -> None:
    for argv, problem in ((["--queue", "2", "--delay-ms", "-1"], "--delay-ms -1: expected a number >= 0"),
                          (["--delay-ms", "5"], "--queue and --delay-ms are required"),
                          (["--queue", "70000", "--delay-ms", "5"], "--queue must be an integer in [0, 65535]")):
        result = subprocess.run([str(DELAY_STAGE), *argv], capture_output=True, text=True, check=False)
        assert result.returncode == 2
        assert_one_error_line(result.stderr, problem)


def test_preflight_asks_for_make_setup_where_the_stage_is_not_built(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    monkeypatch.setattr("controller.deploy.preflight.DELAY_STAGE", tmp_path / "slicebed-delay")
    with pytest.raises(InputError, match=r"delay stage .*slicebed-delay is not built; run `make setup`"):
        require_features(KernelFeatures(netem=False, nfqueue=True, cgroup_cpu="v1"))
    require_features(KernelFeatures(netem=True, nfqueue=True, cgroup_cpu="v1"))  # tc-netem needs no stage
