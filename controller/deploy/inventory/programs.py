"""Where each slice's data-plane programs run on the local testbed, and on which port they serve.

Every program serves ``GET /metrics`` and its control endpoints on its node's management address. Each kind of
program has its own block of ``MAX_SLICES`` ports from the inventory's ``exporter_port`` (slice index within the
block), so two programs on one node never share a port, wherever the slices' UPFs are placed. The UE sinks and
the RAN emulators stay on ``ue`` and ``edge``; a slice's UPF and its app server (the data network, MEC-style: N6
local) run on the tier its placement names. The dataplane and monitoring roles read this list (``testbed_programs``,
passed by the controller), so the programs started and the targets Prometheus scrapes are the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from controller.deploy.inventory.local import MAX_SLICES, RAN_HOST, LocalInventory
from controller.deploy.inventory.tiers import Tier
from controller.deploy.state import current_placement

PROGRAMS = ("ue_sink", "ran_emulator", "upf", "app_server")
"""The programs of a slice, from the UE up; also the order of their port blocks."""
FIXED_HOSTS = {"ue_sink": "ue", "ran_emulator": RAN_HOST}
"""The programs that do not move; the UPF and the app server run on the slice's UPF tier."""


@dataclass(frozen=True)
class Program:
    """One data-plane program of one slice: the inventory host (namespace) it runs on and its management port."""

    slice: str
    slice_index: int
    name: str
    host: str
    port: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def program_port(inventory: LocalInventory, program: str, index: int) -> int:
    """The management port of slice ``index``'s ``program`` (its block, then the slice index)."""
    return inventory.settings.exporter_port + PROGRAMS.index(program) * MAX_SLICES + index


def slice_programs(inventory: LocalInventory, placement: dict[str, Tier]) -> list[Program]:
    """Every program of every slice, its host following ``placement`` (slice -> UPF tier)."""
    return [Program(slice_vars.name, index, name, FIXED_HOSTS.get(name) or placement[slice_vars.name],
                    program_port(inventory, name, index))
            for index, slice_vars in enumerate(inventory.settings.slices) for name in PROGRAMS]


def programs_variable(inventory: LocalInventory, placement: dict[str, Tier]) -> list[dict[str, Any]]:
    """``testbed_programs``, the playbooks' list of every program under ``placement``."""
    return [program.as_dict() for program in slice_programs(inventory, placement)]


def program_url(inventory: LocalInventory, program: str, slice_name: str,
                placement: dict[str, Tier] | None = None) -> str:
    """Base URL of slice ``slice_name``'s ``program`` (its node's management address and its port) under
    ``placement`` (by default the testbed's current one)."""
    found = next(p for p in slice_programs(inventory, placement or current_placement(inventory))
                 if p.name == program and p.slice == slice_name)
    return f"http://{inventory.hosts[found.host].mgmt_address}:{found.port}"
