"""Lab actuators: the SSH runner against a real sshd on loopback; ONOS and Kubernetes against contract fakes."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from fakes.kubernetes import FakeKubernetes, write_kubeconfig
from fakes.onos import FakeOnos
from helpers import REPO, accepts_connections, free_port, lab_example_on_loopback, wait_until_ready

from controller.actuators.base import ActuatorError, Interval
from controller.actuators.cgroup import CgroupCpuActuator
from controller.actuators.kubernetes import PodResizeCpuActuator, open_api
from controller.actuators.onos import OnosClient, OnosMeterActuator, SliceFlow, metered_flow
from controller.actuators.ovs import OvsQueueActuator
from controller.actuators.ssh import SshRunner, SshTarget
from controller.deploy.inventory import load_lab_inventory
from controller.testbeds.base import Allocation
from controller.testbeds.lab import open_lab_testbed
from controller.testbeds.ssh_pool import SshRunners
from core.commands import CommandError, LocalRunner
from core.errors import InputError

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
PASSPHRASE = "lp-Secret-passphrase-7731"



def keygen(path: Path, passphrase: str = "") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-a", "2", "-N", passphrase, "-f", str(path)],  # cheap KDF
                   check=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshTarget]:
    """A real OpenSSH server on a free loopback port, with its own host key and an encrypted user key."""
    if not SSHD.is_file():
        pytest.fail(f"{SSHD} is missing: install openssh-server (make system-deps)")
    home = tmp_path_factory.mktemp("lp-sshd")
    keygen(home / "host_key")
    keygen(home / "user_key", PASSPHRASE)
    (home / "authorized_keys").write_text((home / "user_key.pub").read_text())
    port = free_port()
    (home / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home / 'host_key'}\nPidFile {home / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {home / 'authorized_keys'}\nPermitRootLogin prohibit-password\nStrictModes no\n"
        f"UsePAM no\nPasswordAuthentication no\nSubsystem sftp {SFTP_SERVER}\n")
    known_hosts = home / "known_hosts"
    host_key = (home / "host_key.pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(home / "sshd_config")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_ready(accepts_connections(port), server, "sshd", timeout_s=10)
        yield SshTarget(host="127.0.0.1", port=port, user="root", key_file=home / "user_key",
                        known_hosts=known_hosts, passphrase_env="LP_TEST_SSH_PASSPHRASE")
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def passphrase(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LP_TEST_SSH_PASSPHRASE", PASSPHRASE)
    return PASSPHRASE


def test_ssh_runner_runs_commands_on_real_sshd(sshd: SshTarget, passphrase: str) -> None:
    with SshRunner(sshd) as runner:
        result = runner.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert runner.output(["printf", "%s|", "two words", "$HOME;x"]) == "two words|$HOME;x|"  # argv is quoted
        with pytest.raises(CommandError, match="exit 3: err"):
            runner.output(["sh", "-c", "echo err >&2; exit 3"])
        big = runner.output(["head", "-c", "300000", "/dev/zero"])  # more than one channel window
        assert len(big) == 300000


def test_ssh_runner_reads_and_writes_files(sshd: SshTarget, passphrase: str, tmp_path: Path) -> None:
    target = tmp_path / "lp-file.txt"
    with SshRunner(sshd) as runner:
        runner.write_file(str(target), "100000 100000\n")
        assert target.read_text() == "100000 100000\n"
        assert runner.read_file(str(target)) == "100000 100000\n"
        with pytest.raises(CommandError, match="cannot read /nonexistent/lp"):
            runner.read_file("/nonexistent/lp")
        with pytest.raises(CommandError, match="cannot write '1' to /nonexistent/lp"):
            runner.write_file("/nonexistent/lp", "1")


def test_ssh_runner_times_out_and_recovers(sshd: SshTarget, passphrase: str) -> None:
    with SshRunner(sshd) as runner:
        started = time.monotonic()
        with pytest.raises(CommandError, match=r"did not finish within 0.5 s"):
            runner.run(["sleep", "5"], timeout_s=0.5)
        assert time.monotonic() - started < 3
        assert runner.output(["echo", "again"]) == "again\n"


def test_cgroup_actuator_over_ssh_sets_a_real_cgroup(sshd: SshTarget, passphrase: str) -> None:
    """The data-plane helper's CgroupCpuActuator, unchanged, driving this host's real cgroup through sshd."""
    with SshRunner(sshd) as runner:
        actuator = CgroupCpuActuator(runner, f"lp-ssh-{os.getpid()}", Interval(100, 4000))
        actuator.create()
        try:
            assert actuator.set_cpu(1500) == pytest.approx(1500)
            if actuator.group.hierarchy.version == 2:
                assert Path(actuator.path, "cpu.max").read_text().split() == ["150000", "100000"]
            else:
                assert Path(actuator.path, "cpu.cfs_quota_us").read_text().strip() == "150000"
            assert actuator.read_cpu() == pytest.approx(1500)
            with pytest.raises(InputError, match="outside the allowed"):
                actuator.set_cpu(5000)
            assert actuator.read_cpu() == pytest.approx(1500)
        finally:
            actuator.remove()
        assert not Path(actuator.path).exists()


def test_ssh_runner_refuses_changed_host_key(sshd: SshTarget, passphrase: str, tmp_path: Path) -> None:
    keygen(tmp_path / "other")
    other = (tmp_path / "other.pub").read_text().split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    with pytest.raises(CommandError, match=r"host key .* does not match the entry in .*known_hosts; refusing"):
        SshRunner(replace(sshd, known_hosts=wrong)).run(["true"])


def test_ssh_runner_refuses_unknown_host(sshd: SshTarget, passphrase: str, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(CommandError, match=r"host key not found in .*known_hosts; refusing"):
        SshRunner(replace(sshd, known_hosts=empty)).run(["true"])
    with pytest.raises(InputError, match=r"known_hosts file .* does not exist"):
        SshRunner(replace(sshd, known_hosts=tmp_path / "missing")).run(["true"])


def test_ssh_passphrase_never_leaks(sshd: SshTarget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    """The passphrase is in the environment; it appears in no log record and no error message."""
    caplog.set_level(logging.DEBUG)  # paramiko logs its whole handshake at DEBUG
    monkeypatch.delenv("LP_TEST_SSH_PASSPHRASE", raising=False)
    messages = []
    with pytest.raises(InputError, match=r"LP_TEST_SSH_PASSPHRASE .* is not set") as missing:
        SshRunner(sshd).run(["true"])
    messages.append(str(missing.value))
    monkeypatch.setenv("LP_TEST_SSH_PASSPHRASE", PASSPHRASE + "-wrong")
    with pytest.raises(InputError, match=r"user_key cannot be loaded .wrong passphrase") as wrong:
        SshRunner(sshd).run(["true"])
    messages.append(str(wrong.value))
    monkeypatch.setenv("LP_TEST_SSH_PASSPHRASE", PASSPHRASE)
    with SshRunner(sshd) as runner:
        with pytest.raises(CommandError) as failed:
            runner.output(["sh", "-c", "exit 1"])
        messages.append(str(failed.value))
        messages.append(repr(runner.target))
    assert caplog.records, "paramiko logged nothing at DEBUG: the leak check would be vacuous"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for text in [*messages, logged]:
        assert PASSPHRASE not in text
    assert os.environ["LP_TEST_SSH_PASSPHRASE"] == PASSPHRASE


# --- Kubernetes in-place pod resize, against the contract fake --------------------------------------------------

K8S_TOKEN = "lp-k8s-bearer-token-5521"


@pytest.fixture(params=[29, 33], ids=["v1.29-patch-pod", "v1.33-resize-subresource"])
def fake_kubernetes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FakeKubernetes, Path]]:
    with FakeKubernetes(K8S_TOKEN, minor=request.param, allocatable_cpu=8000) as server:
        server.add_pod("slices", "gnb-embb-7d9f", {"app": "gnb", "slice": "embb"}, "gnb", "1000m")
        server.add_pod("slices", "gnb-urllc-51aa", {"app": "gnb", "slice": "urllc"}, "gnb", "1")
        yield server, write_kubeconfig(tmp_path / "kubeconfig", server.url, K8S_TOKEN)


def pod_actuator(kubeconfig: Path, selector: str = "app=gnb,slice=embb") -> PodResizeCpuActuator:
    return PodResizeCpuActuator(open_api(kubeconfig), "slices", selector, "gnb", Interval(500, 9000),
                                timeout_s=5, poll_s=0.01)


def test_pod_resize_fake_applies_and_reads_back(fake_kubernetes: tuple[FakeKubernetes, Path]) -> None:
    server, kubeconfig = fake_kubernetes
    actuator = pod_actuator(kubeconfig)
    assert actuator.use_resize_subresource == (server.minor >= 33)
    assert actuator.read_cpu() == 1000
    assert actuator.set_cpu(2500) == 2500
    pod = server.pods[("slices", "gnb-embb-7d9f")]
    assert pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "2500m"
    assert pod["status"]["containerStatuses"][0]["resources"]["limits"]["cpu"] == "2500m"
    assert actuator.read_cpu() == 2500
    patches = [r for r in server.requests if r.method == "PATCH"]
    assert [r.path.endswith("/resize") for r in patches] == [server.minor >= 33]
    assert patches[0].headers["content-type"] == "application/strategic-merge-patch+json"
    other = server.pods[("slices", "gnb-urllc-51aa")]
    assert other["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "1"  # the other slice is untouched
    assert pod_actuator(kubeconfig, "app=gnb,slice=urllc").read_cpu() == 1000


def test_pod_resize_fake_refusals(fake_kubernetes: tuple[FakeKubernetes, Path]) -> None:
    _server, kubeconfig = fake_kubernetes
    actuator = pod_actuator(kubeconfig)
    with pytest.raises(InputError, match="outside the allowed"):
        actuator.set_cpu(9500)
    with pytest.raises(ActuatorError, match=r"refused the resize to 8500m \(Infeasible\)"):
        actuator.set_cpu(8500)  # within the actuator's bounds, beyond the node
    with pytest.raises(ActuatorError, match="expected one running pod, found 2"):
        pod_actuator(kubeconfig, "app=gnb").set_cpu(1000)
    with pytest.raises(ActuatorError, match="expected one running pod, found 0"):
        pod_actuator(kubeconfig, "app=nothing").read_cpu()


def test_pod_resize_fake_credentials_never_leak(fake_kubernetes: tuple[FakeKubernetes, Path], tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    server, kubeconfig = fake_kubernetes
    caplog.set_level(logging.DEBUG)
    wrong = tmp_path / "wrong-kubeconfig"
    wrong.write_text(kubeconfig.read_text().replace(K8S_TOKEN, K8S_TOKEN + "-revoked"))
    with pytest.raises(ActuatorError, match="HTTP 401 Unauthorized") as refused:
        pod_actuator(wrong)
    with pytest.raises(InputError, match=r"kubeconfig .* does not exist"):
        open_api(tmp_path / "absent")
    server.stop()
    with pytest.raises(ActuatorError, match="cannot read the server version") as down:
        PodResizeCpuActuator(open_api(kubeconfig), "slices", "app=gnb", "gnb", Interval(1, 2), timeout_s=1)
    assert caplog.records
    for text in (str(refused.value), str(down.value), caplog.text):
        assert K8S_TOKEN not in text


# --- ONOS meters on the ONOS contract fake; a plain OvS queue (for a real NIC) on a real OVSDB -------------------

ONOS_PASSWORD = "lp-onos-Secret-9911"
DEVICE = "of:0000aabbccddeeff"


@pytest.fixture(scope="module")
def ovs_queues(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRunner, list[str], str]]:
    """A real ovsdb-server and ovs-vswitchd (netdev datapath) in a namespace of ours, with a linux-htb QoS on
    port lp-q0 holding two queues tagged with their slices (in the order urllc, embb: ids are discovered)."""
    state = tmp_path_factory.mktemp("lp-ovs")
    netns = f"lp-onos-{os.getpid()}"
    vsctl = ["ovs-vsctl", f"--db=unix:{state}/db.sock", "--timeout=10"]
    here, inside = LocalRunner(), LocalRunner(netns)
    here.output(["ip", "netns", "add", netns])
    try:
        here.output(["ovsdb-tool", "create", f"{state}/conf.db", "/usr/share/openvswitch/vswitch.ovsschema"])
        here.output(["ovsdb-server", f"{state}/conf.db", f"--remote=punix:{state}/db.sock", "--detach",
                    f"--pidfile={state}/ovsdb.pid", f"--unixctl={state}/ovsdb.ctl", f"--log-file={state}/ovsdb.log"])
        here.output([*vsctl, "--no-wait", "init"])
        inside.output(["env", f"OVS_RUNDIR={state}", "ovs-vswitchd", f"unix:{state}/db.sock", "--detach",
                      f"--pidfile={state}/vswitchd.pid", f"--unixctl={state}/vswitchd.ctl",
                      f"--log-file={state}/vswitchd.log"])
        here.output([*vsctl, "add-br", "lp-br", "--", "set", "bridge", "lp-br", "datapath_type=netdev"])
        inside.output(["ip", "link", "add", "lp-q0", "type", "veth", "peer", "name", "lp-q1"])
        inside.output(["ip", "link", "set", "lp-q0", "up"])
        here.output([*vsctl, "add-port", "lp-br", "lp-q0"])
        here.output([*vsctl, "--", "set", "port", "lp-q0", "qos=@q", "--", "--id=@q", "create", "qos",
                    "type=linux-htb", "other-config:max-rate=100000000", "queues:0=@u", "queues:1=@e",
                    "--", "--id=@u", "create", "queue", "other-config:max-rate=10000000",
                    "external_ids:slicebed-slice=urllc",
                    "--", "--id=@e", "create", "queue", "other-config:max-rate=20000000",
                    "external_ids:slicebed-slice=embb"])
        yield inside, vsctl, "lp-q0"
    finally:
        for daemon in ("vswitchd", "ovsdb"):
            pidfile = state / f"{daemon}.pid"
            if pidfile.is_file():
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
        here.run(["ip", "netns", "del", netns])


@pytest.fixture
def fake_onos(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOnos]:
    monkeypatch.setenv("LP_ONOS_USER", "onos")
    monkeypatch.setenv("LP_ONOS_PASSWORD", ONOS_PASSWORD)
    with FakeOnos({DEVICE: {"1": "lp-uplink", "2": "lp-q0"}, "of:0000000000000002": {"1": "eth0"}},
                  password=ONOS_PASSWORD) as server:
        yield server


def onos_client(server: FakeOnos) -> OnosClient:
    return OnosClient.from_env(server.url, "LP_ONOS_USER", "LP_ONOS_PASSWORD")


def test_onos_fake_meter_sets_replaces_and_reads_back_the_slice_rate(fake_onos: FakeOnos) -> None:
    """A rate is a new meter with the flow moved onto it (ONOS 2.7 cannot change a meter), the old one withdrawn."""
    actuator = OnosMeterActuator(onos_client(fake_onos), SliceFlow("10.60.0.110/32", "lp-q0"), Interval(5, 50))
    assert (actuator.device_id, actuator.output_port) == (DEVICE, "2")
    assert actuator.set_bandwidth(30) == pytest.approx(30)
    (flow,) = fake_onos.flows[DEVICE].values()
    (meter,) = fake_onos.meters[DEVICE].values()
    assert flow["treatment"]["instructions"] == [{"type": "METER", "meterId": meter["id"]},
                                                 {"type": "OUTPUT", "port": "2"}]
    assert {"type": "IPV4_DST", "ip": "10.60.0.110/32"} in flow["selector"]["criteria"]
    assert flow["appId"] == "org.slicebed.steering"
    assert (meter["unit"], meter["bands"][0]["type"], meter["bands"][0]["rate"], meter["bands"][0]["burstSize"]) == \
        ("KB_PER_SEC", "DROP", 30000, 7500)
    assert actuator.set_bandwidth(12.5) == pytest.approx(12.5)
    (moved,) = fake_onos.flows[DEVICE].values()  # the same flow (ONOS's id ignores the treatment), a new meter
    (second,) = fake_onos.meters[DEVICE].values()
    assert moved["id"] == flow["id"] and second["id"] != meter["id"] and second["bands"][0]["rate"] == 12500
    again = OnosMeterActuator(onos_client(fake_onos), SliceFlow("10.60.0.110/32", "lp-q0"), Interval(5, 50))
    assert again.read_bandwidth() == pytest.approx(12.5)  # e.g. a restarted controller finds the meter
    actuator.remove()
    assert fake_onos.flows[DEVICE] == {} and fake_onos.meters[DEVICE] == {}
    with pytest.raises(ActuatorError, match=r"no metered flow for 10\.60\.0\.110/32"):
        actuator.read_bandwidth()
    with pytest.raises(InputError, match="outside the allowed"):
        actuator.set_bandwidth(80)


def test_onos_fake_errors_are_one_line_and_secret_free(fake_onos: FakeOnos, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = onos_client(fake_onos)
    with pytest.raises(ActuatorError, match="no available device has a port named 'nowhere'"):
        client.find_port("nowhere")
    with pytest.raises(ActuatorError, match="HTTP 400: port 9 does not exist") as bad_flow:
        client.add_flow(DEVICE, metered_flow(SliceFlow("10.60.0.110/32", "lp-q0"), 1, "9"))
    monkeypatch.setenv("LP_ONOS_PASSWORD", ONOS_PASSWORD + "-old")
    with pytest.raises(ActuatorError, match="refused the credentials") as refused:
        onos_client(fake_onos).devices()
    monkeypatch.delenv("LP_ONOS_PASSWORD")
    with pytest.raises(InputError, match=r"set the environment variable\(s\) LP_ONOS_PASSWORD"):
        onos_client(fake_onos)
    with pytest.raises(InputError, match="without credentials"):
        OnosClient("http://onos:rocks@10.0.0.1:8181", "onos", "rocks")
    fake_onos.stop()
    with pytest.raises(ActuatorError, match="did not answer GET /devices: ConnectionError") as down:
        client.devices()
    messages = [str(bad_flow.value), str(refused.value), str(down.value)]
    assert all("\n" not in message for message in messages)
    for text in [*messages, caplog.text]:
        assert ONOS_PASSWORD not in text


# --- the lab backend: a lab inventory driving the real gNB cgroup over SSH, the slice meter through ONOS
#     (contract fake), and the real slicebed app server's control endpoint -------------------------------------


@pytest.fixture
def app_server() -> Iterator[int]:
    """The slicebed app server on loopback (its UDP stream goes to a loopback port nobody reads)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "dataplane.app_server", "--slice", "embb",
                                "--mgmt", f"127.0.0.1:{port}", "--upf", f"127.0.0.1:{free_port()}",
                                "--rate-mbps", "0.05"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_ready(accepts_connections(port), process, "the app server")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def active_users(port: int) -> float:
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return float(re.search(r'^slicebed_active_users\{slice="embb"\} (\S+)$', metrics, re.M).group(1))


def test_lab_backend_fake_onos_meter_applies_through_real_ssh_cgroup(
        sshd: SshTarget, passphrase: str, fake_onos: FakeOnos, app_server: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gnb = CgroupCpuActuator(LocalRunner(), f"lp-lab-{os.getpid()}-embb", Interval(1, 1e6))
    gnb.create()
    template = lab_example_on_loopback()
    variables = {**template["all"]["vars"], "prometheus_port": free_port(), "lab_backend": {
        "cpu": "cgroup", "bandwidth": "onos_meter", "cgroup": f"lp-lab-{os.getpid()}-{{slice}}",
        "ssh": {"user_env": "LP_SSH_USER", "key_env": "LP_SSH_KEY", "passphrase_env": "LP_TEST_SSH_PASSPHRASE",
                "known_hosts": str(sshd.known_hosts), "port": sshd.port, "become": False},
        "ovs": {"tier": "regional", "port": "lp-q0"},
        "onos_url": fake_onos.url, "app_server_tier": "central", "app_server_port": app_server}}
    variables.update(onos_user_env="LP_ONOS_USER", onos_password_env="LP_ONOS_PASSWORD")
    hosts = {"edge": "127.0.0.1", "regional": "127.0.0.2", "central": "127.0.0.1"}
    inventory = tmp_path / "lab.yml"
    inventory.write_text(yaml.safe_dump({"all": {"vars": variables, "children": {
        **{tier: {"hosts": {f"{tier}-1": {"ansible_host": address}}} for tier, address in hosts.items()},
        "sdn_controller": {"hosts": {"central-1": None}}, "monitoring_server": {"hosts": {"central-1": None}}}}}))
    monkeypatch.setenv("LP_SSH_USER", "root")
    monkeypatch.setenv("LP_SSH_KEY", str(sshd.key_file))
    ssh = SshRunners(load_lab_inventory(inventory).settings.ssh)

    bounds = {"embb": (Interval(500, 4000), Interval(5, 50))}
    try:
        with open_lab_testbed(inventory, bounds, runner_for=ssh) as lab:
            assert isinstance(lab.cpu["embb"].runner, SshRunner)
            applied = lab.apply("embb", Allocation(cpu_millicores=1500, bandwidth_mbps=25))
            assert applied.cpu_millicores == pytest.approx(1500)
            assert applied.bandwidth_mbps == pytest.approx(25, rel=0.01)
            assert gnb.read_cpu() == pytest.approx(1500)  # the real cgroup, read here without SSH
            (flow,) = fake_onos.flows[DEVICE].values()
            (meter,) = fake_onos.meters[DEVICE].values()
            assert {"type": "METER", "meterId": meter["id"]} in flow["treatment"]["instructions"]
            assert meter["bands"][0]["rate"] == 25000
            assert {"type": "IPV4_DST", "ip": template["all"]["vars"]["slices"][0]["gnb_n3_ip"] + "/32"} in \
                flow["selector"]["criteria"]
            lab.set_traffic("embb", 3)
            assert active_users(app_server) == 3
            with pytest.raises(InputError, match="lab testbed: unknown slice 'video'"):
                lab.set_traffic("video", 1)
            with pytest.raises(InputError, match="outside the allowed"):
                lab.apply("embb", Allocation(cpu_millicores=9000, bandwidth_mbps=25))
        assert active_users(app_server) == 0  # closing the backend stops its traffic
    finally:
        ssh.close()
        gnb.remove()


def test_lab_backend_configuration_errors_are_one_line(tmp_path: Path) -> None:
    example = load_lab_inventory(REPO / "inventory" / "lab.example.yml")  # the shipped example validates
    assert example.settings.ovs.port and example.slices
    template = lab_example_on_loopback()
    template["all"]["vars"].pop("lab_backend", None)
    inventory = tmp_path / "lab.yml"
    bounds = {"embb": (Interval(500, 4000), Interval(5, 50))}
    inventory.write_text(yaml.safe_dump(template))
    with pytest.raises(InputError, match=r"all.vars.lab_backend is missing"):
        open_lab_testbed(inventory, bounds)
    template["all"]["vars"]["lab_backend"] = {"cpu": "cgroups", "ovs": {"port": "vxlan0"}}
    inventory.write_text(yaml.safe_dump(template))
    with pytest.raises(InputError, match=r"all.vars.lab_backend.cpu: Input should be 'cgroup' or 'pod_resize'"):
        open_lab_testbed(inventory, bounds)
    template["all"]["vars"]["lab_backend"] = {"ovs": {"port": "vxlan0"}, "ssh": {"key_env": "LP_UNSET_KEY"}}
    inventory.write_text(yaml.safe_dump(template))
    with pytest.raises(InputError, match=r"slice\(s\) video are not in the inventory's slices"):
        open_lab_testbed(inventory, {"video": bounds["embb"]})
    with pytest.raises(InputError, match="set LP_UNSET_KEY to the SSH private key"):
        open_lab_testbed(inventory, bounds)
    with pytest.raises(InputError, match=r"needs 'testbed\.inventory: FILE'"):
        open_lab_testbed(None, bounds)


def test_lab_backend_fake_kubernetes_resize_and_plain_ovs_queue(
        fake_kubernetes: tuple[FakeKubernetes, Path], ovs_queues: tuple[LocalRunner, list[str], str],
        tmp_path: Path) -> None:
    """The other actuator choices: CPU by pod resize (API server fake), bandwidth by the OvS queue alone."""
    server, kubeconfig = fake_kubernetes
    switch_runner, vsctl, port = ovs_queues
    template = lab_example_on_loopback()
    template["all"]["vars"]["lab_backend"] = {
        "cpu": "pod_resize", "bandwidth": "ovs_queue", "prometheus_url": "http://127.0.0.1:1",
        "kubernetes": {"kubeconfig": str(kubeconfig), "namespace": "slices", "selector": "app=gnb,slice={slice}",
                       "container": "gnb"},
        "ovs": {"tier": "regional", "port": port, "vsctl": vsctl}}
    inventory = tmp_path / "lab.yml"
    inventory.write_text(yaml.safe_dump(template))
    with open_lab_testbed(inventory, {"embb": (Interval(500, 4000), Interval(5, 50))},
                          runner_for=lambda _host: switch_runner) as lab:
        assert isinstance(lab.cpu["embb"], PodResizeCpuActuator)
        assert isinstance(lab.bandwidth["embb"], OvsQueueActuator)
        applied = lab.apply("embb", Allocation(cpu_millicores=3000, bandwidth_mbps=8))
        assert applied.cpu_millicores == 3000 and applied.bandwidth_mbps == pytest.approx(8, rel=0.01)
    pod = server.pods[("slices", "gnb-embb-7d9f")]
    assert pod["status"]["containerStatuses"][0]["resources"]["limits"]["cpu"] == "3000m"
