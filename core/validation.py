"""One strict pydantic base for configuration models and one ``ValidationError`` -> one-line message.

Every document slicebed validates (experiment and campaign specs, inventories, topologies, the lab
backend settings, inline traffic profiles) uses models derived from :class:`StrictModel`, and reports
its first problem with :func:`describe_validation_error` as ``SOURCE: key.path: problem``: an unknown
key lists the allowed keys, a missing key says so, any other problem names the value it got.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from core.errors import InputError

BRANCH_MISMATCHES = frozenset({"list_type", "model_type", "model_attributes_type"})
"""Error types pydantic reports for the branches of a union that the input was not meant for."""
NO_INPUT_ECHO = frozenset({"value_error", "assertion_error", "union_tag_invalid", "union_tag_not_found"})
"""Error types whose message already says what is wrong with the value (no ``, got ...``)."""


class StrictModel(BaseModel):
    """Base of every configuration section: unknown keys are errors, NaN and infinity are refused,
    instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


ModelT = TypeVar("ModelT", bound=BaseModel)


def resolve_paths(model: ModelT, base: Path) -> ModelT:
    """A copy of ``model`` whose relative paths (``~`` expanded first) are made relative to ``base``, the
    directory of the file the model was read from."""

    def fix(value: Any) -> Any:
        if isinstance(value, Path):
            value = value.expanduser()
            return value if value.is_absolute() else (base / value).resolve()
        if isinstance(value, BaseModel):
            return value.model_copy(update={name: fix(getattr(value, name)) for name in type(value).model_fields})
        if isinstance(value, list):
            return [fix(item) for item in value]
        return value

    return fix(model)


@dataclass(frozen=True)
class _Location:
    """Where an error points, as the user wrote it."""

    path: str  # e.g. slices[0].traffic[1].sigma (pydantic's union branch names left out)
    owner: Any  # the type holding the last key (for an unknown key: the model whose keys are allowed)
    in_branch: bool  # the last part was a union branch pydantic named, not a key of the document


@overload
def validate(schema: type[ModelT], document: Any, source: str | Path, at: str = "") -> ModelT: ...


@overload
def validate(schema: Any, document: Any, source: str | Path, at: str = "") -> Any: ...


def validate(schema: Any, document: Any, source: str | Path, at: str = "") -> Any:
    """``document`` validated against ``schema`` (a model class or an annotation such as a union).

    Raises:
        InputError: one line from :func:`describe_validation_error`.
    """
    try:
        return TypeAdapter(schema).validate_python(document)
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc, source, schema, at)) from None


def describe_validation_error(error: ValidationError, source: str | Path, schema: Any, at: str = "") -> str:
    """One line: ``source``, the key path of the first real problem (below ``at``) and what is wrong.

    Args:
        error: what pydantic raised while validating against ``schema``.
        source: the file (or option) the document came from.
        schema: the model class (or annotation, e.g. a discriminated union) that was validated.
        at: where the validated document sits in its file, e.g. ``all.vars`` of an inventory.

    Example:
        ``spec.yaml: slices[0].bounds.gpu: unknown key (allowed keys: bandwidth_mbps, cpu_millicores)``
    """
    errors = [(entry, _locate(schema, entry["loc"])) for entry in error.errors(include_url=False)]
    # an input meant for one branch of a union fails the others too: report the branch it was meant for
    relevant = [(entry, where) for entry, where in errors
                if not (entry["type"] in BRANCH_MISMATCHES and where.in_branch)] or errors[:1]
    first, where = relevant[0]
    path = ".".join(part for part in (at, where.path) if part).replace(".[", "[")
    more = len(relevant) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {path or '(top level)'}: {_problem(first, where)}{suffix}"


def _problem(entry: Any, where: _Location) -> str:
    kind = entry["type"]
    if kind == "extra_forbidden":
        allowed = sorted(where.owner.model_fields) if _is_model(where.owner) else []
        return f"unknown key (allowed keys: {', '.join(allowed)})" if allowed else "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(entry["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message if kind in NO_INPUT_ECHO else f"{message}, got {_short(entry.get('input'))}"


def _locate(schema: Any, location: tuple[int | str, ...]) -> _Location:
    """Walk ``location`` through ``schema``: document keys and list indices are kept, union branch names dropped."""
    path, current, owner, in_branch = "", schema, None, False
    for part in location:
        members = _members(current)
        owner, in_branch = current, False
        if isinstance(part, int):
            path += f"[{part}]"
            current = _item_type(members, part)
            continue
        model = next((m for m in members if _is_model(m) and part in m.model_fields), None)
        if model is not None:
            path += f".{part}" if path else part
            owner, current = model, model.model_fields[part].annotation
            continue
        branch = _branch(members, part) if len(members) > 1 else None
        if branch is not None or "[" in part:  # a union member pydantic named, or a validator/key wrapper
            in_branch, current = True, branch if branch is not None else current
            continue
        path += f".{part}" if path else part  # a mapping's key, or a key the model does not know
        owner = next((m for m in members if _is_model(m)), None)
        current = _value_type(members)
    return _Location(path, owner, in_branch)


def _members(annotation: Any) -> list[Any]:
    """The alternatives an annotation allows (unions and ``Annotated`` unwrapped, None left out)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [member for argument in typing.get_args(annotation) for member in _members(argument)]
    return [] if annotation is type(None) else [annotation]


def _item_type(members: list[Any], index: int) -> Any:
    for member in members:
        arguments = typing.get_args(member)
        if typing.get_origin(member) in (list, set, frozenset) and arguments:
            return arguments[0]
        if typing.get_origin(member) is tuple and arguments:
            return arguments[0] if arguments[-1] is Ellipsis else arguments[min(index, len(arguments) - 1)]
    return None


def _value_type(members: list[Any]) -> Any:
    for member in members:
        if typing.get_origin(member) is dict:
            return typing.get_args(member)[1]
    return None


def _branch(members: list[Any], part: str) -> Any:
    """The union member named ``part``: a model by class name or by its discriminator's literal value."""
    for member in members:
        if not _is_model(member):
            continue
        if member.__name__ == part:
            return member
        for field in member.model_fields.values():
            if typing.get_origin(field.annotation) is typing.Literal and part in typing.get_args(field.annotation):
                return member
    return None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
