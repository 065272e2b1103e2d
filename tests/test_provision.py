"""`slicebed provision`: authentication against a real Keystone; compute, network and image on contract fakes.

Keystone (PyPI ``keystone``) runs here on sqlite behind a WSGI server on a loopback port; the fakes of Nova,
Neutron and Glance are registered in its catalog, so openstacksdk discovers them as on a real cloud, and
they accept only tokens Keystone validates.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_address
from pathlib import Path

import openstack
import paramiko
import pytest
import requests
import yaml
from fakes.openstack import FakeOpenStack
from helpers import REPO, VENV_BIN, accepts_connections, assert_one_error_line, free_port, wait_until_ready

from controller.cli import main
from controller.deploy.provision import CloudError, Provisioner, connect, write_inventory, write_known_hosts
from controller.deploy.topology import SLICEPILOT_SIZES, load_topology
from core.errors import InputError

pytestmark = pytest.mark.slow  # Keystone takes ~8 s to set up once per session

ADMIN_PASSWORD = "lp-Keystone-admin-4417"
SERVE_KEYSTONE = """
import sys
port = int(sys.argv[1]); del sys.argv[1:]  # keystone parses sys.argv itself
from wsgiref.simple_server import WSGIRequestHandler, make_server
from keystone.server import wsgi
class Quiet(WSGIRequestHandler):
    def log_message(self, *args): pass
make_server("127.0.0.1", port, wsgi.initialize_public_application(), handler_class=Quiet).serve_forever()
"""



@dataclass
class Cloud:
    """A real Keystone with the fakes in its catalog, and a clouds.yaml naming it."""

    auth_url: str
    fake: FakeOpenStack
    clouds_yaml: Path


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Keystone (sqlite, fernet tokens) on a free loopback port; yields its /v3 URL."""
    home = tmp_path_factory.mktemp("lp-keystone")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v3"
    (home / "keystone.conf").write_text(
        f"[DEFAULT]\nlog_file = {home}/keystone.log\n[database]\nconnection = sqlite:///{home}/keystone.db\n"
        f"[token]\nprovider = fernet\n[fernet_tokens]\nkey_repository = {home}/fernet-keys\n"
        f"[fernet_receipts]\nkey_repository = {home}/fernet-receipts\n")
    manage = [str(VENV_BIN / "keystone-manage"), "--config-file", str(home / "keystone.conf")]
    for command in (["db_sync"], ["fernet_setup", "--keystone-user", "root", "--keystone-group", "root"],
                    ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD, "--bootstrap-public-url", url,
                     "--bootstrap-admin-url", url, "--bootstrap-region-id", "RegionOne"]):
        subprocess.run([*manage, *command], check=True, capture_output=True)
    environment = {**os.environ, "OS_KEYSTONE_CONFIG_DIR": str(home), "OS_KEYSTONE_CONFIG_FILES": "keystone.conf"}
    server = subprocess.Popen([sys.executable, "-c", SERVE_KEYSTONE, str(port)], env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_ready(accepts_connections(port), server, "Keystone", timeout_s=60)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def password_auth(user: str, password: str) -> dict:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}


@pytest.fixture(scope="session")
def catalog(keystone: str) -> Iterator[FakeOpenStack]:
    """The fakes, registered in Keystone's catalog as compute, network and image (public, RegionOne)."""
    answer = requests.post(f"{keystone}/auth/tokens", json=password_auth("admin", ADMIN_PASSWORD), timeout=10)
    answer.raise_for_status()
    admin_token = answer.headers["X-Subject-Token"]
    project_id = answer.json()["token"]["project"]["id"]

    @functools.lru_cache(maxsize=64)
    def validate(token: str) -> bool:
        check = requests.get(f"{keystone}/auth/tokens", timeout=10,
                             headers={"X-Auth-Token": admin_token, "X-Subject-Token": token})
        return check.status_code == 200

    with FakeOpenStack(validate, project_id) as fake:
        admin = openstack.connect(auth_url=keystone, username="admin", password=ADMIN_PASSWORD,
                                  project_name="admin", user_domain_id="default", project_domain_id="default",
                                  region_name="RegionOne")
        for name, kind, path in (("nova", "compute", "/compute/v2.1"), ("neutron", "network", "/network"),
                                 ("glance", "image", "/image")):
            service = admin.identity.create_service(name=name, type=kind)
            admin.identity.create_endpoint(service_id=service.id, interface="public", url=fake.url + path,
                                           region_id="RegionOne")
        admin.close()
        yield fake


@pytest.fixture
def clouds_yaml(keystone: str, tmp_path: Path) -> Path:
    """A clouds.yaml naming the real Keystone three ways: ``lab`` (right password), ``wrong``, and ``down``."""
    auth = {"auth_url": keystone, "username": "admin", "project_name": "admin", "user_domain_id": "default",
            "project_domain_id": "default"}
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {
        "lab": {"auth": {**auth, "password": ADMIN_PASSWORD}, "region_name": "RegionOne"},
        "wrong": {"auth": {**auth, "password": ADMIN_PASSWORD + "-typo"}, "region_name": "RegionOne"},
        "down": {"auth": {**auth, "auth_url": f"http://127.0.0.1:{free_port()}/v3", "password": "x"}}}}))
    return path


@pytest.fixture
def cloud(catalog: FakeOpenStack, keystone: str, clouds_yaml: Path) -> Cloud:
    """A fresh fake cloud (flavors, an image, a provider network) behind the real Keystone of ``clouds_yaml``."""
    catalog.reset()
    for name, vcpus, ram_gib in (("m1.small", 2, 4), ("edge.16", 16, 16), ("big.20", 20, 24),
                                 ("regional.32", 32, 32), ("central.64", 64, 64), ("huge.128", 128, 128)):
        catalog.add_flavor(name, vcpus, ram_gib * 1024, 160)
    catalog.add_image("ubuntu-24.04")
    catalog.add_network("provider", external_cidr="203.0.113.0/24")
    return Cloud(keystone, catalog, clouds_yaml)


@pytest.fixture
def example_topology(tmp_path: Path) -> Path:
    """The shipped example topology as it stands (documentation addresses), with a throw-away public key."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    document = yaml.safe_load((REPO / "topologies" / "lab.example.yaml").read_text())
    document.update(ssh_public_key=str(tmp_path / "id.pub"),
                    inventory_template=str(REPO / "inventory" / "lab.example.yml"))
    path = tmp_path / "example.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def topology_file(example_topology: Path) -> Path:
    """The example topology edited as a user would (own underlay and ingress networks), two edge VMs, no router."""
    document = yaml.safe_load(example_topology.read_text())
    document.update(external_network=None, underlay={"cidr": "10.20.0.0/24", "dns": ["1.1.1.1"]})
    for rule in document["ingress"]:
        if rule.get("cidr") == "198.51.100.0/24":
            rule["cidr"] = "10.0.0.0/8"
    document["tiers"]["edge"]["count"] = 2
    path = example_topology.with_name("topology.yaml")
    path.write_text(yaml.safe_dump(document))
    return path


def test_keystone_authenticates_from_clouds_yaml_and_its_catalog_leads_to_the_fakes(cloud: Cloud) -> None:
    connection = connect("lab", cloud.clouds_yaml)
    token = connection.auth_token
    check = requests.post(f"{cloud.auth_url}/auth/tokens", json=password_auth("admin", ADMIN_PASSWORD), timeout=10)
    assert requests.get(f"{cloud.auth_url}/auth/tokens", timeout=10, headers={
        "X-Auth-Token": check.headers["X-Subject-Token"], "X-Subject-Token": token}).status_code == 200
    assert connection.compute.get_endpoint() == f"{cloud.fake.url}/compute/v2.1"  # discovered from the catalog


def test_keystone_refusals_are_one_line_without_secrets(clouds_yaml: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    messages = []
    for name, pattern in (("wrong", "refused the credentials .HTTP 401.; check username, password"),
                          ("down", "cannot reach Keystone at http://127.0.0.1:"),
                          ("absent", "cloud 'absent': .*not found")):
        with pytest.raises(InputError, match=pattern) as refused:
            connect(name, clouds_yaml)
        messages.append(str(refused.value))
    with pytest.raises(InputError, match="no such file"):
        connect("lab", clouds_yaml.with_name("missing.yaml"))
    assert all("\n" not in message for message in messages)
    for text in [*messages, caplog.text]:
        assert ADMIN_PASSWORD not in text


def test_cli_bad_password_exits_2_with_one_line(clouds_yaml: Path, topology_file: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--quiet", "provision", "--cloud", "wrong", "--clouds-yaml", str(clouds_yaml),
                   "--topology", str(topology_file)])
    err = capsys.readouterr().err
    assert status == 2
    assert_one_error_line(err, "slicebed: error: cloud 'wrong': Keystone at ")
    assert ADMIN_PASSWORD not in err


def test_provision_fake_creates_is_idempotent_and_destroys_only_its_own(cloud: Cloud, topology_file: Path,
                                                                        tmp_path: Path) -> None:
    fake = cloud.fake
    topology = load_topology(topology_file)
    steps: list[str] = []
    provisioner = Provisioner(connect("lab", cloud.clouds_yaml), topology, steps.append, wait_s=30, poll_s=0.01)
    outcome = provisioner.apply()
    assert len(steps) == provisioner.steps()
    assert outcome.existing == []
    names = ["slicebed-microopt-lab-edge-1", "slicebed-microopt-lab-edge-2", "slicebed-microopt-lab-regional-1",
             "slicebed-microopt-lab-central-1"]
    assert [host.name for host in outcome.hosts] == names
    assert all(ip_address(host.address) in IPv4Network("10.20.0.0/24") for host in outcome.hosts)
    servers = {server["name"]: server for server in fake.servers.values()}
    flavors = {flavor["id"]: flavor for flavor in fake.flavors.values()}
    for name in names:  # SlicePilot sizes by default: the smallest flavor that fits each tier
        tier = name.split("-")[-2]
        chosen = next(f for f in flavors.values() if f["name"] == servers[name]["flavor"]["original_name"])
        assert (chosen["vcpus"], chosen["ram"] // 1024) == SLICEPILOT_SIZES[tier]
        assert servers[name]["tags"] == ["slicebed-deployment=microopt-lab"]
        assert servers[name]["metadata"] == {"slicebed-deployment": "microopt-lab", "slicebed-tier": tier}
        assert servers[name]["key_name"] == "slicebed-microopt-lab"
    network_tags = {item["name"]: item["tags"] for item in fake.neutron["networks"].values()}
    assert network_tags == {"provider": [], "slicebed-microopt-lab-underlay": ["slicebed-deployment=microopt-lab"]}
    (group,) = [g for g in fake.neutron["security-groups"].values() if g["name"] == "slicebed-microopt-lab"]
    ingress = [r for r in fake.neutron["security-group-rules"].values()
               if r["security_group_id"] == group["id"] and r["direction"] == "ingress"]
    assert len(ingress) == 1 + len(topology.ingress)
    assert any(r["remote_group_id"] == group["id"] and r["protocol"] is None for r in ingress)

    inventory = tmp_path / "inventory" / "lab.yml"
    write_inventory(topology, outcome.hosts, inventory, "lab")
    written = yaml.safe_load(inventory.read_text())
    template = yaml.safe_load((REPO / "inventory" / "lab.example.yml").read_text())
    assert {k: v for k, v in written["all"]["vars"].items() if "underlay" not in k} == {
        k: v for k, v in template["all"]["vars"].items() if "underlay" not in k}
    assert set(written["all"]["children"]) == set(template["all"]["children"])
    edge = written["all"]["children"]["edge"]["hosts"]
    assert {name: entry["ansible_host"] for name, entry in edge.items()} == {
        host.name: host.address for host in outcome.hosts if host.tier == "edge"}
    assert written["all"]["children"]["sdn_controller"]["hosts"] == {"slicebed-microopt-lab-central-1": None}
    ansible_inventory = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(inventory), "--list"],
                                       capture_output=True, text=True, check=True)
    assert "slicebed-microopt-lab-edge-2" in ansible_inventory.stdout

    host_keys = {server["name"]: server["_host_key"] for server in fake.servers.values()}
    assert {host.name: host.host_keys for host in outcome.hosts} == {name: (key,) for name, key in host_keys.items()}
    known_hosts = tmp_path / "lab.known_hosts"
    assert write_known_hosts(outcome.hosts, known_hosts) == []
    parsed = paramiko.HostKeys(str(known_hosts))
    for host in outcome.hosts:  # what SshRunner's RejectPolicy checks against
        assert parsed.lookup(host.address)["ecdsa-sha2-nistp256"].get_base64() == host_keys[host.name].split()[1]

    def changes() -> int:  # reading a console is a POST action, but changes nothing
        return sum(r.method in ("POST", "PUT", "DELETE") and not r.path.endswith("/action") for r in fake.requests)

    posts_before = changes()
    again = Provisioner(connect("lab", cloud.clouds_yaml), topology, wait_s=30, poll_s=0.01).apply()
    assert again.created == []
    assert again.existing == [label for label in outcome.created if not label.startswith("rule ")]
    assert again.hosts == outcome.hosts
    assert changes() == posts_before  # nothing changed

    fake.add_network("someone-else", tags=["team=radio"])
    deleted = provisioner.destroy()
    assert len([d for d in deleted if d.startswith("server ")]) == 4
    assert {"keypair slicebed-microopt-lab", "security group slicebed-microopt-lab",
            "subnet slicebed-microopt-lab-underlay", "network slicebed-microopt-lab-underlay"} <= set(deleted)
    assert fake.servers == {} and fake.keypairs == {}
    assert sorted(n["name"] for n in fake.neutron["networks"].values()) == ["provider", "someone-else"]
    assert [g["name"] for g in fake.neutron["security-groups"].values()] == []
    assert provisioner.destroy() == []


def test_provision_fake_checks_input_before_creating_anything(cloud: Cloud, topology_file: Path) -> None:
    fake = cloud.fake
    connection = connect("lab", cloud.clouds_yaml)
    base = load_topology(topology_file)
    problems = {
        "image 'debian-13' does not exist": base.model_copy(update={"image": "debian-13"}),
        r"tiers.central: no flavor has >= 256 vCPU": base.model_copy(update={"tiers": base.tiers.model_copy(
            update={"central": base.tiers.central.model_copy(update={"vcpus": 256})})}),
        r"tiers.edge.flavor: no flavor named 'gpu.xl'": base.model_copy(update={"tiers": base.tiers.model_copy(
            update={"edge": base.tiers.edge.model_copy(update={"flavor": "gpu.xl"})})}),
    }
    for pattern, topology in problems.items():
        with pytest.raises(InputError, match=pattern):
            Provisioner(connection, topology).apply()
    assert not [r for r in fake.requests if r.method in ("POST", "PUT", "DELETE")]
    custom = base.model_copy(update={"tiers": base.tiers.model_copy(update={
        "edge": base.tiers.edge.model_copy(update={"vcpus": 18, "ram_gib": 20})})})
    assert Provisioner(connection, custom).plan().flavors["edge"].name == "big.20"


def test_provision_fake_console_without_host_keys(cloud: Cloud, topology_file: Path, tmp_path: Path) -> None:
    cloud.fake.silent_consoles.add("slicebed-microopt-lab-regional-1")  # e.g. an image without cloud-init
    provisioner = Provisioner(connect("lab", cloud.clouds_yaml), load_topology(topology_file), wait_s=30,
                              poll_s=0.01, console_wait_s=0.2)
    outcome = provisioner.apply()
    silent = {host.name: host.host_keys for host in outcome.hosts if not host.host_keys}
    assert silent == {"slicebed-microopt-lab-regional-1": ()}
    assert write_known_hosts(outcome.hosts, tmp_path / "known_hosts") == ["slicebed-microopt-lab-regional-1"]
    assert len((tmp_path / "known_hosts").read_text().splitlines()) == len(outcome.hosts) - 1
    provisioner.destroy()


def test_provision_fake_server_error_names_the_way_out(cloud: Cloud, topology_file: Path) -> None:
    cloud.fake.fail_servers.add("slicebed-microopt-lab-regional-1")
    provisioner = Provisioner(connect("lab", cloud.clouds_yaml), load_topology(topology_file), wait_s=30,
                              poll_s=0.01)
    with pytest.raises(CloudError, match="regional-1 went to ERROR; `slicebed provision --destroy` removes"):
        provisioner.apply()
    provisioner.destroy()
    assert cloud.fake.servers == {}
    assert [n["name"] for n in cloud.fake.neutron["networks"].values()] == ["provider"]


def test_cli_provision_fake_end_to_end(cloud: Cloud, topology_file: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "lab.yml"
    common = ["--cloud", "lab", "--clouds-yaml", str(cloud.clouds_yaml), "--topology", str(topology_file),
              "--poll-s", "0.05"]
    assert main(["provision", *common, "--inventory-out", str(inventory), "--json"]) == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out)
    assert summary["inventory"] == str(inventory)
    assert "slicebed-microopt-lab-central-1" in {host["host"] for host in summary["hosts"]}
    assert yaml.safe_load(inventory.read_text())["all"]["children"]["central"]["hosts"]
    assert len(inventory.with_suffix(".known_hosts").read_text().splitlines()) == 4
    for artifact in (printed.out, printed.err, inventory.read_text()):  # the password is in clouds.yaml only
        assert ADMIN_PASSWORD not in artifact
    assert main(["--quiet", "provision", *common, "--destroy"]) == 0
    assert "deleted 8 resource(s) of deployment" in capsys.readouterr().out
    assert cloud.fake.servers == {}


def test_cli_provision_refuses_the_example_topology_as_it_stands_before_asking_the_fake_cloud(
        cloud: Cloud, example_topology: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its networks are documentation ranges (RFC 5737): nothing is created until the user edits the file."""
    requests_before = len(cloud.fake.requests)
    assert main(["provision", "--cloud", "lab", "--clouds-yaml", str(cloud.clouds_yaml), "--topology",
                 str(example_topology)]) == 2
    assert_one_error_line(capsys.readouterr().err, f"slicebed: error: {example_topology}: underlay.cidr 192.0.2.0/24",
                          "documentation address", "RFC 5737", f"edit {example_topology}")
    assert len(cloud.fake.requests) == requests_before  # the cloud was never asked
    assert [n["name"] for n in cloud.fake.neutron["networks"].values()] == ["provider"]


def test_topology_validation_is_one_line(tmp_path: Path, topology_file: Path) -> None:
    document = yaml.safe_load(topology_file.read_text())
    cases = {
        "tiers.edge.cpus: unknown key (allowed keys: count, disk_gib, flavor, ram_gib, vcpus)":
            lambda d: d["tiers"]["edge"].update(cpus=4),
        "ingress[0]: icmp rules take no ports": lambda d: d.update(ingress=[{"protocol": "icmp", "ports": [1, 2]}]),
        "roles.sdn_controller is on tier regional, which has count 0":
            lambda d: d["tiers"]["regional"].update(count=0) or d["roles"].update(sdn_controller="regional"),
        "name: String should match pattern": lambda d: d.update(name="Bad Name"),
    }
    for expected, change in cases.items():
        changed = yaml.safe_load(yaml.safe_dump(document))
        change(changed)
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(changed))
        with pytest.raises(InputError) as error:
            load_topology(path)
        assert expected in str(error.value) and str(error.value).startswith(f"{path}: ")
        assert "\n" not in str(error.value)


def test_provision_fake_router_and_floating_ips(cloud: Cloud, topology_file: Path) -> None:
    fake = cloud.fake
    connection = connect("lab", cloud.clouds_yaml)
    topology = load_topology(topology_file).model_copy(update={"external_network": "provider"})
    steps: list[str] = []
    provisioner = Provisioner(connection, topology, steps.append, wait_s=30, poll_s=0.01)
    outcome = provisioner.apply()
    assert len(steps) == provisioner.steps()
    assert "router slicebed-microopt-lab" in outcome.created
    assert all(ip_address(host.address) in IPv4Network("203.0.113.0/24") for host in outcome.hosts)
    floating = {f["floating_ip_address"]: f for f in fake.neutron["floatingips"].values()}
    assert sorted(floating) == sorted(host.address for host in outcome.hosts)
    assert all(f["tags"] == ["slicebed-deployment=microopt-lab"] and f["port_id"] for f in floating.values())
    again = Provisioner(connection, topology, wait_s=30, poll_s=0.01).apply()
    assert again.created == [] and again.hosts == outcome.hosts
    assert len(fake.neutron["floatingips"]) == len(outcome.hosts)
    deleted = provisioner.destroy()
    assert "router slicebed-microopt-lab" in deleted
    assert len([label for label in deleted if label.startswith("floating ip ")]) == len(outcome.hosts)
    assert fake.neutron["routers"] == {} and fake.neutron["floatingips"] == {}
    assert [n["name"] for n in fake.neutron["networks"].values()] == ["provider"]
    assert all(port["device_owner"] != "network:router_interface" for port in fake.neutron["ports"].values())
    fake.add_network("tenant-only")
    with pytest.raises(InputError, match="external_network: 'tenant-only' is not an external"):
        Provisioner(connection, topology.model_copy(update={"external_network": "tenant-only"})).apply()
