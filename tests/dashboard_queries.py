"""The PromQL in slicebed's Grafana dashboards (playbooks/roles/monitoring/files/dashboards/): every expression with
its template variables replaced by their defaults, and the metric names an expression reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from helpers import REPO

MONITORING = REPO / "playbooks" / "roles" / "monitoring"
DASHBOARDS = sorted((MONITORING / "files" / "dashboards").glob("*.json"))
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                "group_right", "inf", "nan"}


def load(path: Path) -> dict[str, Any]:
    """One dashboard's JSON."""
    return json.loads(path.read_text(encoding="utf-8"))


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """A value for each template variable: a textbox's default, a query variable's "All" regex."""
    return {variable["name"]: variable["query"] if variable["type"] == "textbox" else variable["allValue"]
            for variable in dashboard["templating"]["list"]}


def substituted(expression: str, values: dict[str, str]) -> str:
    """``expression`` with every ``$name`` / ``${name}`` replaced by its variable's value."""
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expression = expression.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return expression


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable's selector, variables substituted."""
    values = variable_values(dashboard)
    found = [(f"{dashboard['uid']} panel {panel['id']} {target['refId']}", substituted(target["expr"], values))
             for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+), *\w+\)", variable["query"]["query"]).group(1)
            found.append((f"{dashboard['uid']} variable {variable['name']}", selector))
    return found


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords, label names in
    matchers or grouping clauses, strings, numbers or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", " ", text)
    return {name for name, call in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)", text)
            if not call and name.lower() not in PROMQL_WORDS}
