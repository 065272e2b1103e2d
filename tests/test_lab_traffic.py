"""Lab traffic: the app server streams to UE sinks that subscribe through their tunnel interface (real programs).

The sinks here bind to loopback (``--device lo``) or to one end of a veth pair whose other end sits in a namespace
holding the app server (tests/test_lab_check.py); the 5G path between them (srsUE's tunnel, N3, the UPF's NAT) only
exists on a lab.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from helpers import REPO, accepts_connections, free_port, kustomize, venv_environment, wait_until_ready

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


# --- the lab_traffic role, for real on this host (PID files: PID 1 here is not systemd), and its systemd unit -------

ROLES = REPO / "playbooks" / "roles"


def traffic_programs_filter() -> Callable[..., list[dict[str, Any]]]:
    """playbooks/filter_plugins/lab_traffic.py's traffic_programs (loaded from its file, as Ansible does)."""
    path = REPO / "playbooks" / "filter_plugins" / "lab_traffic.py"
    spec = importlib.util.spec_from_file_location("lab_traffic", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.traffic_programs  # type: ignore[no-any-return]


def run_play(play: list[dict[str, Any]], directory: Path) -> subprocess.CompletedProcess[str]:
    playbook = directory / "play.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    return subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook)], capture_output=True, text=True,
                          env=venv_environment(ANSIBLE_ROLES_PATH=str(ROLES),
                                               ANSIBLE_LIBRARY=str(REPO / "playbooks" / "library")),
                          check=False, timeout=300)


def recap_changed(output: str) -> int:
    match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", output)
    assert match, output[-3000:]
    return int(match.group(1))


def test_traffic_programs_per_slice_and_tunnel() -> None:
    plan = traffic_programs_filter()
    ports = {"control": 9464, "stream": 5000, "sink": 6000, "sink_metrics": 9564}
    slices = [{"name": "embb", "ran": "srsran"}, {"name": "urllc", "ran": "oai", "type": "urllc"},
              {"name": "iot", "ran": "oai", "ue_device": "oaitun_ue2"}]
    programs = plan(slices, "central-1", "edge-1", {"central-1": "10.0.0.3", "edge-1": "10.0.0.1"}, ports, 1300, 12)
    by_name = {p["name"]: p for p in programs}
    assert [p["name"] for p in programs] == ["app_server-embb", "ue_sink-embb", "app_server-urllc", "ue_sink-urllc",
                                             "app_server-iot", "ue_sink-iot"]
    urllc = by_name["app_server-urllc"]
    assert (urllc["target"], urllc["host"]) == ("10.0.0.3:9465", "central-1")
    assert by_name["app_server-urllc"]["args"][:4] == ["--slice", "urllc", "--type", "urllc"]
    sink = by_name["ue_sink-urllc"]["args"]
    assert sink[sink.index("--device") + 1] == "oaitun_ue1" and sink[sink.index("--subscribe") + 1] == "10.0.0.3:5001"
    assert by_name["ue_sink-urllc"]["target"] == "10.0.0.1:9565"
    assert "tun_srsue" in by_name["ue_sink-embb"]["args"] and "oaitun_ue2" in by_name["ue_sink-iot"]["args"]
    with pytest.raises(ValueError, match="ran 'other' has no known tunnel interface"):
        plan([{"name": "x", "ran": "other"}], "central-1", "edge-1", {"central-1": "a", "edge-1": "b"}, ports, 1300, 1)
    with pytest.raises(ValueError, match="host edge-1 has no underlay address"):
        plan(slices, "central-1", "edge-1", {"central-1": "10.0.0.3"}, ports, 1300, 12)


def test_the_traffic_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    (program,) = [p for p in traffic_programs_filter()(
        [{"name": "embb"}], "central-1", "edge-1", {"central-1": "10.0.0.3", "edge-1": "10.0.0.1"},
        {"control": 9464, "stream": 5000, "sink": 6000, "sink_metrics": 9564}, 1300, 12) if p["program"] == "ue_sink"]
    unit = tmp_path / "slicebed-ue_sink-embb.service"
    play = [{"name": "Render the unit", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"lab_traffic_program": program, "lab_traffic_dir": "/opt/slicebed",
                      "lab_traffic_program_python": sys.executable, "ansible_python_interpreter": sys.executable},
             "tasks": [{"name": "Unit", "ansible.builtin.template": {
                 "src": str(ROLES / "lab_traffic" / "templates" / "traffic.service.j2"), "dest": str(unit),
                 "mode": "0644"}}]}]
    result = run_play(play, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    text = unit.read_text()
    assert f"ExecStart={sys.executable} -m dataplane.ue_sink --slice embb " in text
    assert "--device tun_srsue --subscribe 10.0.0.3:5000" in text and "Restart=always" in text
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False,
                              timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.slow
def test_the_traffic_role_runs_idempotently_and_uninstalls(tmp_path: Path) -> None:
    """The role's host form on this host under PID files: the runtime copied, both programs started (the sink bound to
    loopback as its 'tunnel'), streaming once users are set; a second run changes nothing; uninstall leaves nothing."""
    ports = {"control": free_port(), "stream": free_port(), "sink": free_port(), "sink_metrics": free_port()}
    programs = traffic_programs_filter()([{"name": "embb"}], "localhost", "localhost", {"localhost": "127.0.0.1"},
                                         ports, 1300, 1, "lo")
    runtime = tmp_path / "slicebed"
    settings = {"lab_traffic_form": "hosts", "lab_traffic_programs": programs, "lab_traffic_dir": str(runtime),
                "lab_traffic_python": sys.executable, "lab_traffic_supervisor": "pidfile",
                "lab_traffic_source": str(REPO), "ansible_python_interpreter": sys.executable}
    install = [{"name": "Traffic", "hosts": "localhost", "connection": "local", "gather_facts": False,
                "vars": settings, "roles": [{"role": "lab_traffic"}]}]
    uninstall = [{"name": "Uninstall", "hosts": "localhost", "connection": "local", "gather_facts": False,
                  "vars": settings, "tasks": [{"name": "Uninstall", "ansible.builtin.import_role": {
                      "name": "lab_traffic", "tasks_from": "uninstall"}}]}]
    pids: list[int] = []
    try:
        first = run_play(install, tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        assert recap_changed(first.stdout) > 0
        assert sorted(path.name for path in (runtime / "src" / "dataplane").glob("*.py")) == \
            sorted(path.name for path in (REPO / "dataplane").glob("*.py"))
        pids = [int((runtime / "run" / f"{p['name']}.pid").read_text().split()[0]) for p in programs]
        second = run_play(install, tmp_path)
        assert recap_changed(second.stdout) == 0, second.stdout
        control = f"http://{programs[0]['target']}/control"
        assert requests.post(control, json={"users": 1}, timeout=5).json()["users"] == 1
        seen = wait_for(ports["sink_metrics"], 'slicebed_user_throughput_bps{slice="embb",user="0"}', 0.5e6)
        assert seen['slicebed_ue_attached{slice="embb"}'] == 1
    finally:
        done = run_play(uninstall, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not runtime.exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


# --- the pod form: the manifests agree with each other, with the RAN's tunnel and with the example inventory --------

def container(objects: list[dict[str, Any]], deployment: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the pod template, the named container) of a rendered Deployment."""
    (found,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment]
    template = found["spec"]["template"]
    (chosen,) = [c for c in template["spec"]["containers"] if c["name"] == name]
    return template, chosen


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def runtime_mounted(template: dict[str, Any], program: dict[str, Any]) -> None:
    """The program runs from the lab_traffic role's runtime (hostPath) with the Python the role fetched packages for."""
    defaults = yaml.safe_load((ROLES / "lab_traffic" / "defaults" / "main.yml").read_text())
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == "slicebed"]
    assert volume["hostPath"]["path"] == defaults["lab_traffic_dir"]
    env = {e["name"]: e for e in program["env"]}
    assert env["PYTHONPATH"]["value"] == f"{defaults['lab_traffic_dir']}/src:{defaults['lab_traffic_dir']}/pod-packages"
    assert env["SLICE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['slicebed.io/slice']"
    assert program["image"].split(":")[1].startswith(defaults["lab_traffic_pod_python_version"] + ".")
    assert template["metadata"]["annotations"]["slicebed.io/scrape"] == "true"
    assert {p["name"] for p in program["ports"]} >= {"sb-metrics"}


@pytest.mark.slow
def test_pod_form_manifests_agree_with_the_ran_and_the_inventory() -> None:
    """Each slice's app server listens where its UE's sink subscribes (<slice>-dn, the stream port), its control port
    is the NodePort the lab backend posts to (app_server_port + index), and each sink is bound to the tunnel its UE
    creates (srsUE's gw.ip_devname, OAI's oaitun_ue1)."""
    inventory = yaml.safe_load((REPO / "inventory" / "lab.example.yml").read_text())["all"]["vars"]
    backend, traffic = inventory["lab_backend"], inventory["traffic"]
    for index, entry in enumerate(inventory["slices"]):
        name = entry["name"]
        core = kustomize(REPO / "manifests" / "open5gs" / "overlays" / name)
        template, app = container(core, f"{name}-dn", "app-server")
        runtime_mounted(template, app)
        assert option(app["args"], "--packet-bytes") == str(traffic["packet_bytes"])
        assert float(option(app["args"], "--rate-mbps")) == traffic["user_rate_mbps"]
        stream_port = int(option(app["args"], "--listen").rsplit(":", 1)[1])
        services = {o["metadata"]["name"]: o for o in core if o["kind"] == "Service"}
        (stream,) = [p for p in services[f"{name}-dn"]["spec"]["ports"] if p["name"] == "stream"]
        assert (stream["port"], stream["protocol"]) == (stream_port, "UDP")
        (control,) = services[f"{name}-traffic"]["spec"]["ports"]
        assert services[f"{name}-traffic"]["spec"]["type"] == "NodePort"
        assert control["nodePort"] == backend["app_server_port"] + index
        assert control["port"] == int(option(app["args"], "--mgmt").rsplit(":", 1)[1])

        ran = entry["ran"]
        objects = kustomize(REPO / "manifests" / ran / "overlays" / name)
        ue = "srsran-ue" if ran == "srsran" else "oai-nrue"
        template, sink = container(objects, f"{name}-{ue}", "sink")
        runtime_mounted(template, sink)
        assert option(sink["args"], "--subscribe") == f"$(SLICE)-dn:{stream_port}"
        assert template["metadata"]["labels"]["slicebed.io/slice"] == name
        if ran == "srsran":
            conf = (REPO / "manifests" / "srsran" / "overlays" / name / "ue.conf").read_text()
            tunnel = re.search(r"^ip_devname\s*=\s*(\S+)", conf, re.M).group(1)  # type: ignore[union-attr]
        else:
            tunnel = "oaitun_ue1"  # nr-uesoftmodem's interface of its first UE instance
        assert option(sink["args"], "--device") == tunnel
        assert "NET_RAW" in sink["securityContext"]["capabilities"]["add"]


@pytest.mark.slow
def test_site_computes_one_traffic_plan_for_every_play(tmp_path: Path) -> None:
    """site.yml's own task, on the example inventory in host form (local connection: the documentation addresses are
    never contacted): every host holds the same plan, app servers on the lab backend's tier, sinks on the edge;
    and in pod form no program at all (the pods run them)."""
    site = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    facts = site[0]
    (plan,) = [task for task in facts["tasks"] if "traffic_programs" in task.get("ansible.builtin.set_fact", {})]
    plays = [{"name": "The underlay addresses and the traffic plan", "hosts": "tiers", "gather_facts": False,
              "vars": facts["vars"], "tasks": [
                  {"name": "Underlay address", "ansible.builtin.set_fact": {"underlay_address": "{{ ansible_host }}"}},
                  plan,
                  {"name": "Write the plan", "ansible.builtin.copy": {
                      "content": "{{ traffic_programs | to_json }}",
                      "dest": f"{tmp_path}/{{{{ inventory_hostname }}}}.json", "mode": "0644"}}]}]
    playbook = tmp_path / "plan.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    local = {"ansible_connection": "local", "ansible_become": False, "ansible_python_interpreter": sys.executable}
    plans = {}
    for form in ("hosts", "pods"):
        done = subprocess.run(["ansible-playbook", "-i", str(REPO / "inventory" / "lab.example.yml"), str(playbook),
                               "-e", json.dumps({**local, "traffic": {"form": form}})], capture_output=True, text=True,
                              env=venv_environment(ANSIBLE_FILTER_PLUGINS=str(REPO / "playbooks" / "filter_plugins")),
                              check=False, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        plans[form] = {path.stem: json.loads(path.read_text()) for path in tmp_path.glob("*.json")}
    assert all(plan == [] for plan in plans["pods"].values())
    hosts = plans["hosts"]
    assert hosts["edge-1"] == hosts["regional-1"] == hosts["central-1"]
    where = {program["name"]: (program["host"], program["target"]) for program in hosts["edge-1"]}
    assert where == {"app_server-embb": ("central-1", "192.0.2.31:30464"),
                     "ue_sink-embb": ("edge-1", "192.0.2.11:9564"),
                     "app_server-urllc": ("central-1", "192.0.2.31:30465"),
                     "ue_sink-urllc": ("edge-1", "192.0.2.11:9565")}
    urllc_sink = next(p for p in hosts["edge-1"] if p["name"] == "ue_sink-urllc")["args"]
    assert option(urllc_sink, "--device") == "oaitun_ue1" and option(urllc_sink, "--subscribe") == "192.0.2.31:5001"
