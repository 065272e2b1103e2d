"""The one-way delay of every pair of tiers from an inventory's latency matrix (local testbed and lab alike).

The matrix (``all.vars.latency``) lists the links between tiers; they also define a lab's OvS VXLAN chain, so
they must form a tree over the tiers (no loop for the bridges, every tier reached). A pair of tiers without a link
(edge-central in the example) is derived along the path of links between them, the way the transport's own traffic
crosses them: delays add, independent jitters add in quadrature (their standard deviations do), and the loss
probabilities compound. docs/lab-guide.md ("Latency between tiers") says so. The playbooks reach it through the
Ansible filter ``tier_latency`` (playbooks/filter_plugins/tier_latency.py).
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any


class LatencyMatrixError(ValueError):
    """The latency matrix cannot give every pair of tiers a delay (the message says why)."""


def _link_key(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


def _path(links: dict[frozenset[str], dict[str, Any]], start: str, goal: str) -> list[dict[str, Any]]:
    """The links along the one path from ``start`` to ``goal`` in the tree (depth-first)."""
    stack: list[tuple[str, list[dict[str, Any]]]] = [(start, [])]
    seen = {start}
    while stack:
        tier, taken = stack.pop()
        if tier == goal:
            return taken
        for key, link in links.items():
            if tier in key:
                (other,) = key - {tier}
                if other not in seen:
                    seen.add(other)
                    stack.append((other, [*taken, link]))
    raise LatencyMatrixError(f"latency: no links join {start} and {goal}")


def tier_latency(latency: list[dict[str, Any]], tier_hosts: dict[str, str]) -> list[dict[str, Any]]:
    """Every pair of tiers in ``tier_hosts`` (tier -> its host) with ``a``/``b`` as host names, its
    ``delay_ms``, ``jitter_ms``, ``loss_pct`` and ``derived`` (False: a link of the matrix; True: the path sum)."""
    tiers = list(tier_hosts)
    links: dict[frozenset[str], dict[str, Any]] = {}
    for entry in latency:
        a, b = entry.get("a"), entry.get("b")
        if a not in tier_hosts or b not in tier_hosts or a == b:
            raise LatencyMatrixError(f"latency entry {entry}: a and b must be two different tiers of {tiers}")
        if _link_key(a, b) in links:
            raise LatencyMatrixError(f"latency: the pair {a}-{b} is listed twice; give each link once (symmetric)")
        links[_link_key(a, b)] = entry
    if len(links) != len(tiers) - 1:
        raise LatencyMatrixError(
            f"latency: give {len(tiers) - 1} links that join the tiers {tiers} in a chain or tree (they are also the "
            f"VXLAN transport's links, which must not loop); got {len(links)}: "
            f"{sorted('-'.join(sorted(key)) for key in links)}; the other pairs are derived as path sums")
    pairs = []
    for a, b in combinations(tiers, 2):
        path = _path(links, a, b)
        pairs.append({
            "a": tier_hosts[a], "b": tier_hosts[b], "tiers": [a, b], "derived": len(path) > 1,
            "delay_ms": round(sum(float(link["delay_ms"]) for link in path), 3),
            "jitter_ms": round(math.sqrt(sum(float(link.get("jitter_ms", 0)) ** 2 for link in path)), 3),
            "loss_pct": round(100 * (1 - math.prod(1 - float(link.get("loss_pct", 0)) / 100 for link in path)), 4),
        })
    return pairs
