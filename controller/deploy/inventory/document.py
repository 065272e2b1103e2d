"""The Ansible YAML inventory file both testbeds share: its ``all`` group, its hosts and its mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.yamlfile import read_yaml

MODES = ("local", "lab")


@dataclass(frozen=True)
class HostEntry:
    """One host as a group lists it."""

    name: str
    group: str  # the group that lists it (``all`` at the top)
    where: str  # its key path in the file, e.g. ``all.children.tiers.hosts.edge``
    variables: dict[str, Any]


def read_inventory(path: Path) -> dict[str, Any]:
    """The ``all`` group of the inventory at ``path``; an :class:`InputError` line if it has none."""
    if not path.exists():
        raise InputError(f"{path}: no such inventory file; pass --inventory inventory/local.yml or a copy")
    document = read_yaml(path)
    if not isinstance(document, dict) or not isinstance(document.get("all"), dict):
        raise InputError(f"{path}: an Ansible YAML inventory starts with `all:` (with vars and children)")
    return document["all"]


def inventory_mode(path: Path) -> str:
    """``all.vars.testbed_mode``: ``local`` (the default) or ``lab``."""
    variables = read_inventory(path).get("vars") or {}
    mode = variables.get("testbed_mode", "local") if isinstance(variables, dict) else "local"
    if mode not in MODES:
        raise InputError(f"{path}: all.vars.testbed_mode: {mode!r} is not a testbed mode; use local or lab")
    return str(mode)


def host_entries(group: dict[str, Any], source: Path, group_name: str = "all", where: str = "all") -> list[HostEntry]:
    """Every host ``group`` and its children (recursively) list, in file order."""
    if not isinstance(group, dict):
        raise InputError(f"{source}: {where}: expected a mapping with hosts/children/vars")
    hosts, children = group.get("hosts") or {}, group.get("children") or {}
    if not isinstance(hosts, dict) or not isinstance(children, dict):
        raise InputError(f"{source}: {where}: hosts and children must be mappings (name: settings), not lists")
    entries = [HostEntry(str(name), group_name, f"{where}.hosts.{name}", variables or {})
               for name, variables in hosts.items()]
    for child_name, child in children.items():
        entries += host_entries(child or {}, source, str(child_name), f"{where}.children.{child_name}")
    return entries
