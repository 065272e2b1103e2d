"""The data-plane programs: ciphering, scheduling, GTP-U, and the whole chain on loopback.

The chain (app server -> UPF -> RAN emulator -> UE sink) runs as real processes on free 127.0.0.1 ports,
stopped by PID. The CPU-bound test puts the RAN emulator in a real cgroup (v1 CFS quota or v2 cpu.max).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from helpers import answers_http, free_port, proc_stat, wait_until_ready
from prometheus_process import PrometheusProcess

from collectors.prometheus import PrometheusReader
from controller.actuators.base import Interval
from controller.actuators.cgroup import CgroupCpuActuator
from controller.testbeds.qos_meter import PrometheusQosMeter
from core.commands import LocalRunner
from dataplane import cipher, packets, ran_emulator, upf
from dataplane.app_server import argparse_rates
from dataplane.scheduler import DeficitRoundRobin
from dataplane.sources import RateProfile

PREFIX = f"sbt-dp{os.getpid()}"


def test_ciphering_round_trip_and_keystream_depends_on_count_and_key() -> None:
    key = cipher.ue_key(cipher.test_master_key("embb"), 3)
    plain = packets.app_packet(3, 42, 1.5, 1400)
    ciphered = cipher.cipher(key, 7, 1, plain, work_factor=4)
    assert ciphered != plain and len(ciphered) == len(plain)
    assert cipher.cipher(key, 7, 1, ciphered, work_factor=4) == plain
    assert cipher.cipher(key, 8, 1, plain, work_factor=4) != ciphered
    assert cipher.cipher(cipher.ue_key(cipher.test_master_key("embb"), 4), 7, 1, plain, 4) != ciphered
    assert cipher.cipher(key, 7, 1, plain, work_factor=5) != ciphered
    with pytest.raises(ValueError, match="work_factor"):
        cipher.keystream(key, 0, 1, 10, work_factor=0)


def test_gtpu_round_trip_and_malformed_packets() -> None:
    inner = packets.app_packet(2, 9, 123.25, 100)
    teid, payload = packets.gtpu_decapsulate(packets.gtpu_encapsulate(3, inner))
    assert (teid, payload) == (3, inner)
    assert packets.parse_app(payload) == packets.AppHeader(2, 9, 123.25)
    with pytest.raises(packets.PacketError):
        packets.gtpu_decapsulate(b"\x30\xff\x00")
    with pytest.raises(packets.PacketError):
        packets.gtpu_decapsulate(packets.gtpu_encapsulate(3, inner)[:-1])  # length field disagrees
    with pytest.raises(packets.PacketError):
        packets.parse_app(b"short")


def _loopback_pair() -> tuple[socket.socket, socket.socket]:
    """A non-blocking receiving UDP socket on 127.0.0.1 and a sender."""
    receiving = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiving.bind(("127.0.0.1", 0))
    receiving.setblocking(False)
    return receiving, socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def test_the_upf_forwards_what_waits_in_one_batch_and_counts_the_malformed() -> None:
    n6, app = _loopback_pair()
    ran, n3 = _loopback_pair()
    sent = [packets.app_packet(user, 5, 1.0, 300) for user in (0, 1, 2)]
    for datagram in (sent[0], b"short", sent[1], sent[2]):
        app.sendto(datagram, n6.getsockname())
    time.sleep(0.1)
    assert upf.forward_waiting(n6, n3, ran.getsockname()) == (4, 3, 900)
    time.sleep(0.1)
    assert [packets.gtpu_decapsulate(ran.recv(2048)) for _ in range(3)] == [(u + 1, d) for u, d in enumerate(sent)]
    assert upf.forward_waiting(n6, n3, ran.getsockname()) == (0, 0, 0)  # nothing waits: no blocking


def test_the_ran_queues_what_waits_per_ue_and_counts_malformed_and_full() -> None:
    n3, upf_side = _loopback_pair()
    scheduler = DeficitRoundRobin(queue_packets=1)
    pdus = [packets.app_packet(user, 1, 2.0, 200) for user in (0, 0, 1)]
    for datagram in (packets.gtpu_encapsulate(1, pdus[0]), b"\x30\xff\x00", packets.gtpu_encapsulate(1, pdus[1]),
                     packets.gtpu_encapsulate(2, pdus[2]), packets.gtpu_encapsulate(3, b"tiny")):
        upf_side.sendto(datagram, n3.getsockname())
    time.sleep(0.1)
    assert ran_emulator.receive_waiting(n3, scheduler) == (5, 2, 1)  # 2 malformed, user 0's second packet dropped
    assert [scheduler.next(), scheduler.next(), scheduler.next()] == [(0, pdus[0]), (1, pdus[2]), None]
    frame = packets.parse_radio(packets.radio_frame(7, pdus[2], b"xyz"))
    assert (frame.user, frame.count, frame.app, frame.ciphered) == (1, 7, packets.AppHeader(1, 1, 2.0), b"xyz")


def test_scheduler_shares_bytes_fairly_whatever_the_packet_sizes() -> None:
    scheduler = DeficitRoundRobin(queue_packets=10_000, quantum=1500)
    sizes = {0: 200, 1: 700, 2: 1400}
    for user, size in sizes.items():
        for _ in range(3000):
            assert scheduler.enqueue(user, bytes(size))
    served = dict.fromkeys(sizes, 0)
    for _ in range(3000):
        item = scheduler.next()
        assert item is not None
        served[item[0]] += len(item[1])
    assert max(served.values()) - min(served.values()) <= 1500 + 1400
    assert min(served.values()) > 0.3 * sum(served.values())


def test_scheduler_drops_at_the_tail_per_ue_and_empties() -> None:
    scheduler = DeficitRoundRobin(queue_packets=2)
    assert scheduler.enqueue(0, b"a") and scheduler.enqueue(0, b"b")
    assert not scheduler.enqueue(0, b"c")
    assert scheduler.enqueue(1, b"x")  # another UE's queue is independent
    assert scheduler.dropped == 1
    order = [scheduler.next() for _ in range(3)]
    assert sorted(order) == [(0, b"a"), (0, b"b"), (1, b"x")]
    assert scheduler.next() is None and len(scheduler) == 0


def test_rate_profile_replays_a_trace_from_a_different_offset_per_user(tmp_path: Path) -> None:
    trace = tmp_path / "rates.txt"
    trace.write_text("# Mbps per second\n1\n2\n3\n")
    profile = RateProfile(12.0, argparse_rates(str(trace)))
    assert [profile.rate(0, second) for second in (0, 1.5, 2, 3)] == [1e6, 2e6, 3e6, 1e6]
    assert profile.rate(1, 0) == 2e6  # user 1 starts 7 s (mod 3) later in the trace
    assert profile.describe() == {"rate_mbps": None, "rate_trace": [1.0, 2.0, 3.0]}
    assert RateProfile(12.0).rate(4, 99) == 12e6
    with pytest.raises(ValueError, match="finite and >= 0"):
        RateProfile(-1.0)


def test_a_program_whose_port_is_taken_says_so_in_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "dataplane.ue_sink", "--mgmt", f"127.0.0.1:{free_port()}",
                "--listen", f"127.0.0.1:{port}"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"cannot listen on radio address 127.0.0.1:{port} (Address already in use); "
                                   "another program uses it: stop that program or choose another port")


@dataclass
class Chain:
    """The four programs on loopback; URLs of their management endpoints."""

    processes: dict[str, subprocess.Popen[bytes]]
    app: str
    ran: str
    sink: str

    def set_users(self, users: int, rate_mbps: float | None = None) -> None:
        body: dict[str, float] = {"users": users}
        if rate_mbps is not None:
            body["rate_mbps"] = rate_mbps
        response = requests.post(f"{self.app}/control", json=body, timeout=5)
        assert response.status_code == 200, response.text

    def sink_bytes(self) -> int:
        stats = requests.get(f"{self.sink}/stats", timeout=5).json()
        return sum(user["bytes"] for user in stats["users"].values())


def _program(name: str, *args: str, cgroup: CgroupCpuActuator | None = None,
             log: Path) -> subprocess.Popen[bytes]:
    join = None
    if cgroup is not None:
        procs = f"{cgroup.path}/cgroup.procs"

        def join() -> None:
            with open(procs, "w", encoding="ascii") as handle:
                handle.write(str(os.getpid()))

    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", f"dataplane.{name}", *args],
                                stdout=output, stderr=output, start_new_session=True, preexec_fn=join)


@contextmanager
def running_chain(tmp_path: Path, work_factor: int, rate_mbps: float, cgroup: CgroupCpuActuator | None = None,
                  verify_every: int = 0) -> Iterator[Chain]:
    ports = {name: free_port() for name in ("app", "upf", "ran", "sink", "n6", "n3", "radio")}
    mgmt = {name: f"127.0.0.1:{ports[name]}" for name in ("app", "upf", "ran", "sink")}
    log = tmp_path / "chain.log"
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        processes["sink"] = _program("ue_sink", "--mgmt", mgmt["sink"], "--listen", f"127.0.0.1:{ports['radio']}",
                                     "--verify-every", str(verify_every), "--work-factor", str(work_factor), log=log)
        processes["ran"] = _program("ran_emulator", "--mgmt", mgmt["ran"], "--listen", f"127.0.0.1:{ports['n3']}",
                                    "--ue", f"127.0.0.1:{ports['radio']}", "--work-factor", str(work_factor),
                                    cgroup=cgroup, log=log)
        processes["upf"] = _program("upf", "--mgmt", mgmt["upf"], "--listen", f"127.0.0.1:{ports['n6']}",
                                    "--ran", f"127.0.0.1:{ports['n3']}", "--dscp", "10", log=log)
        processes["app"] = _program("app_server", "--mgmt", mgmt["app"], "--upf", f"127.0.0.1:{ports['n6']}",
                                    "--rate-mbps", str(rate_mbps), log=log)
        for name, process in processes.items():
            wait_until_ready(answers_http(f"http://{mgmt[name]}/metrics"), process, f"the {name} program", 20, log)
        yield Chain(processes, f"http://{mgmt['app']}", f"http://{mgmt['ran']}", f"http://{mgmt['sink']}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _metric(url: str, name: str) -> dict[str, float]:
    """Samples of metric ``name`` in ``url``/metrics, keyed by their label text."""
    values = {}
    for line in requests.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            values[labels[len(name):]] = float(value)
    return values


@pytest.mark.slow
def test_chain_delivers_each_users_rate_and_the_ue_deciphers_it(tmp_path: Path) -> None:
    with running_chain(tmp_path, work_factor=2, rate_mbps=4.0, verify_every=5) as chain:
        chain.set_users(3)
        time.sleep(4)
        throughput = _metric(chain.sink, "slicebed_user_throughput_bps")
        assert sorted(throughput) == ['{slice="embb",user="0"}', '{slice="embb",user="1"}',
                                      '{slice="embb",user="2"}']
        for value in throughput.values():
            assert 4e6 * 0.7 < value < 4e6 * 1.3
        delays = _metric(chain.sink, "slicebed_user_delay_seconds")
        assert all(0 < delay < 0.5 for delay in delays.values())
        verified = _metric(chain.sink, "slicebed_ue_deciphered_packets_total")
        assert verified.get('{result="ok",slice="embb"}', 0) > 100
        assert '{result="mismatch",slice="embb"}' not in verified
        assert _metric(chain.app, "slicebed_active_users") == {'{slice="embb"}': 3.0}
        chain.set_users(1)  # two users leave: their series disappear after a few silent windows
        time.sleep(4.5)
        assert sorted(_metric(chain.sink, "slicebed_user_throughput_bps")) == ['{slice="embb",user="0"}']
        bad = requests.post(f"{chain.app}/control", json={"users": -1}, timeout=5)
        assert bad.status_code == 400 and "users" in bad.json()["error"]


@pytest.fixture
def ran_cgroup(exclusive_testbed: None) -> Iterator[CgroupCpuActuator]:
    """A cgroup for the RAN emulator (CPU is measured: held while no other test session runs)."""
    group = CgroupCpuActuator(LocalRunner(), f"{PREFIX}-ran", Interval(10, 1000))
    group.create()
    try:
        yield group
    finally:
        for pid in group.processes():  # only processes this test started can be left in it
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        group.remove()


def _cpu_seconds(pid: int) -> float:
    fields = proc_stat(pid)
    assert fields is not None, f"process {pid} is gone"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(chain: Chain, seconds: float) -> tuple[float, float]:
    """(Mbps delivered to the sink, CPU share of the RAN emulator in millicores) over ``seconds``."""
    ran = chain.processes["ran"].pid
    bytes_before, cpu_before, started = chain.sink_bytes(), _cpu_seconds(ran), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return ((chain.sink_bytes() - bytes_before) * 8 / elapsed / 1e6,
            (_cpu_seconds(ran) - cpu_before) / elapsed * 1000)


@pytest.mark.slow
def test_ran_throughput_is_cpu_bound_under_the_cgroup_quota(tmp_path: Path,
                                                            ran_cgroup: CgroupCpuActuator) -> None:
    ran_cgroup.set_cpu(100)  # a tenth of a core
    with running_chain(tmp_path, work_factor=24, rate_mbps=25.0, cgroup=ran_cgroup) as chain:
        assert chain.processes["ran"].pid in ran_cgroup.processes()
        chain.set_users(3)  # 75 Mbps offered: more than the RAN can cipher at either quota
        time.sleep(2)
        low_mbps, low_share = _measure(chain, 5)
        ran_cgroup.set_cpu(400)
        time.sleep(2)
        high_mbps, high_share = _measure(chain, 5)
        dropped = _metric(chain.ran, "slicebed_ran_packets_total")['{event="dropped",slice="embb"}']
    assert low_share <= 100 * 1.1 and high_share <= 400 * 1.1  # the quota holds
    assert high_share > 2 * low_share  # four times the quota; other processes may take part of the machine
    assert high_mbps > 2 * low_mbps, (low_mbps, high_mbps)
    assert dropped > 0  # the RAN, not the offered load, limited the throughput


@pytest.mark.slow
def test_prometheus_meter_matches_what_the_sink_measured(tmp_path: Path) -> None:
    with running_chain(tmp_path, work_factor=2, rate_mbps=3.0) as chain:
        server = PrometheusProcess(tmp_path, SimpleNamespace(port=0))  # type: ignore[arg-type]  (config below)
        targets = ", ".join(f"'{url.removeprefix('http://')}'" for url in (chain.app, chain.sink))
        server.config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dataplane\n"
                                 f"    static_configs:\n      - targets: [{targets}]\n", encoding="utf-8")
        server.start()
        try:
            chain.set_users(2)
            server.wait_for_samples("slicebed_active_users", 3)
            time.sleep(3)
            sink_before, started = chain.sink_bytes(), time.monotonic()
            with PrometheusReader(server.url) as reader:
                measured = PrometheusQosMeter(reader).measure(8)
            sink_mbps = (chain.sink_bytes() - sink_before) * 8 / (time.monotonic() - started) / 1e6
            chain.set_users(0)
            time.sleep(5)  # the sink forgets users silent for 3 windows: no throughput series is left
            with PrometheusReader(server.url) as reader:
                idle = PrometheusQosMeter(reader).measure(3)
        finally:
            server.stop()
    assert len(measured) >= 7 and set(measured["slice"]) == {"embb"}
    assert (measured["n_users"] == 2).all()
    assert measured["total_bandwidth_usage"].mean() == pytest.approx(sink_mbps, rel=0.1)
    assert sink_mbps == pytest.approx(6.0, rel=0.25)
    assert len(idle) >= 2 and (idle["n_users"] == 0).all() and (idle["total_bandwidth_usage"] == 0).all()
