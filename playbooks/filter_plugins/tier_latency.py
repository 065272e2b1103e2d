"""Ansible filter ``tier_latency``: the one-way delay of every pair of tier hosts from the inventory's latency matrix
(:mod:`controller.deploy.inventory.latency`; the Python that runs Ansible is slicebed's own)."""

from __future__ import annotations

from typing import Any

from controller.deploy.inventory.latency import LatencyMatrixError, tier_latency


def tier_latency_filter(latency: list[dict[str, Any]], tier_hosts: dict[str, str]) -> list[dict[str, Any]]:
    """:func:`tier_latency` for Ansible: a bad matrix fails the task with the message (ansible is imported here,
    not at the top, so that tests can call :func:`tier_latency` without it)."""
    from ansible.errors import AnsibleFilterError

    try:
        return tier_latency(latency, tier_hosts)
    except LatencyMatrixError as error:
        raise AnsibleFilterError(str(error)) from None


class FilterModule:
    """slicebed's filters for the playbooks."""

    def filters(self) -> dict[str, Any]:
        return {"tier_latency": tier_latency_filter}
