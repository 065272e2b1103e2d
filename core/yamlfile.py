"""Read YAML files (specs, inventories, topologies) with one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.errors import InputError


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning every failure into an :class:`InputError` naming the file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as UTF-8 text ({type(exc).__name__})") from None
    if not text.strip():
        raise InputError(f"{path}: the file is empty")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}: {where}YAML syntax error: {problem}") from None


def require_mapping(document: Any, source: Path) -> dict[str, Any]:
    """``document`` if it is a mapping of keys; else an :class:`InputError` naming ``source``."""
    if not isinstance(document, dict):
        raise InputError(f"{source}: expected a mapping of keys at the top level, got {type(document).__name__}")
    return document


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """:func:`read_yaml` for files whose top level must be a mapping (specs, topologies)."""
    return require_mapping(read_yaml(path), path)
