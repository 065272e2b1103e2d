#!/usr/bin/python
"""Ansible module netns_topology: converge (or remove) the local testbed's namespaces, veths, bridge and cgroups."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

# The local testbed runs this module with the controller's Python (ansible_playbook_python), which has slicebed:
# cgroups follow the project's one rule for which hierarchy to use.
from core.cgroups import CpuCgroup, cpu_hierarchy
from core.commands import CommandError, LocalRunner

DOCUMENTATION = r"""
module: netns_topology
short_description: Network namespaces joined by veths, a management bridge and per-node CPU cgroups
description:
  - Idempotent; reports each change it made (or would make in check mode) in I(changes).
  - C(state=absent) deletes exactly the root-side objects this module names (veths, the management bridge, the
    cgroups); what is already gone is skipped. The namespaces themselves are deleted by the role's uninstall tasks.
options:
  prefix: {description: Name prefix of every object, type: str, required: true}
  nodes: {description: "Nodes: name, netns, node_id, mgmt_address, transport_address, transport_mac, routes,
          forwarding, cpu_millicores", type: list, elements: dict, required: true}
  links: {description: "veth pairs between nodes: name, a, a_address, b, b_address, prefixlen", type: list,
          elements: dict, default: []}
  mgmt_gateway: {description: Root-namespace address on the management bridge, type: str, required: true}
  switch_netns: {description: Namespace of the transport switch (holds the switch ends of the tr0 veths),
                 type: str, required: true}
  mgmt_prefixlen: {description: Prefix length of the management subnet, type: int, default: 24}
  transport_prefixlen: {description: Prefix length of the transport subnet, type: int, default: 24}
  cpu_period_us: {description: CFS period of the node cgroups, type: int, default: 100000}
  cpu_scale: {description: host cores per nominal core (a node's cpu_millicores are nominal), type: float, default: 1.0}
  state: {description: present or absent, type: str, choices: [present, absent], default: present}
"""

RETURN = r"""
changes: {description: One line per change, type: list, elements: str, returned: always}
"""

class Topology:
    """Reads and changes the kernel's network objects, recording every change (or only recording in check mode)."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.changes: list[str] = []

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            self.module.fail_json(msg=f"`{' '.join(argv)}` failed: {done.stderr.strip()}", changes=self.changes)
        return done

    def change(self, description: str, *commands: list[str]) -> None:
        self.changes.append(description)
        if not self.module.check_mode:
            for argv in commands:
                self.run(argv)

    def links(self, netns: str | None) -> dict[str, dict]:
        argv = ["ip", "-j", "-d", "link", "show"] if netns is None else ["ip", "-n", netns, "-j", "-d", "link", "show"]
        done = self.run(argv, check=False)
        return {link["ifname"]: link for link in json.loads(done.stdout or "[]")} if done.returncode == 0 else {}

    def addresses(self, netns: str | None, device: str) -> set[str]:
        base = ["ip", "-j", "addr", "show", "dev", device]
        done = self.run(base if netns is None else ["ip", "-n", netns, *base[1:]], check=False)
        if done.returncode != 0:
            return set()
        return {f"{a['local']}/{a['prefixlen']}" for link in json.loads(done.stdout or "[]")
                for a in link.get("addr_info", []) if a.get("family") == "inet"}

    @staticmethod
    def namespaces() -> set[str]:
        return {entry.name for entry in Path("/run/netns").iterdir()} if Path("/run/netns").is_dir() else set()


def ensure_up(topology: Topology, netns: str | None, device: str, links: dict[str, dict]) -> None:
    link = links.get(device)
    if link is None or "UP" not in link.get("flags", []):
        ns = [] if netns is None else ["-n", netns]
        topology.change(f"{netns or 'root'}: set {device} up", ["ip", *ns, "link", "set", device, "up"])


def ensure_address(topology: Topology, netns: str | None, device: str, cidr: str) -> None:
    if cidr not in topology.addresses(netns, device):
        ns = [] if netns is None else ["-n", netns]
        topology.change(f"{netns or 'root'}: address {cidr} on {device}",
                        ["ip", *ns, "addr", "replace", cidr, "dev", device])


def offload_off(topology: Topology, netns: str | None, device: str) -> None:
    wrap = [] if netns is None else ["ip", "netns", "exec", netns]
    done = topology.run([*wrap, "ethtool", "-k", device], check=False)
    if done.returncode != 0 or "tx-checksumming: off" not in done.stdout:
        topology.change(f"{netns or 'root'}: tx checksum offload off on {device}",
                        [*wrap, "ethtool", "-K", device, "tx", "off"])


def node_cgroup(topology: Topology, name: str) -> CpuCgroup:
    """Cgroup ``name`` in the hierarchy whose cpu controller is enabled (the rule of core.cgroups)."""
    try:
        return cpu_hierarchy(LocalRunner()).group(name)
    except CommandError as exc:
        topology.module.fail_json(msg=str(exc), changes=topology.changes)
        raise  # fail_json exits; this keeps type checkers informed


def ensure_cgroup(topology: Topology, name: str, millicores: int, period_us: int) -> None:
    """The node's cgroup exists and has a CPU limit with period ``period_us`` (a limit the CPU actuator set
    since is kept: a second `up` changes nothing)."""
    runner, group = LocalRunner(), node_cgroup(topology, name)
    missing = [directory for directory in group.directories if not Path(directory).is_dir()]
    if missing:
        topology.change(f"cgroup {', '.join(missing)}")
        if not topology.module.check_mode:
            group.create(runner)
    quota, period = group.read_limit(runner) if Path(group.path).is_dir() else (None, 0)
    if quota is None or period != period_us:
        quota = millicores * period_us // 1000
        topology.change(f"cgroup {group.path}: {quota} us of CPU per {period_us} us")
        if not topology.module.check_mode:
            group.write_limit(runner, quota, period_us)


def remove_cgroup(topology: Topology, name: str) -> None:
    """Remove the node's cgroup; processes left in it go back to the parent group first."""
    group = node_cgroup(topology, name)
    present = [directory for directory in group.directories if Path(directory).is_dir()]
    if present:
        topology.change(f"remove cgroup {', '.join(present)}")
        if not topology.module.check_mode:
            group.remove(LocalRunner())


def ensure_transport_port(topology: Topology, params: dict, node: dict, switch_links: dict[str, dict]) -> None:
    """The veth from the switch namespace (port ``<prefix>t<id>``) to the node's ``tr0``, up, offload off."""
    switch, port = params["switch_netns"], f"{params['prefix']}t{node['node_id']}"
    if port not in switch_links:
        topology.change(f"veth {switch}:{port} - {node['netns']}:tr0",
                        ["ip", "-n", switch, "link", "add", port, "type", "veth", "peer", "name", "tr0",
                         "address", node["transport_mac"], "netns", node["netns"]])
    ensure_up(topology, switch, port, switch_links)
    offload_off(topology, switch, port)


def ensure_route(topology: Topology, netns: str, route: dict, existing: list[dict]) -> None:
    destination, via = str(route["to"]), str(route["via"])
    if any(r.get("dst") == destination and r.get("gateway") == via for r in existing):
        return
    topology.change(f"{netns}: route {destination} via {via}",
                    ["ip", "-n", netns, "route", "replace", destination, "via", via])


def present(topology: Topology, params: dict) -> None:
    prefix = params["prefix"]
    bridge = f"{prefix}mgmt"
    nodes = {node["name"]: node for node in params["nodes"]}
    unknown = {link[side] for link in params["links"] for side in ("a", "b")} - set(nodes)
    if unknown:
        topology.module.fail_json(msg=f"links name hosts that are not nodes: {', '.join(sorted(unknown))}")
    # Created here, not with community.general.ip_netns: its existence check (collection 11.4) is a substring match
    # on `ip netns list`, so it would skip creating sb-ue while sb-ue2 or xsb-ue exists. Deleting is exact (the
    # uninstall tasks test /run/netns/NAME first), so the role deletes namespaces with it.
    existing = topology.namespaces()
    for node in nodes.values():
        if node["netns"] not in existing:
            topology.change(f"namespace {node['netns']}", ["ip", "netns", "add", node["netns"]])
    switch = params["switch_netns"]
    if switch not in existing:
        topology.change(f"namespace {switch} (the transport switch)", ["ip", "netns", "add", switch])
    switch_links = topology.links(switch)
    ensure_up(topology, switch, "lo", switch_links)
    root_links = topology.links(None)
    if bridge not in root_links:
        topology.change(f"bridge {bridge}", ["ip", "link", "add", bridge, "type", "bridge"])
    ensure_address(topology, None, bridge, f"{params['mgmt_gateway']}/{params['mgmt_prefixlen']}")
    ensure_up(topology, None, bridge, root_links)
    for node in nodes.values():
        netns, node_id = node["netns"], node["node_id"]
        mgmt_root = f"{prefix}m{node_id}"
        if mgmt_root not in root_links:
            topology.change(f"veth {mgmt_root} - {netns}:mgmt0",
                            ["ip", "link", "add", mgmt_root, "type", "veth", "peer", "name", "mgmt0", "netns", netns])
        if root_links.get(mgmt_root, {}).get("master") != bridge:
            topology.change(f"{mgmt_root} on {bridge}", ["ip", "link", "set", mgmt_root, "master", bridge])
        ensure_up(topology, None, mgmt_root, root_links)
        if node.get("transport_address"):
            ensure_transport_port(topology, params, node, switch_links)
    for link in params["links"]:
        a, b = nodes[link["a"]]["netns"], nodes[link["b"]]["netns"]
        if link["name"] not in topology.links(a):
            topology.change(f"veth {a}:{link['name']} - {b}:{link['name']}",
                            ["ip", "-n", a, "link", "add", link["name"], "type", "veth", "peer", "name", link["name"],
                             "netns", b])
    for node in nodes.values():
        configure_node(topology, params, node)
    for node in nodes.values():
        if node.get("cpu_millicores"):
            host_millicores = round(float(node["cpu_millicores"]) * params["cpu_scale"])
            ensure_cgroup(topology, f"{prefix}{node['name']}", host_millicores, params["cpu_period_us"])


def configure_node(topology: Topology, params: dict, node: dict) -> None:
    """Addresses, links up, offload, forwarding and routes inside one node's namespace."""
    netns = node["netns"]
    links = topology.links(netns)
    ensure_up(topology, netns, "lo", links)
    ensure_address(topology, netns, "mgmt0", f"{node['mgmt_address']}/{params['mgmt_prefixlen']}")
    ensure_up(topology, netns, "mgmt0", links)
    if node.get("transport_address"):
        ensure_address(topology, netns, "tr0", f"{node['transport_address']}/{params['transport_prefixlen']}")
        ensure_up(topology, netns, "tr0", links)
        offload_off(topology, netns, "tr0")
    for link in params["links"]:
        for side in ("a", "b"):
            if link[side] == node["name"]:
                ensure_address(topology, netns, link["name"], f"{link[side + '_address']}/{link['prefixlen']}")
                ensure_up(topology, netns, link["name"], links)
                offload_off(topology, netns, link["name"])
    if node.get("forwarding"):
        value = topology.run(["ip", "netns", "exec", netns, "sysctl", "-n", "net.ipv4.ip_forward"], check=False)
        if value.stdout.strip() != "1":
            topology.change(f"{netns}: IPv4 forwarding",
                            ["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    if node.get("routes") and topology.module.check_mode and netns not in topology.namespaces():
        topology.changes.extend(f"{netns}: route {r['to']} via {r['via']}" for r in node["routes"])
        return
    routes = json.loads(topology.run(["ip", "-n", netns, "-j", "route", "show"], check=False).stdout or "[]")
    for route in node.get("routes") or []:
        ensure_route(topology, netns, route, routes)


def absent(topology: Topology, params: dict) -> None:
    """Root-side links and cgroups (the role's uninstall tasks delete the namespaces first, with ip_netns)."""
    prefix = params["prefix"]
    root_links = topology.links(None)
    names = [f"{prefix}mgmt", *(f"{prefix}m{node['node_id']}" for node in params["nodes"])]
    for name in names:
        if name in root_links:  # a veth may vanish with its peer's namespace meanwhile: not an error
            topology.changes.append(f"remove link {name}")
            if not topology.module.check_mode:
                topology.run(["ip", "link", "delete", name], check=False)
    for node in params["nodes"]:
        remove_cgroup(topology, f"{prefix}{node['name']}")


def normalized_node(node: dict) -> dict:
    """A node given directly (name, netns, ...) or as its hostvars (inventory_hostname, netns_name, ...)."""
    name = node.get("name") or node.get("inventory_hostname")
    return {
        "name": name, "netns": node.get("netns") or node.get("netns_name") or name, "node_id": int(node["node_id"]),
        "mgmt_address": node["mgmt_address"], "transport_address": node.get("transport_address"),
        "transport_mac": node.get("transport_mac"), "routes": node.get("routes") or [],
        "forwarding": node.get("forwarding", bool(node.get("transport_address"))),
        "cpu_millicores": node.get("cpu_millicores"),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "prefix": {"type": "str", "required": True},
            "nodes": {"type": "list", "elements": "dict", "required": True},
            "links": {"type": "list", "elements": "dict", "default": []},
            "mgmt_gateway": {"type": "str", "required": True},
            "switch_netns": {"type": "str", "required": True},
            "mgmt_prefixlen": {"type": "int", "default": 24},
            "transport_prefixlen": {"type": "int", "default": 24},
            "cpu_period_us": {"type": "int", "default": 100000},
            "cpu_scale": {"type": "float", "default": 1.0},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        supports_check_mode=True,
    )
    if shutil.which("ip") is None or not os.path.isdir("/proc/self/ns"):
        module.fail_json(msg="netns_topology needs iproute2 (`ip`) and network namespaces")
    topology = Topology(module)
    module.params["nodes"] = [normalized_node(node) for node in module.params["nodes"]]
    (present if module.params["state"] == "present" else absent)(topology, module.params)
    module.exit_json(changed=bool(topology.changes), changes=topology.changes)


if __name__ == "__main__":
    main()
