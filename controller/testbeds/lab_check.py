"""`slicebed testbed check` on a lab: is every UE attached, does the 5G path carry traffic, are the tiers delayed, is
each slice's throughput capped?

- Attached (per slice): the slice's UE sink says its UE's tunnel interface exists (``slicebed_ue_attached``); where
  Open5GS's AMF is scraped, also its count of RAN UEs (``ran_ue``) against the slices' UEs.
- N3 and N6 (per slice): the share of the sink's hellos of the last window that came back from the app server in the
  data network (UE -> gNB -> N3 -> UPF -> N6 -> data network and back; dataplane.subscription), with their round trip.
- Delay (per link of the latency matrix): UDP echo round trips between the two tiers' underlay addresses, over SSH
  (``dataplane/probe.py`` is handed to the node's ``python3 -c``: nothing to install), half the mean against the
  configured one-way delay.
- Throughput cap (per slice with ``bandwidth_mbps``): more users than the cap carries, through the app server's
  control endpoint; the slice's received throughput from Prometheus (the lab backend's own reading) against the cap.

Everything but the delay probes is read from the lab's Prometheus, which scrapes the sinks and app servers.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

from collectors.prometheus import PrometheusReader
from controller.control_endpoint import EndpointError, call_endpoint
from controller.deploy.check import (
    BANDWIDTH_TOLERANCE,
    LISTEN_WAIT_S,
    PROBE_PORT,
    CheckError,
    Measurement,
    delay_measurement,
)
from controller.deploy.inventory.lab import LabInventory, LatencyLink
from controller.testbeds.qos_meter import PrometheusQosMeter
from core.commands import CommandRunner
from core.retry import Attempts

RunnerFactory = Callable[[str], CommandRunner]
"""A node address -> the command runner on that node."""
SERVE_IDLE_S = 3
ECHO_TOLERANCE = 0.2
ECHO_WINDOW_S = 10
SINK_WAIT_S = ECHO_WINDOW_S + 10
OFFERED_OVER_CAP = 2.0
"""The users a cap check starts offer this many times the cap (one more user than that needs, at least)."""


def check_lab(inventory: LabInventory, reader: PrometheusReader, runner_for: RunnerFactory,
              cap_window_s: int = 5, cap_warmup_s: float = 3.0, probes: int = 40) -> list[Measurement]:
    """Every measurement, in the order attach, N3/N6 path, delay, throughput cap."""
    wait_for_sinks(inventory, reader)
    return [*measure_attached(inventory, reader), *measure_path(inventory, reader),
            *measure_tier_delay(inventory, runner_for, probes),
            *measure_caps(inventory, reader, cap_window_s, cap_warmup_s)]


def per_slice(reader: PrometheusReader, query: str) -> dict[str, float]:
    """An instant query's value per ``slice`` label."""
    frame = reader.instant(query)
    if frame.empty or "slice" not in frame:
        return {}
    return dict(zip(frame["slice"], frame["value"], strict=True))


def wait_for_sinks(inventory: LabInventory, reader: PrometheusReader) -> None:
    """Wait (at most ``SINK_WAIT_S``) until every slice's UE sink has sent a full echo window of hellos, as Prometheus
    has scraped them: a check run right after `testbed up` measures the programs' first window, not their start. What
    is still missing then is measured as it is (and fails)."""
    for _ in Attempts(SINK_WAIT_S, 1.0):
        sent = per_slice(reader, "min by (slice) (slicebed_ue_dn_hellos_total)")
        if all(sent.get(name, 0.0) >= ECHO_WINDOW_S for name in inventory.slices):
            return


# ---- attach ----

def measure_attached(inventory: LabInventory, reader: PrometheusReader) -> list[Measurement]:
    attached = per_slice(reader, "max by (slice) (slicebed_ue_attached)")
    found = [Measurement("attach", f"{name}: UE tunnel", "attached", 1, attached.get(name, 0.0), 0,
                         "the slice's UE sink sees its UE's tunnel interface" if name in attached else
                         "no slicebed_ue_attached sample: the slice's UE sink is not scraped (is it running?)")
             for name in inventory.slices]
    ran_ues = reader.instant("sum(ran_ue)")
    if not ran_ues.empty:  # Open5GS's AMF is scraped (pod form)
        found.append(Measurement("attach", "Open5GS AMF: RAN UEs", "UEs", len(inventory.slices),
                                 float(ran_ues["value"].iloc[0]), 0, "one UE per slice (AMF gauge ran_ue)"))
    return found


# ---- N3 and N6 ----

def measure_path(inventory: LabInventory, reader: PrometheusReader) -> list[Measurement]:
    """Per slice: the share of the last window's hellos echoed from the data network, and their round trip."""
    window = f"[{ECHO_WINDOW_S}s]"
    hellos = per_slice(reader, f"sum by (slice) (increase(slicebed_ue_dn_hellos_total{window}))")
    echoes = per_slice(reader, f"sum by (slice) (increase(slicebed_ue_dn_echoes_total{window}))")
    rtts = per_slice(reader, "max by (slice) (slicebed_ue_dn_rtt_seconds)")
    found = []
    for name in inventory.slices:
        sent = hellos.get(name, 0.0)
        ratio = echoes.get(name, 0.0) / sent if sent > 0 else 0.0
        detail = (f"{echoes.get(name, 0.0):.0f} of {sent:.0f} hellos in {ECHO_WINDOW_S} s came back from the app "
                  f"server in the data network" + (f"; round trip {rtts[name] * 1000:.1f} ms" if name in rtts else "")
                  if sent > 0 else "the UE sink sent no hello in the window (not scraped, or not attached)")
        found.append(Measurement("path", f"{name}: UE -> N3 -> N6 -> data network", "echoed", 1.0, ratio,
                                 ECHO_TOLERANCE, detail))
    return found


# ---- delay between tiers ----

def probe_argv(*args: str) -> list[str]:
    """``python3 -c <dataplane/probe.py> ARGS``: the probe's source travels with the command (stdlib only)."""
    spec = find_spec("dataplane.probe")
    assert spec is not None and spec.origin is not None
    return ["python3", "-c", Path(spec.origin).read_text(), *args]


def underlay_address(runner: CommandRunner, network: ipaddress.IPv4Network) -> str:
    """The node's IPv4 address inside the underlay ``network`` (where the netem stages filter)."""
    for line in runner.output(["ip", "-4", "-o", "address", "show"]).splitlines():
        fields = line.split()
        if "inet" in fields:
            address = ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).ip
            if address in network:
                return str(address)
    raise CheckError(f"{runner.node}: no IPv4 address in the underlay {network}")


def measure_tier_delay(inventory: LabInventory, runner_for: RunnerFactory, count: int) -> list[Measurement]:
    network = inventory.variables.underlay_cidr
    if network is None:
        raise CheckError(f"{inventory.path}: all.vars.underlay_cidr is missing; the delay is probed across it")
    return [link_delay(inventory, link, runner_for, network, count) for link in inventory.variables.latency]


def link_delay(inventory: LabInventory, link: LatencyLink, runner_for: RunnerFactory,
               network: ipaddress.IPv4Network, count: int) -> Measurement:
    """Half the mean UDP round trip from tier ``a``'s node to tier ``b``'s underlay address, against the delay."""
    source, target = runner_for(inventory.first_host(link.a)), runner_for(inventory.first_host(link.b))
    address = underlay_address(target, network)
    # the echo server stops by itself SERVE_IDLE_S after the last probe; it runs in a thread (a runner's commands
    # run to their end), and the probes start once it listens
    server = threading.Thread(target=target.run, args=(probe_argv("serve", "--port", str(PROBE_PORT), "--seconds",
                                                                  str(SERVE_IDLE_S)),), kwargs={"timeout_s": 120},
                              daemon=True)
    server.start()
    for _ in Attempts(LISTEN_WAIT_S, 0.1):
        if target.run(["ss", "-Hlun", f"sport = :{PROBE_PORT}"]).stdout.strip():
            break
    else:
        raise CheckError(f"{target.node}: the delay probe's echo server did not listen on UDP {PROBE_PORT} within "
                         f"{LISTEN_WAIT_S:g} s (python3 on the node?)")
    done = source.run(probe_argv("rtt", "--host", address, "--port", str(PROBE_PORT), "--count", str(count)),
                      timeout_s=60)
    server.join(timeout=SERVE_IDLE_S + 30)
    return delay_measurement(f"{link.a} -> {link.b} ({address}, UDP {PROBE_PORT})", f"{link.a}-{link.b} one-way",
                             done, count, link.delay_ms, link.jitter_ms, f"; probed to {address} (underlay)")


# ---- throughput cap ----

def measure_caps(inventory: LabInventory, reader: PrometheusReader, window_s: int,
                 warmup_s: float) -> list[Measurement]:
    return [slice_cap(inventory, reader, name, window_s, warmup_s) for name in inventory.slices
            if inventory.slice_entry(name).bandwidth_mbps is not None]


def slice_cap(inventory: LabInventory, reader: PrometheusReader, name: str, window_s: int,
              warmup_s: float) -> Measurement:
    """Users offering twice the slice's cap, the throughput its UE sink receives against the cap."""
    cap = inventory.slice_entry(name).bandwidth_mbps
    assert cap is not None
    rate = inventory.variables.traffic.user_rate_mbps
    users = math.ceil(OFFERED_OVER_CAP * cap / rate)
    url = f"{inventory.app_server_url(name)}/control"
    before = set_users(url, users)
    try:
        time.sleep(warmup_s)
        measured = PrometheusQosMeter(reader).measure(window_s)
    finally:
        set_users(url, before)
    received = measured.loc[measured["slice"] == name, "total_bandwidth_usage"]
    if received.empty:
        raise CheckError(f"slice {name}: Prometheus at {reader.url} has no throughput of its UE sink")
    return Measurement("bandwidth", f"{name}: throughput cap", "Mbps", cap, float(received.mean()),
                       BANDWIDTH_TOLERANCE * cap,
                       f"{users} users at {rate:g} Mbps offered through {url}; the UE sink's received payload "
                       f"throughput over {window_s} s (Prometheus); the cap is the inventory's bandwidth_mbps, the "
                       "meter the onos role installs (a closed loop since may have changed it)")


def set_users(url: str, users: int) -> int:
    """POST ``users`` to an app server's control endpoint; the users it had before."""
    try:
        before = call_endpoint(url)["users"]
        call_endpoint(url, {"users": users})
    except (EndpointError, KeyError) as exc:
        raise CheckError(f"the app server at {url} does not take users ({exc}); is the traffic deployed "
                         "(site.yml --tags traffic, or the data-network pods)?") from None
    return int(before)
