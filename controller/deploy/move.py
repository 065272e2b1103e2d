"""`slicebed testbed place SLICE upf TIER`: move a slice's UPF (and its app server, the slice's data network) to
another tier of the running local testbed while its users keep streaming.

The old programs' PID files are moved aside, ``testbed-place.yml`` starts the UPF and the app server on the new tier
(no users yet) and points Prometheus at where every program runs now; then the users switch over in two control
calls (old app server to 0 users, the new one to the old one's users and rate profile), the packets still in flight
through the old UPF drain, and the old programs are stopped by PID. The new placement is recorded in the testbed's
state directory, which `down`, `check`, `top`, the loop and the next `up` read. If the new programs do not start,
they are stopped and the old ones keep running, unchanged.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.control_endpoint import EndpointError, call_endpoint
from controller.deploy.ansible_driver import DeployError, run_playbook
from controller.deploy.inventory.local import PLACEABLE_VNFS, RAN_HOST, tier
from controller.deploy.inventory.programs import program_url
from controller.deploy.inventory.tiers import Tier
from controller.deploy.local_deployment import LocalDeployment
from controller.deploy.state import stop_pid
from core.errors import InputError, SlicebedError

PLACE_PLAYBOOK = "testbed-place.yml"
MOVED = ("upf", "app_server")
"""The programs that move with the UPF: the app server is the slice's data network (MEC-style, N6 local)."""
LEAVING = "-leaving"
"""Suffix of the PID files of the programs being replaced (``down`` stops them too: it stops every PID file)."""
DRAIN_S = 0.5
"""How long the old UPF keeps forwarding after its app server stopped sending (the longest tier delay is ms)."""
CONTROL_TIMEOUT_S = 5.0


class PlaceError(SlicebedError):
    """The testbed cannot take the move (not up, a program does not answer); nothing was changed."""


@dataclass(frozen=True)
class Move:
    """What ``testbed place`` did: the slice's UPF went from ``source`` to ``target`` with ``users`` streaming;
    ``switch_s`` passed between the old app server's last send and the new one's first."""

    slice: str
    vnf: str
    source: Tier
    target: Tier
    users: int
    switch_s: float
    seconds: float

    @property
    def moved(self) -> bool:
        return self.source != self.target

    @property
    def unmetered(self) -> bool:
        """The UPF is on the RAN's node: the slice's traffic no longer crosses the transport (nor its meter)."""
        return self.target == RAN_HOST

    def as_dict(self) -> dict[str, Any]:
        return {"slice": self.slice, "vnf": self.vnf, "from": self.source, "to": self.target, "moved": self.moved,
                "users": self.users, "switch_s": round(self.switch_s, 4), "seconds": round(self.seconds, 1),
                "transport_metered": not self.unmetered}


def check_move(testbed: LocalDeployment, slice_name: str, vnf: str, target: str) -> Tier:
    """The target tier, after checking the slice, the VNF and the tier against the inventory and that the slice's
    programs run (one line each; nothing is changed)."""
    inventory = testbed.inventory
    names = [s.name for s in inventory.settings.slices]
    if slice_name not in names:
        raise InputError(f"{inventory.path}: unknown slice {slice_name!r}; the testbed's slices are {', '.join(names)}")
    if vnf not in PLACEABLE_VNFS:
        raise InputError(f"unknown VNF {vnf!r}; a slice places its {', '.join(PLACEABLE_VNFS)} (the RAN emulator "
                         f"stays on {RAN_HOST})")
    try:
        placed = tier(target)
    except ValueError as error:
        raise InputError(f"{inventory.path}: slice {slice_name}: {error}") from None
    running = all(testbed.state.alive(f"dataplane-{slice_name}-{name}") for name in MOVED)
    if not running or not testbed.status()["up"]:
        raise PlaceError(f"the local testbed {inventory.prefix} is not (fully) up; run `slicebed testbed up "
                         f"--inventory {inventory.path}` first")
    return placed


def place_vnf(testbed: LocalDeployment, slice_name: str, vnf: str, target_name: str, artifacts_dir: Path,
              on_task: Callable[[str], None] | None = None) -> Move:
    """Move slice ``slice_name``'s ``vnf`` to tier ``target_name`` on the running testbed (module docstring)."""
    target = check_move(testbed, slice_name, vnf, target_name)
    started = time.monotonic()
    placement = testbed.placement()
    source = placement[slice_name]
    state = testbed.state
    old_app = program_url(testbed.inventory, "app_server", slice_name, placement)
    control = _control(old_app)
    users = int(control["users"])
    if source == target:
        return Move(slice_name, vnf, source, target, users, 0.0, time.monotonic() - started)
    pidfiles = {name: state.pid_dir / f"dataplane-{slice_name}-{name}.pid" for name in MOVED}
    moved = {**placement, slice_name: target}
    leaving = {name: path.with_name(f"{path.stem}{LEAVING}.pid") for name, path in pidfiles.items()}
    for name, path in pidfiles.items():
        path.replace(leaving[name])
    try:
        _run_place(testbed, slice_name, moved, artifacts_dir, on_task)
    except SlicebedError:
        _stop(pidfiles.values())
        for name, path in leaving.items():
            path.replace(pidfiles[name])
        with contextlib.suppress(SlicebedError):  # the first failure is the one to report
            _run_place(testbed, slice_name, placement, artifacts_dir / "restore", on_task)  # Prometheus as before
        raise
    switch_s = _switch_users(old_app, program_url(testbed.inventory, "app_server", slice_name, moved), control)
    time.sleep(DRAIN_S)
    _stop(leaving.values())
    state.record_placement(moved)
    return Move(slice_name, vnf, source, target, users, switch_s, time.monotonic() - started)


def _control(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET (or POST ``body`` to) an app server's control endpoint."""
    try:
        return call_endpoint(f"{url}/control", body, timeout_s=CONTROL_TIMEOUT_S)
    except EndpointError as exc:
        raise PlaceError(f"the app server: {exc}; is the testbed up?") from None


def _switch_users(old: str, new: str, control: dict[str, Any]) -> float:
    """Stop the old app server's users and start them, with its rate profile (eMBB), on the new one; the seconds
    between the two calls' answers (the switch-over)."""
    profile = {key: control[key] for key in ("rate_mbps", "rate_trace") if control.get("type") == "embb"}
    _control(old, {"users": 0})
    stopped = time.monotonic()
    _control(new, {"users": int(control["users"]), **profile})
    return time.monotonic() - stopped


def _run_place(testbed: LocalDeployment, slice_name: str, placement: dict[str, Tier], artifacts_dir: Path,
               on_task: Callable[[str], None] | None) -> None:
    extravars = {**testbed.extravars(placement), "testbed_place_slice": slice_name}
    result = run_playbook(PLACE_PLAYBOOK, testbed.inventory.path, extravars, artifacts_dir, on_task=on_task)
    try:
        result.require_success("place")
    except DeployError as error:
        raise PlaceError(str(error)) from None


def _stop(pidfiles: Iterable[Path]) -> None:
    """Stop the processes of ``pidfiles`` by PID and remove the files (those that exist)."""
    for path in pidfiles:
        try:
            pid = int(path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            continue
        stop_pid(pid)
        path.unlink(missing_ok=True)
