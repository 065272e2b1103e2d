"""`slicebed testbed check` on a lab, for real wherever this machine can: a data-network namespace holding the slice's
app server behind a real tc-tbf cap, the slice's UE sink subscribed through its "tunnel" (the veth into that
namespace), a real Prometheus scraping both, and the delay probes run in the namespaces as they run over SSH on a lab.
No netem here: the delay measurements must say the configured delay is missing. Nothing is faked; the Kubernetes API
is not needed (the N3/N6 path is read from the sinks' echoed hellos).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import REPO, assert_one_error_line, free_port, run_cli, wait_until_ready
from prometheus_process import PrometheusProcess

from collectors.prometheus import PrometheusReader
from controller.deploy.inventory.lab import load_lab_inventory
from controller.testbeds.lab_check import check_lab
from core.commands import LocalRunner

CAP_MBPS = 4.0
USER_RATE_MBPS = 3.0


@dataclass
class DataNetwork:
    """The namespace (app server, tbf cap) and the root namespace's end of the veth (the sink's tunnel)."""

    netns: str
    tunnel: str
    dn_address: str
    ue_address: str
    network: str


@pytest.fixture
def data_network() -> Iterator[DataNetwork]:
    tag = os.getpid() % 250 + 1
    netns, tunnel, inside = f"ltc-dn-{os.getpid()}", f"ltc{os.getpid()}"[:15], "ltc-dn0"
    here, there = LocalRunner(), LocalRunner(netns)
    here.output(["ip", "netns", "add", netns])
    try:
        here.output(["ip", "link", "add", tunnel, "type", "veth", "peer", "name", inside, "netns", netns])
        here.output(["ip", "address", "add", f"10.213.{tag}.2/24", "dev", tunnel])
        here.output(["ip", "link", "set", tunnel, "up"])
        there.output(["ip", "address", "add", f"10.213.{tag}.1/24", "dev", inside])
        there.output(["ip", "link", "set", inside, "up"])
        there.output(["ip", "link", "set", "lo", "up"])
        # the slice's downlink cap (on a lab: the slice's OpenFlow meter through ONOS)
        there.output(["tc", "qdisc", "add", "dev", inside, "root", "tbf", "rate", f"{CAP_MBPS:g}mbit", "burst",
                      "32kbit", "latency", "100ms"])
        yield DataNetwork(netns, tunnel, f"10.213.{tag}.1", f"10.213.{tag}.2", f"10.213.{tag}.0/24")
    finally:
        here.run(["ip", "link", "del", tunnel])
        here.run(["ip", "netns", "del", netns])


def start(argv: list[str], netns: str | None = None) -> subprocess.Popen[bytes]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.Popen([*prefix, sys.executable, "-m", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def lab_inventory(path: Path, network: DataNetwork, control_port: int, prometheus_url: str) -> Path:
    """Edge is this namespace (the UE side), regional and central the data network's namespace."""
    hosts = {"edge": network.ue_address, "regional": network.dn_address, "central": network.dn_address}
    path.write_text(yaml.safe_dump({"all": {"vars": {
        "testbed_mode": "lab", "underlay_cidr": network.network,
        "slices": [{"name": "embb", "bandwidth_mbps": CAP_MBPS, "ran": "srsran"}],
        "latency": [{"a": "edge", "b": "regional", "delay_ms": 5, "jitter_ms": 1},
                    {"a": "regional", "b": "central", "delay_ms": 10, "jitter_ms": 2}],
        "traffic": {"form": "hosts", "user_rate_mbps": USER_RATE_MBPS},
        "lab_backend": {"ovs": {"port": "unused"}, "prometheus_url": prometheus_url, "app_server_tier": "regional",
                        "app_server_port": control_port}}, "children": {
        **{tier: {"hosts": {f"{tier}-1": {"ansible_host": address}}} for tier, address in hosts.items()},
        "monitoring_server": {"hosts": {"central-1": None}}}}}))
    return path


@pytest.mark.slow
def test_lab_check_measures_attach_path_delay_and_cap_for_real(data_network: DataNetwork, tmp_path: Path) -> None:
    control, stream, sink_metrics = free_port(), free_port(), free_port()
    app = start(["dataplane.app_server", "--slice", "embb", "--mgmt", f"{data_network.dn_address}:{control}",
                 "--listen", f"{data_network.dn_address}:{stream}", "--rate-mbps", f"{USER_RATE_MBPS:g}",
                 "--packet-bytes", "1300"], data_network.netns)
    sink = start(["dataplane.ue_sink", "--slice", "embb", "--mgmt", f"127.0.0.1:{sink_metrics}", "--listen",
                  f"0.0.0.0:{free_port()}", "--device", data_network.tunnel, "--subscribe",
                  f"{data_network.dn_address}:{stream}", "--hello-s", "0.5"])
    prometheus = PrometheusProcess(tmp_path, type("Target", (), {"port": sink_metrics})())
    prometheus.config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: slicebed-traffic\n    honor_labels: true\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{sink_metrics}', '{data_network.dn_address}:{control}']\n")
    try:
        prometheus.start()
        wait_until_ready(lambda: _scraped(prometheus), sink, "the UE sink's first echoed hellos in Prometheus")
        prometheus.wait_for_samples('slicebed_ue_dn_hellos_total{slice="embb"}', 4)  # the path's window has some
        assert app.poll() is None, app.stderr.read() if app.stderr else ""
        inventory = load_lab_inventory(lab_inventory(tmp_path / "lab.yml", data_network, control, prometheus.url))
        runners = {data_network.ue_address: LocalRunner(), data_network.dn_address: LocalRunner(data_network.netns)}
        with PrometheusReader(prometheus.url) as reader:
            measurements = check_lab(inventory, reader, runners.__getitem__, cap_window_s=5, probes=20)
    finally:
        for process in (sink, app):
            process.terminate()
            process.wait(timeout=10)
        prometheus.stop()
    found = {(m.kind, m.subject): m for m in measurements}
    assert list(found) == [("attach", "embb: UE tunnel"), ("path", "embb: UE -> N3 -> N6 -> data network"),
                           ("delay", "edge-regional one-way"), ("delay", "regional-central one-way"),
                           ("bandwidth", "embb: throughput cap")]
    assert found[("attach", "embb: UE tunnel")].within_tolerance
    path = found[("path", "embb: UE -> N3 -> N6 -> data network")]
    assert path.within_tolerance and "round trip" in path.detail, path
    for link in ("edge-regional one-way", "regional-central one-way"):  # no netem on this machine: no delay
        delay = found[("delay", link)]
        assert delay.measured < 1.0 and not delay.within_tolerance, delay
    cap = found[("bandwidth", "embb: throughput cap")]
    assert cap.configured == CAP_MBPS and cap.within_tolerance, cap  # 3 users x 3 Mbps offered, 4 Mbit/s tbf
    assert "3 users" in cap.detail


def _scraped(prometheus: PrometheusProcess) -> bool:
    try:
        with PrometheusReader(prometheus.url) as reader:
            echoes = reader.instant("slicebed_ue_dn_echoes_total")
            users = reader.instant("slicebed_active_users")
    except Exception:
        return False
    return not echoes.empty and not users.empty and float(echoes["value"].max()) >= 2


def test_lab_check_needs_the_lab_backend_section(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "lab.yml"
    inventory.write_text(yaml.safe_dump({"all": {"vars": {"testbed_mode": "lab", "slices": [{"name": "embb"}]},
                                                 "children": {"edge": {"hosts": {"edge-1": {"ansible_host":
                                                                                             "10.213.0.1"}}}}}}))
    code, _out, err = run_cli(["testbed", "check", "--inventory", str(inventory)], capfd)
    assert code == 2
    assert_one_error_line(err, "all.vars.lab_backend is missing")
