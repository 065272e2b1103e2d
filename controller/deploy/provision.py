"""`slicebed provision`: a lab topology's network, security group, key pair and VMs on an OpenStack cloud.

Everything is found again by name and the deployment tag (``slicebed-deployment=<name>``: Neutron and
Nova tags), so a second run creates nothing and ``destroy`` deletes exactly what carries the tag (the key
pair, which Nova cannot tag, by its deployment-scoped name). All input (image, flavors, key) is checked
before anything is created. The result is an Ansible inventory in the format of
``inventory/lab.example.yml``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keystoneauth1.exceptions
import openstack
import openstack.config
import openstack.connection
import openstack.exceptions
import yaml

from controller.deploy.inventory.tiers import TIERS, Tier
from controller.deploy.topology import Topology
from core.errors import InputError, SlicebedError
from core.retry import Attempts
from core.yamlfile import read_yaml

MIB_PER_GIB = 1024
HOST_KEYS = re.compile(r"-----BEGIN SSH HOST KEY KEYS-----\s*\n(.*?)-----END SSH HOST KEY KEYS-----", re.S)
UNDERLAY_KEYS = ("underlay_cidr", "slicebed_underlay_cidr")
NODE_NUMBER = "node_id"
INVENTORY_HEADER = ("# Written by `slicebed provision` for deployment {name} (cloud {cloud}); regenerated on every "
                    "run.\n# Format: inventory/lab.example.yml. No secrets: credentials come from the environment.\n")


class CloudError(SlicebedError):
    """The cloud refused or failed an operation (after input was validated)."""


@dataclass(frozen=True)
class Host:
    """A provisioned VM as the inventory sees it, with the SSH host keys it printed on its console."""

    name: str
    tier: Tier
    address: str
    host_keys: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What a provisioning run did: resources created or found, and the hosts."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """Cloud objects resolved from the topology before anything is created."""

    image_id: str
    flavors: dict[Tier, Any]
    public_key: str
    external_network_id: str | None


def connect(cloud: str, clouds_yaml: Path | None = None) -> openstack.connection.Connection:
    """An authenticated connection to cloud ``cloud`` of clouds.yaml (``clouds_yaml``, else the usual places).

    Raises:
        InputError: unknown cloud, unreachable Keystone or refused credentials, as one line.
    """
    if clouds_yaml is not None and not clouds_yaml.is_file():
        raise InputError(f"--clouds-yaml {clouds_yaml}: no such file")
    try:
        config = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)] if clouds_yaml else None)
        region = config.get_one(cloud=cloud)
    except (openstack.exceptions.ConfigException, keystoneauth1.exceptions.ClientException) as exc:
        raise InputError(f"cloud {cloud!r}: {_first_line(exc)}") from None
    connection = openstack.connection.Connection(config=region)
    auth_url = region.get_auth_args().get("auth_url", "?")
    try:
        connection.authorize()
    except (keystoneauth1.exceptions.ClientException, openstack.exceptions.SDKException) as exc:
        cause = _keystoneauth_cause(exc)
        if isinstance(cause, keystoneauth1.exceptions.Unauthorized):
            raise InputError(f"cloud {cloud!r}: Keystone at {auth_url} refused the credentials (HTTP 401); check "
                             "username, password (or OS_PASSWORD), project and domains in clouds.yaml") from None
        if isinstance(cause, keystoneauth1.exceptions.ConnectionError):
            raise InputError(f"cloud {cloud!r}: cannot reach Keystone at {auth_url}; check auth_url in "
                             "clouds.yaml") from None
        raise InputError(f"cloud {cloud!r}: Keystone at {auth_url} failed: {_first_line(exc)}") from None
    return connection


class Provisioner:
    """Creates, finds again, or destroys one topology's resources on one cloud."""

    def __init__(self, connection: openstack.connection.Connection, topology: Topology,
                 step: Callable[[str], None] = lambda _label: None, wait_s: float = 900, poll_s: float = 2,
                 console_wait_s: float = 300) -> None:
        self.cloud = connection
        self.topology = topology
        self.step = step
        self.wait_s, self.poll_s, self.console_wait_s = wait_s, poll_s, console_wait_s
        self.tag = topology.tag
        self.prefix = topology.prefix

    @property
    def wanted_servers(self) -> list[tuple[Tier, str]]:
        return [(tier, f"{self.prefix}-{tier}-{index + 1}") for tier in TIERS
                for index in range(getattr(self.topology.tiers, tier).count)]

    def steps(self) -> int:
        """How many times ``step`` is called by :meth:`apply` (for a progress bar)."""
        external = self.topology.external_network is not None
        return 4 + int(external) + (3 if external else 2) * len(self.wanted_servers)

    def plan(self) -> Plan:
        """Resolve the image and a flavor per tier and read the public key; raise InputError on any problem."""
        topology = self.topology
        image = self._call("find the image", self.cloud.image.find_image, topology.image, ignore_missing=True)
        if image is None:
            raise InputError(f"image {topology.image!r} does not exist on the cloud; upload an Ubuntu 22.04/24.04 "
                             "image or name an existing one")
        flavors = list(self._call("list flavors", self.cloud.compute.flavors, details=True))
        chosen = {tier: self._flavor(tier, flavors) for tier, _name in self.wanted_servers}
        public_key = topology.ssh_public_key.read_text(encoding="utf-8").strip()
        if not public_key.startswith(("ssh-", "ecdsa-")) or "PRIVATE KEY" in public_key:
            raise InputError(f"ssh_public_key {topology.ssh_public_key} is not an OpenSSH public key")
        return Plan(image.id, chosen, public_key, self._external_network())

    def _external_network(self) -> str | None:
        name = self.topology.external_network
        if name is None:
            return None
        network = self._call("find the external network", self.cloud.network.find_network, name,
                             ignore_missing=True)
        if network is None or not network.is_router_external:
            raise InputError(f"external_network: {name!r} is not an external (provider) network of the cloud")
        return str(network.id)

    def _flavor(self, tier: Tier, flavors: list[Any]) -> Any:
        spec = getattr(self.topology.tiers, tier)
        if spec.flavor is not None:
            named = [flavor for flavor in flavors if spec.flavor in (flavor.name, flavor.id)]
            if not named:
                raise InputError(f"tiers.{tier}.flavor: no flavor named {spec.flavor!r} on the cloud")
            return named[0]
        vcpus, ram_gib = self.topology.tiers.size(tier)
        fitting = [flavor for flavor in flavors if flavor.vcpus >= vcpus and flavor.ram >= ram_gib * MIB_PER_GIB
                   and (flavor.disk == 0 or flavor.disk >= spec.disk_gib)]
        if not fitting:
            raise InputError(f"tiers.{tier}: no flavor has >= {vcpus} vCPU, {ram_gib} GiB RAM and {spec.disk_gib} GB "
                             f"disk (the cloud has {len(flavors)}); set tiers.{tier}.flavor or smaller sizes")
        return min(fitting, key=lambda flavor: (flavor.vcpus, flavor.ram, flavor.disk, flavor.name))

    def apply(self) -> Outcome:
        """Create what is missing (after :meth:`plan`), wait for the VMs, and return the outcome."""
        plan = self.plan()
        outcome = Outcome()
        network = self._ensure_network(outcome)
        subnet = self._ensure_subnet(outcome, network)
        if plan.external_network_id is not None:
            self._ensure_router(outcome, plan.external_network_id, network, subnet)
        group = self._ensure_security_group(outcome)
        self._ensure_keypair(outcome, plan.public_key)
        servers = {server.name: server for server in self._servers()}
        for tier, name in self.wanted_servers:
            self._record(outcome, "server", name, name in servers)
            if name not in servers:
                servers[name] = self._call(f"create server {name}", self.cloud.compute.create_server, name=name,
                                           image_id=plan.image_id, flavor_id=plan.flavors[tier].id,
                                           networks=[{"uuid": network.id}], key_name=self.prefix,
                                           security_groups=[{"name": group.name}], tags=[self.tag],
                                           metadata={"slicebed-deployment": self.topology.name,
                                                     "slicebed-tier": tier})
        for tier, name in self.wanted_servers:
            server = self._wait_active(servers[name])
            self.step(f"server {name} active")
            address = self._address(server, network.name)
            if plan.external_network_id is not None:
                address = self._ensure_floating_ip(outcome, plan.external_network_id, server, network)
            outcome.hosts.append(Host(name, tier, address, self._host_keys(server)))
        return outcome

    def destroy(self) -> list[str]:
        """Delete every resource of the deployment (floating IPs and servers first); returns what was deleted."""
        network = self.cloud.network
        deleted = []
        for address in self._tagged(network.ips):
            self._call(f"delete floating IP {address.floating_ip_address}", network.delete_ip, address)
            deleted.append(f"floating ip {address.floating_ip_address}")
        servers = self._servers()
        for server in servers:
            self._call(f"delete server {server.name}", self.cloud.compute.delete_server, server)
            deleted.append(f"server {server.name}")
        for server in servers:
            self._call(f"wait for server {server.name} to go", self.cloud.compute.wait_for_delete, server,
                       interval=self.poll_s, wait=self.wait_s)
            self.step(f"server {server.name} deleted")
        keypair = self._call("look up the key pair", self.cloud.compute.find_keypair, self.prefix, ignore_missing=True)
        if keypair is not None:
            self._call("delete the key pair", self.cloud.compute.delete_keypair, keypair)
            deleted.append(f"keypair {self.prefix}")
        for router in self._tagged(network.routers):
            for port in self._call("list router ports", network.ports, device_id=router.id,
                                   device_owner="network:router_interface"):
                self._call(f"detach router {router.name}", network.remove_interface_from_router, router,
                           port=port.id)
            self._call(f"delete router {router.name}", network.delete_router, router)
            deleted.append(f"router {router.name}")
        for kind, lister, deleter in (("security group", network.security_groups, network.delete_security_group),
                                      ("subnet", network.subnets, network.delete_subnet),
                                      ("network", network.networks, network.delete_network)):
            for resource in self._tagged(lister):
                self._call(f"delete {kind} {resource.name}", deleter, resource)
                deleted.append(f"{kind} {resource.name}")
                self.step(f"{kind} {resource.name} deleted")
        return deleted

    def _ensure_network(self, outcome: Outcome) -> Any:
        name = f"{self.prefix}-underlay"
        found = self._tagged(self.cloud.network.networks, name=name)
        self._record(outcome, "network", name, bool(found))
        if found:
            return found[0]
        network = self._call("create the network", self.cloud.network.create_network, name=name)
        return self._call("tag the network", self.cloud.network.set_tags, network, [self.tag])

    def _ensure_subnet(self, outcome: Outcome, network: Any) -> Any:
        name = f"{self.prefix}-underlay"
        found = self._tagged(self.cloud.network.subnets, network_id=network.id)
        self._record(outcome, "subnet", name, bool(found))
        if found:
            return found[0]
        subnet = self._call("create the subnet", self.cloud.network.create_subnet, network_id=network.id, name=name,
                            ip_version=4, cidr=str(self.topology.underlay.cidr),
                            dns_nameservers=[str(server) for server in self.topology.underlay.dns])
        self._call("tag the subnet", self.cloud.network.set_tags, subnet, [self.tag])
        return subnet

    def _ensure_router(self, outcome: Outcome, external_id: str, network: Any, subnet: Any) -> None:
        """A router from the underlay to the external network (its interface added if a run died before)."""
        found = self._tagged(self.cloud.network.routers, name=self.prefix)
        self._record(outcome, "router", self.prefix, bool(found))
        if found:
            router = found[0]
        else:
            router = self._call("create the router", self.cloud.network.create_router, name=self.prefix,
                                external_gateway_info={"network_id": external_id})
            self._call("tag the router", self.cloud.network.set_tags, router, [self.tag])
        if not self._call("list router ports", self.cloud.network.ports, device_id=router.id, network_id=network.id):
            self._call("attach the router to the subnet", self.cloud.network.add_interface_to_router, router,
                       subnet=subnet.id)

    def _ensure_floating_ip(self, outcome: Outcome, external_id: str, server: Any, network: Any) -> str:
        ports = self._call(f"find the port of {server.name}", self.cloud.network.ports, device_id=server.id,
                           network_id=network.id)
        if not ports:
            raise CloudError(f"server {server.name} has no port on {network.name}")
        found = self._call("list floating IPs", self.cloud.network.ips, port_id=ports[0].id)
        self._record(outcome, "floating ip for", server.name, bool(found))
        if found:
            return str(found[0].floating_ip_address)
        address = self._call(f"create a floating IP for {server.name}", self.cloud.network.create_ip,
                             floating_network_id=external_id, port_id=ports[0].id)
        self._call("tag the floating IP", self.cloud.network.set_tags, address, [self.tag])
        return str(address.floating_ip_address)

    def _ensure_security_group(self, outcome: Outcome) -> Any:
        name = self.prefix
        found = self._tagged(self.cloud.network.security_groups, name=name)
        self._record(outcome, "security group", name, bool(found))
        if found:
            group = found[0]
        else:
            group = self._call("create the security group", self.cloud.network.create_security_group, name=name,
                               description=f"slicebed deployment {self.topology.name}")
            self._call("tag the security group", self.cloud.network.set_tags, group, [self.tag])
        present = {_rule_key(rule) for rule in self._call("list security group rules",
                                                          self.cloud.network.security_group_rules,
                                                          security_group_id=group.id)}
        for rule in self._rules(group.id):
            if _rule_key(rule) not in present:
                self._call("add a security group rule", self.cloud.network.create_security_group_rule,
                           security_group_id=group.id, **rule)
                outcome.created.append(f"rule {_describe_rule(rule)} in {name}")
        return group

    def _rules(self, group_id: str) -> Iterator[dict[str, Any]]:
        """Ingress from the topology, plus everything between the deployment's own VMs."""
        yield {"direction": "ingress", "ether_type": "IPv4", "protocol": None, "port_range_min": None,
               "port_range_max": None, "remote_ip_prefix": None, "remote_group_id": group_id}
        for rule in self.topology.ingress:
            low, high = rule.ports if rule.ports else (None, None)
            yield {"direction": "ingress", "ether_type": "IPv4", "protocol": rule.protocol, "port_range_min": low,
                   "port_range_max": high, "remote_ip_prefix": str(rule.cidr), "remote_group_id": None}

    def _ensure_keypair(self, outcome: Outcome, public_key: str) -> None:
        keypair = self._call("look up the key pair", self.cloud.compute.find_keypair, self.prefix,
                             ignore_missing=True)
        self._record(outcome, "keypair", self.prefix, keypair is not None)
        if keypair is None:
            self._call("create the key pair", self.cloud.compute.create_keypair, name=self.prefix,
                       public_key=public_key)
        elif keypair.public_key.split()[:2] != public_key.split()[:2]:
            raise InputError(f"key pair {self.prefix} exists on the cloud with another public key than "
                             f"{self.topology.ssh_public_key}; destroy the deployment or use that key")

    def _servers(self) -> list[Any]:
        return [server for server in self._call("list servers", self.cloud.compute.servers, details=True,
                                                tags=self.tag)
                if server.name.startswith(f"{self.prefix}-")]

    def _wait_active(self, server: Any) -> Any:
        try:
            return self.cloud.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"],
                                                      interval=self.poll_s, wait=self.wait_s)
        except openstack.exceptions.ResourceFailure:
            raise CloudError(f"server {server.name} went to ERROR; `slicebed provision --destroy` removes the "
                             "deployment's resources") from None
        except openstack.exceptions.ResourceTimeout:
            raise CloudError(f"server {server.name} not ACTIVE within {self.wait_s:g} s") from None

    def _host_keys(self, server: Any) -> tuple[str, ...]:
        """The SSH host keys cloud-init prints on the console (read through the authenticated Nova API), as
        ``type base64`` pairs; none if the console shows none within ``console_wait_s``."""
        for _ in Attempts(self.console_wait_s, self.poll_s):
            console = self._call(f"read the console of {server.name}", self.cloud.compute.get_server_console_output,
                                 server)
            block = HOST_KEYS.search(str(console.get("output", "")))
            if block is not None:
                return tuple(" ".join(line.split()[:2]) for line in block.group(1).splitlines()
                             if len(line.split()) >= 2)
        return ()

    def _address(self, server: Any, network_name: str) -> str:
        for entry in (server.addresses or {}).get(network_name, []):
            if entry.get("version") == 4:
                return str(entry["addr"])
        raise CloudError(f"server {server.name} has no IPv4 address on {network_name}")

    def _tagged(self, lister: Callable[..., Any], **query: Any) -> list[Any]:
        return list(self._call("list resources", lister, tags=self.tag, **query))

    def _record(self, outcome: Outcome, kind: str, name: str, exists: bool) -> None:
        (outcome.existing if exists else outcome.created).append(f"{kind} {name}")
        self.step(f"{kind} {name}")

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = method(*args, **kwargs)
            return list(result) if isinstance(result, Iterator) else result
        except openstack.exceptions.HttpException as exc:
            raise CloudError(f"cannot {what}: HTTP {exc.status_code}: {_first_line(exc.details or exc)}") from None
        except (keystoneauth1.exceptions.ConnectionError, openstack.exceptions.SDKException) as exc:
            raise CloudError(f"cannot {what}: {type(exc).__name__}: {_first_line(exc)}") from None


def write_inventory(topology: Topology, hosts: list[Host], out: Path, cloud: str) -> None:
    """Write the Ansible inventory of the provisioned hosts in the topology's template format.

    From the template: ``all.vars`` (slices, latency, ...; the underlay CIDR replaced by the topology's) and
    every group; the tier groups get the provisioned hosts (numbered by ``node_id`` where the template numbers
    its hosts), the role groups the first host of their tier.
    """
    template = read_yaml(topology.inventory_template)
    try:
        variables = dict(template["all"]["vars"])
        children = dict(template["all"]["children"])
    except (TypeError, KeyError):
        raise InputError(f"{topology.inventory_template}: not an inventory with all.vars and all.children") from None
    underlay_key = next((key for key in UNDERLAY_KEYS if key in variables), None)
    if underlay_key is None or any(tier not in children for tier in TIERS):
        raise InputError(f"{topology.inventory_template}: the template needs all.vars.{UNDERLAY_KEYS[0]} and the "
                         f"groups {', '.join(TIERS)}")
    variables[underlay_key] = str(topology.underlay.cidr)
    numbered = any(NODE_NUMBER in (entry or {}) for tier in TIERS
                   for entry in ((children[tier] or {}).get("hosts") or {}).values())
    for tier in TIERS:
        group = dict(children[tier] or {})
        group["hosts"] = {host.name: {"ansible_host": host.address}
                          | ({NODE_NUMBER: number} if numbered else {})
                          for number, host in enumerate(hosts, start=1) if host.tier == tier}
        children[tier] = group
    for role, tier in topology.roles.model_dump().items():
        children[role] = {**(children.get(role) or {}),
                          "hosts": {next(host.name for host in hosts if host.tier == tier): None}}
    document = {"all": {"vars": variables, "children": children}}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(INVENTORY_HEADER.format(name=topology.name, cloud=cloud)
                       + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    os.replace(partial, out)


def write_known_hosts(hosts: list[Host], out: Path) -> list[str]:
    """Write the hosts' console-reported SSH host keys as a known_hosts file; returns the hosts without keys."""
    lines = [f"{host.address} {key}\n" for host in hosts for key in host.host_keys]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines), encoding="utf-8")
    return [host.name for host in hosts if not host.host_keys]


def _rule_key(rule: Any) -> tuple[Any, ...]:
    get = rule.get if isinstance(rule, dict) else lambda name: getattr(rule, name)
    return tuple(get(name) for name in ("direction", "ether_type", "protocol", "port_range_min", "port_range_max",
                                        "remote_ip_prefix", "remote_group_id"))


def _describe_rule(rule: dict[str, Any]) -> str:
    source = "the deployment" if rule["remote_group_id"] else rule["remote_ip_prefix"]
    ports = f" {rule['port_range_min']}-{rule['port_range_max']}" if rule["port_range_min"] else ""
    return f"{rule['protocol'] or 'any'}{ports} from {source}"


def _keystoneauth_cause(error: BaseException) -> BaseException:
    """The keystoneauth exception behind an openstacksdk one (or the error itself)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, keystoneauth1.exceptions.ClientException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
