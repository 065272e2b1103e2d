"""Ansible filter ``traffic_programs``: the slicebed traffic programs of a lab in host form, one list for every play.

Per slice (index ``i`` in ``all.vars.slices``): the app server on the app host (the data network side; the lab
backend's ``lab_backend.app_server_tier``), control and metrics on ``control_port + i``, the stream on
``stream_port + i``; the UE sink on the UE host (edge), bound to the UE's tunnel interface, receiving on
``sink_port + i`` and publishing on ``sink_metrics_port + i``. The lab_traffic role starts them, the monitoring
role scrapes their ``target`` (address:port), and the lab backend posts to the app servers' control ports: all three
read this list or the same inventory keys (docs/lab-guide.md, "Traffic and QoS on a lab").
"""

from __future__ import annotations

from typing import Any

TUNNEL_DEVICES = {"srsran": "tun_srsue", "oai": "oaitun_ue1"}
"""The UE's tunnel interface by RAN: srsUE's default ``gw.tun_dev_name``, OAI nrUE's ``oaitun_ue<instance+1>``."""
PORT_KEYS = ("control", "stream", "sink", "sink_metrics")


class TrafficPlanError(ValueError):
    """The inputs cannot give every slice its programs (the message says why)."""


def traffic_programs(slices: list[dict[str, Any]], app_host: str, ue_host: str, addresses: dict[str, str],
                     ports: dict[str, int], packet_bytes: int, rate_mbps: float,
                     device: str | None = None) -> list[dict[str, Any]]:
    """Every slice's app server and UE sink: ``name`` (program-slice), ``program``, ``slice``, ``host`` (the
    inventory host that runs it), ``target`` (its management address:port) and ``args`` (after ``python -m
    dataplane.<program>``). ``addresses`` maps hosts to their underlay address; ``device`` overrides every slice's
    tunnel interface (a slice's own ``ue_device`` wins over both)."""
    missing = [key for key in PORT_KEYS if key not in ports]
    if missing:
        raise TrafficPlanError(f"traffic ports: {', '.join(missing)} missing (give {', '.join(PORT_KEYS)})")
    for host in (app_host, ue_host):
        if not addresses.get(host):
            raise TrafficPlanError(f"traffic: host {host} has no underlay address")
    app_address, ue_address = addresses[app_host], addresses[ue_host]
    programs = []
    for index, entry in enumerate(slices):
        name = entry["name"]
        tunnel = entry.get("ue_device") or device or TUNNEL_DEVICES.get(entry.get("ran", "srsran"))
        if not tunnel:
            raise TrafficPlanError(f"slice {name}: ran {entry.get('ran')!r} has no known tunnel interface; give "
                                   f"the slice a ue_device")
        control, stream = int(ports["control"]) + index, f"{app_address}:{int(ports['stream']) + index}"
        sink_metrics = int(ports["sink_metrics"]) + index
        programs.append({
            "name": f"app_server-{name}", "program": "app_server", "slice": name, "host": app_host,
            "target": f"{app_address}:{control}",
            "args": ["--slice", name, "--type", entry.get("type", "embb"), "--mgmt", f"{app_address}:{control}",
                     "--listen", stream, "--packet-bytes", str(packet_bytes), "--rate-mbps", f"{rate_mbps:g}"]})
        programs.append({
            "name": f"ue_sink-{name}", "program": "ue_sink", "slice": name, "host": ue_host,
            "target": f"{ue_address}:{sink_metrics}",
            "args": ["--slice", name, "--mgmt", f"{ue_address}:{sink_metrics}",
                     "--listen", f"0.0.0.0:{int(ports['sink']) + index}", "--device", tunnel, "--subscribe", stream]})
    return programs


def traffic_programs_filter(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`traffic_programs` for Ansible: bad inputs fail the task with the message (ansible is imported here,
    not at the top, so that tests can call :func:`traffic_programs` without it)."""
    from ansible.errors import AnsibleFilterError

    try:
        return traffic_programs(*args, **kwargs)
    except TrafficPlanError as error:
        raise AnsibleFilterError(str(error)) from None


class FilterModule:
    """slicebed's traffic filter for the lab playbooks."""

    def filters(self) -> dict[str, Any]:
        return {"traffic_programs": traffic_programs_filter}
