"""Lab latency (issue 16, item 11): every pair of tiers is delayed, with tc-netem only.

``playbooks/site.yml`` runs for real against a lab inventory whose three tier hosts are this machine
(``ansible_connection: local``) with this machine's own address as the underlay: its facts play computes the
delay of every pair of tier hosts, and its netem play (check mode) must take tc-netem, install or load sch_netem,
or stop in one line naming the package; never the NFQUEUE delayer, whose paths are on the machine running Ansible.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from helpers import REPO, VENV_BIN, lab_example_on_loopback, venv_environment

PLAYBOOKS = REPO / "playbooks"


def own_address() -> str:
    """This machine's first global IPv4 address (what facts list; loopback is not listed)."""
    listing = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "inet" in listing, "the lab-latency tests need a global IPv4 address on this machine (facts skip lo)"
    return listing[listing.index("inet") + 1].split("/")[0]


@pytest.fixture
def lab_on_this_host(tmp_path: Path) -> Path:
    """The example lab inventory with its three tier hosts on this machine, over the local connection."""
    document = lab_example_on_loopback()
    variables = document["all"]["vars"]
    variables.pop("ansible_ssh_private_key_file")
    variables.update(ansible_connection="local", ansible_become=False, ansible_python_interpreter=sys.executable,
                     underlay_cidr=f"{own_address()}/32")
    path = tmp_path / "lab.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def site(inventory: Path, *args: str, callback: str = "default") -> subprocess.CompletedProcess[str]:
    """``ansible-playbook site.yml`` with slicebed's configuration; ``callback`` prints the results (alone: the
    configuration's timing callback would interleave with a JSON one)."""
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOKS / "site.yml"),
                           *args], capture_output=True, text=True, check=False, timeout=600,
                          env=venv_environment(ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                                               ANSIBLE_STDOUT_CALLBACK=callback, ANSIBLE_CALLBACKS_ENABLED=callback))


@pytest.mark.slow
def test_site_delays_every_tier_pair_the_missing_one_as_the_path_sum(lab_on_this_host: Path) -> None:
    """The example matrix links edge-regional (5 ± 1 ms) and regional-central (10 ± 2 ms); edge-central, which
    the underlay joins directly (pod traffic, N2), gets 15 ms with the jitters added in quadrature."""
    result = site(lab_on_this_host, "--tags", "no_component", callback="ansible.posix.json")  # the facts play only
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    facts_play = json.loads(result.stdout)["plays"][0]  # the others run no task
    (task,) = [t for t in facts_play["tasks"] if "host_latency" in json.dumps(t["hosts"].get("edge-1", {}))]
    pairs = {tuple(entry["tiers"]): entry for entry in task["hosts"]["edge-1"]["ansible_facts"]["host_latency"]}
    assert set(pairs) == {("edge", "regional"), ("edge", "central"), ("regional", "central")}
    assert pairs[("edge", "regional")] | {} == {"a": "edge-1", "b": "regional-1", "tiers": ["edge", "regional"],
                                               "derived": False, "delay_ms": 5.0, "jitter_ms": 1.0, "loss_pct": 0.0}
    derived = pairs[("edge", "central")]
    assert (derived["a"], derived["b"], derived["derived"]) == ("edge-1", "central-1", True)
    assert derived["delay_ms"] == 15.0 and derived["jitter_ms"] == pytest.approx(5 ** 0.5, abs=1e-3)


def sch_netem_available() -> bool:
    return subprocess.run(["modinfo", "-n", "sch_netem"], capture_output=True, check=False).returncode == 0


@pytest.mark.slow
def test_lab_netem_requires_sch_netem_and_never_falls_back_to_nfqueue(lab_on_this_host: Path) -> None:
    """The netem play in check mode: on a kernel without sch_netem (this kind of machine) it stops at the module
    check, one line naming linux-modules-extra-<kernel>; on one with it, tc-netem. Never the NFQUEUE delayer."""
    result = site(lab_on_this_host, "--tags", "netem", "--check")
    output = result.stdout + result.stderr
    assert "Run a delayer for packets from each peer" not in output and "slicebed-delay" not in output, output[-3000:]
    release = os.uname().release
    if sch_netem_available():
        assert result.returncode == 0, output[-3000:]
        assert "TASK [netem : One class, netem qdisc and filter per peer]" in output
    else:
        assert result.returncode != 0
        assert "has no sch_netem" in output and f"linux-modules-extra-{release}" in output, output[-3000:]
        assert "TASK [netem : Root htb qdisc]" not in output


@pytest.mark.slow
def test_lab_netem_refuses_the_nfqueue_backend(lab_on_this_host: Path) -> None:
    result = site(lab_on_this_host, "--tags", "netem", "--check", "-e", "netem_backend=nfqueue")
    assert result.returncode != 0
    assert "a lab delays with tc-netem only" in result.stdout, result.stdout[-3000:]


def tier_latency_filter() -> Callable[[list[dict], dict[str, str]], list[dict]]:
    """The filter plugin's function, loaded from its file (playbooks/filter_plugins is not a package)."""
    spec = importlib.util.spec_from_file_location("tier_latency", PLAYBOOKS / "filter_plugins" / "tier_latency.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tier_latency


HOSTS = {"edge": "e", "regional": "r", "central": "c"}


@pytest.mark.parametrize(("latency", "message"), [
    ([{"a": "edge", "b": "regional", "delay_ms": 5}, {"a": "regional", "b": "central", "delay_ms": 10},
      {"a": "edge", "b": "central", "delay_ms": 15}], "give 2 links that join the tiers"),
    ([{"a": "edge", "b": "regional", "delay_ms": 5}], "give 2 links"),
    ([{"a": "edge", "b": "regional", "delay_ms": 5}, {"a": "regional", "b": "edge", "delay_ms": 5}],
     "listed twice"),
    ([{"a": "edge", "b": "core", "delay_ms": 5}, {"a": "regional", "b": "central", "delay_ms": 10}],
     "must be two different tiers"),
])
def test_tier_latency_refuses_a_matrix_that_loops_or_leaves_a_tier_out(latency: list[dict], message: str) -> None:
    with pytest.raises(ValueError, match=message):  # the plugin's LatencyMatrixError (Ansible's error in a play)
        tier_latency_filter()(latency, HOSTS)


def test_tier_latency_compounds_loss_along_the_path() -> None:
    pairs = tier_latency_filter()([{"a": "central", "b": "regional", "delay_ms": 2, "loss_pct": 10},
                                   {"a": "edge", "b": "regional", "delay_ms": 1, "loss_pct": 10}], HOSTS)
    (edge_central,) = [p for p in pairs if p["tiers"] == ["edge", "central"]]
    assert (edge_central["delay_ms"], edge_central["loss_pct"], edge_central["derived"]) == (3.0, 19.0, True)
