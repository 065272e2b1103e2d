"""The UPF's N6 path (issue 16, item 8): the UE subnet NATed to the data network, and a data-network endpoint.

The Open5GS slice overlays are rendered with ``kubectl kustomize`` (their objects are validated against the
Kubernetes 1.29 schema by ``make verify-lab``, tests/test_lab_verify.py); the UPF's N6 script runs for real
here, in a network namespace of ours, as the UPF container would run it before the UPF.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import REPO, venv_environment

OPEN5GS = REPO / "manifests" / "open5gs"
N6_SCRIPT = OPEN5GS / "slice" / "upf" / "n6.sh"


def rendered(overlay: Path) -> dict[tuple[str, str], dict]:
    done = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True,
                          env=venv_environment(), timeout=120)
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(done.stdout) if doc}


def session(overlay: Path) -> tuple[ipaddress.IPv4Network, str]:
    """The UE subnet and gateway of the overlay's UPF configuration (upf.yaml, upf.session[0])."""
    entry = yaml.safe_load((overlay / "upf.yaml").read_text())["upf"]["session"][0]
    return ipaddress.IPv4Interface(entry["subnet"]).network, str(entry["gateway"])


@pytest.mark.slow
@pytest.mark.parametrize("overlay", sorted((OPEN5GS / "overlays").iterdir()), ids=lambda path: path.name)
def test_each_slice_upf_nats_its_ue_subnet_and_has_a_data_network_beside_it(overlay: Path) -> None:
    objects = rendered(overlay)
    name = overlay.name
    upf = objects[("Deployment", f"{name}-open5gs-upf")]["spec"]["template"]["spec"]
    (container,) = upf["containers"]
    assert container["command"][:2] == ["/bin/sh", "/etc/open5gs-n6/n6.sh"]
    assert container["command"][2:] == ["open5gs-upfd", "-c", "/etc/open5gs/upf.yaml"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    subnet, gateway = session(overlay)
    assert (env["UE_SUBNET"], env["UE_GATEWAY"]) == (str(subnet), gateway)
    (volume,) = [v for v in upf["volumes"] if v["name"] == "n6"]
    script = objects[("ConfigMap", volume["configMap"]["name"])]["data"]["n6.sh"]
    assert script == N6_SCRIPT.read_text()
    dn = objects[("Deployment", f"{name}-dn")]["spec"]["template"]["spec"]
    assert dn["nodeSelector"] == upf["nodeSelector"]  # the data network beside the UPF
    service = objects[("Service", f"{name}-dn")]
    assert service["spec"]["selector"]["slicebed.io/slice"] == name


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"h-n6-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def run_n6(namespace: str, subnet: str, gateway: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, "env", f"UE_SUBNET={subnet}", f"UE_GATEWAY={gateway}",
                           "sh", str(N6_SCRIPT), "echo", "upf started"], capture_output=True, text=True,
                          check=False, timeout=60)


def test_n6_script_routes_and_nats_the_ue_subnet_once_in_a_real_namespace(namespace: str) -> None:
    """What the UPF container does before the UPF: gateway on ogstun, forwarding, one MASQUERADE rule, even when
    the container restarts (the script runs again); then it execs the UPF (here: echo)."""
    subnet, gateway = session(OPEN5GS / "overlays" / "embb")
    for _ in range(2):
        started = run_n6(namespace, str(subnet), gateway)
        assert started.returncode == 0 and started.stdout == "upf started\n", started.stderr
    inside = ["ip", "netns", "exec", namespace]
    address = subprocess.run([*inside, "ip", "-4", "-o", "addr", "show", "dev", "ogstun"], capture_output=True,
                             text=True, check=True).stdout
    assert f"inet {gateway}/{subnet.prefixlen} " in address
    assert subprocess.run([*inside, "cat", "/proc/sys/net/ipv4/ip_forward"], capture_output=True, text=True,
                          check=True).stdout.strip() == "1"
    rules = subprocess.run([*inside, "iptables", "-t", "nat", "-S", "POSTROUTING"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert rules.count(f"-A POSTROUTING -s {subnet} ! -o ogstun -j MASQUERADE") == 1, rules
    missing = subprocess.run(["ip", "netns", "exec", namespace, "sh", str(N6_SCRIPT), "true"], capture_output=True,
                             text=True, check=False, timeout=60)
    assert missing.returncode != 0 and "UE_SUBNET" in missing.stderr
