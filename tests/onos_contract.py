"""ONOS 2.7.0's REST models as slicebed's tests hold requests and answers to them (``onos_api.json``).

The JSON file lists, per model, its required members and their JSON types, read from the swagger definitions in
the ONOS source (its ``source`` entry names repository, tag, commit and path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

API: dict[str, Any] = json.loads(Path(__file__).with_name("onos_api.json").read_text())
JSON_TYPES = {"integer": int, "string": str, "boolean": bool, "array": list, "object": dict}


def model_problems(model: str, value: Any, shape: dict[str, Any] | None = None, where: str = "") -> list[str]:
    """What in ``value`` breaks ONOS 2.7.0's REST model ``model``: missing required members and wrong JSON types,
    also in the objects of its array members (``onos_api.json``)."""
    shape = shape or API["models"][model]
    if not isinstance(value, dict):
        return [f"{model}{where}: not an object"]
    problems = [f"{model}{where}: {member} is required" for member in shape["required"] if member not in value]
    for member, kind in shape["types"].items():
        expected = JSON_TYPES.get(kind)
        present = value.get(member)
        if member in value and expected is not None and (not isinstance(present, expected)
                                                          or (expected is int and isinstance(present, bool))):
            problems.append(f"{model}{where}: {member} must be a JSON {kind}, got {present!r}")
    for member, item_shape in shape.get("items", {}).items():
        for index, item in enumerate(value.get(member) or []):
            problems += model_problems(model, item, item_shape, f"{where}.{member}[{index}]")
    return problems
