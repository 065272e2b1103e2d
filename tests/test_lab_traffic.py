"""Lab traffic: the app server streams to UE sinks that subscribe through their tunnel interface (real programs).

The sinks here bind to loopback (``--device lo``) or to one end of a veth pair whose other end sits in a namespace
holding the app server (tests/test_lab_check.py); the 5G path between them (srsUE's tunnel, N3, the UPF's NAT) only
exists on a lab.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from helpers import REPO, accepts_connections, free_port, wait_until_ready

from core.retry import Attempts


@contextmanager
def program(name: str, *args: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m dataplane.<name> ARGS`` with its management server on 127.0.0.1:``port``, stopped by PID."""
    process = subprocess.Popen([sys.executable, "-m", f"dataplane.{name}", "--mgmt", f"127.0.0.1:{port}", *args],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_ready(accepts_connections(port), process, name)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def metrics(port: int) -> dict[str, float]:
    """The program's samples as ``{'name{labels}': value}``."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {match[1]: float(match[2]) for match in re.finditer(r"^(\S+) (\S+)$", text, re.M)}


def wait_for(port: int, sample: str, minimum: float, timeout_s: float = 15) -> dict[str, float]:
    """Poll the program's metrics until ``sample`` reaches ``minimum``; fail with what it has otherwise."""
    seen: dict[str, float] = {}
    for _ in Attempts(timeout_s, 0.2):
        seen = metrics(port)
        if seen.get(sample, float("-inf")) >= minimum:
            return seen
    pytest.fail(f"{sample} did not reach {minimum} in {timeout_s} s: {seen}")


def test_sinks_subscribe_through_their_device_and_measure_each_user() -> None:
    """The sink's hellos make it a subscriber; the app server streams every active user to it, and the sink
    publishes per-user QoS with the slice label, the echo's round trip and that its interface is there."""
    app_port, app_mgmt, sink_mgmt = free_port(), free_port(), free_port()
    with program("app_server", "--slice", "embb", "--listen", f"127.0.0.1:{app_port}", "--rate-mbps", "2",
                 "--packet-bytes", "1300", port=app_mgmt), \
            program("ue_sink", "--slice", "embb", "--listen", f"127.0.0.1:{free_port()}", "--device", "lo",
                    "--subscribe", f"127.0.0.1:{app_port}", "--hello-s", "0.2", port=sink_mgmt):
        wait_for(app_mgmt, 'slicebed_app_subscribers{slice="embb"}', 1)
        answer = requests.post(f"http://127.0.0.1:{app_mgmt}/control", json={"users": 2}, timeout=5).json()
        assert answer["users"] == 2
        seen = wait_for(sink_mgmt, 'slicebed_user_throughput_bps{slice="embb",user="1"}', 1e6)
        assert seen['slicebed_user_throughput_bps{slice="embb",user="0"}'] == pytest.approx(2e6, rel=0.3)
        assert seen['slicebed_ue_attached{slice="embb"}'] == 1
        assert seen['slicebed_ue_dn_echoes_total{slice="embb"}'] >= 1
        assert 0 < seen['slicebed_ue_dn_rtt_seconds{slice="embb"}'] < 0.5
        assert seen['slicebed_user_delivery_ratio{slice="embb",user="0"}'] == pytest.approx(1, abs=0.05)


def test_app_server_streams_to_nobody_without_subscribers() -> None:
    """Without a hello the users' packets go nowhere (a data network cannot open a flow through the UPF's NAT)."""
    mgmt = free_port()
    with program("app_server", "--slice", "urllc", "--type", "urllc", "--listen", f"127.0.0.1:{free_port()}",
                 "--users", "3", port=mgmt):
        time.sleep(0.5)
        seen = metrics(mgmt)
    assert seen['slicebed_active_users{slice="urllc"}'] == 3
    assert seen['slicebed_app_subscribers{slice="urllc"}'] == 0
    assert seen['slicebed_app_sent_bytes_total{slice="urllc"}'] == 0


def test_sink_waits_for_its_tunnel_and_says_the_ue_is_not_attached() -> None:
    mgmt = free_port()
    with program("ue_sink", "--slice", "embb", "--listen", f"0.0.0.0:{free_port()}", "--device", "sbnotun0",
                 "--subscribe", f"127.0.0.1:{free_port()}", port=mgmt) as sink:
        seen = wait_for(mgmt, 'slicebed_ue_attached{slice="embb"}', 0)
        assert seen['slicebed_ue_attached{slice="embb"}'] == 0
        assert sink.poll() is None  # still waiting, not failed


@pytest.mark.parametrize(("args", "message"), [
    (["--upf", "127.0.0.1:5000", "--listen", "127.0.0.1:5001"], "not allowed with argument"),
    ([], "one of the arguments --upf --listen is required"),
])
def test_app_server_takes_either_the_upf_or_a_listen_address(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "dataplane.app_server", "--mgmt", "127.0.0.1:1", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr


def test_sink_device_needs_subscribe() -> None:
    done = subprocess.run([sys.executable, "-m", "dataplane.ue_sink", "--mgmt", "127.0.0.1:1", "--listen",
                           "127.0.0.1:1", "--device", "lo"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--device needs --subscribe" in done.stderr
