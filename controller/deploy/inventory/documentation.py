"""Documentation addresses (RFC 5737): the shipped examples use them, and nothing runs against them.

An example inventory or topology that still holds them has not been edited: running it would send SSH
connections (or create cloud networks) for addresses that belong to nobody's lab. Refusing them is one
line that names the file to edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Network, ip_network
from pathlib import Path

from core.errors import InputError

DOCUMENTATION_NETWORKS = (IPv4Network("192.0.2.0/24"), IPv4Network("198.51.100.0/24"), IPv4Network("203.0.113.0/24"))
"""TEST-NET-1, -2 and -3 (RFC 5737, section 3): reserved for documentation, never routed."""


def is_documentation(value: object) -> bool:
    """Whether ``value`` (an address or a network; a host name is not) lies inside a documentation range."""
    try:
        network = ip_network(str(value), strict=False)
    except ValueError:
        return False
    return isinstance(network, IPv4Network) and any(network.subnet_of(doc) for doc in DOCUMENTATION_NETWORKS)


def refuse_documentation_addresses(path: Path, values: Mapping[str, object]) -> None:
    """Raise one InputError line naming ``path`` if any of ``values`` (key -> address) is a documentation one."""
    found = [f"{key} {value}" for key, value in values.items() if is_documentation(value)]
    if found:
        raise InputError(f"{path}: {', '.join(found)}: documentation address{'es' if len(found) > 1 else ''} "
                         f"(RFC 5737) from the example, not your lab's; edit {path} (or a copy) first")
