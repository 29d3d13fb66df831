"""The base of every domain's settings schema, and the value types they share.

A schema is a pydantic model: one field per key, with its type, default and a line of
documentation (``Field(description=...)``), which is also what docs/settings.md is made
from. ``extra="forbid"``: an unknown key is an error, never ignored. ``strict``: YAML already
gives real types, so "5432" for a port or ``yes`` for a number is a mistake to name, not to
coerce (pydantic's lax mode would take ``true`` as the port 1).

This module imports pydantic: import it only where settings are read (domain ``config``
modules do so inside their ``load`` functions), never at opskit's start-up.
"""

from __future__ import annotations

import math
import posixpath
import re
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "AbsPath", "BelowRoot", "Distinct", "Field", "Pattern", "PlainName", "Port", "Positive",
    "RelPath", "Seconds", "Settings", "Text",
]


class Settings(BaseModel):
    """A domain's settings: unknown keys refused, values typed strictly, instances frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              validate_default=False, populate_by_name=False)


class Nested(Settings):
    """A mapping inside a domain's settings (e.g. ``redis.publish``): the same rules."""


# \Z, not $: "$" also matches before a final newline, and a newline in a value written into a
# config file (pgbouncer.ini) would start a line of its own.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\Z")


def _abs_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path (got {value!r})")
    if "\n" in value or "\0" in value:
        raise ValueError("must not contain a newline or NUL")
    return value


def _rel_path(value: str) -> str:
    norm = posixpath.normpath(value)
    if value.startswith("/") or norm == ".." or norm.startswith("../") or "\0" in value:
        raise ValueError(f"must be a relative path without '..' (got {value!r})")
    return norm


def _plain_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"must be a plain name: letters, digits, _ . - (got {value!r})")
    return value


def _seconds(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a positive number of seconds (got {value!r})")
    return float(value)


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be 1 or more (got {value!r})")
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port number 1-65535 (got {value!r})")
    return value


def _below_root(value: str) -> str:
    norm = posixpath.normpath(value)
    if not norm.strip("/"):  # "/", "//" (normpath keeps a leading //), "/./.."
        raise ValueError("must be a directory below /, not / itself")
    return norm


def _distinct(value: list[Any]) -> list[Any]:
    twice = sorted({str(v) for v in value if value.count(v) > 1})
    if twice:
        raise ValueError(f"lists {', '.join(twice)} twice")
    return value


def _text(value: str) -> str:
    if "\0" in value:
        raise ValueError("must not contain NUL")
    return value


AbsPath = Annotated[str, AfterValidator(_abs_path)]
BelowRoot = Annotated[str, AfterValidator(_abs_path), AfterValidator(_below_root)]  # not /
Distinct = AfterValidator(_distinct)  # a list without repeats: Annotated[list[X], Distinct]
RelPath = Annotated[str, AfterValidator(_rel_path)]
PlainName = Annotated[str, AfterValidator(_plain_name)]
Seconds = Annotated[float, AfterValidator(_seconds)]
Positive = Annotated[int, AfterValidator(_positive)]
Port = Annotated[int, AfterValidator(_port)]
Text = Annotated[str, AfterValidator(_text)]


class PatternMarker:
    """Marks a field whose value is an inventory pattern: ``inventory check`` resolves it."""


Pattern = Annotated[str, AfterValidator(_text), PatternMarker()]  # an inventory --limit pattern


def _marked(metadata: list[Any], annotation: Any) -> bool:
    """A PatternMarker on the field, or inside its type (``Pattern | None``)."""
    if any(isinstance(m, PatternMarker) for m in metadata):
        return True
    if get_origin(annotation) is Annotated:
        return any(isinstance(m, PatternMarker) for m in get_args(annotation)[1:])
    return any(_marked([], arg) for arg in get_args(annotation))


class HostPortsMarker:
    """Marks a list of INVENTORY_HOST:PORT: ``inventory check`` looks each host up."""


HostPorts = Annotated[list[str], HostPortsMarker()]  # of INVENTORY_HOST:PORT entries


def _marked_as(metadata: list[Any], annotation: Any, marker: type) -> bool:
    if any(isinstance(m, marker) for m in metadata):
        return True
    if get_origin(annotation) is Annotated:
        return any(isinstance(m, marker) for m in get_args(annotation)[1:])
    return any(_marked_as([], arg, marker) for arg in get_args(annotation))


def host_port_fields(model: BaseModel) -> list[tuple[tuple[str | int, ...], list[str]]]:
    """Every (path, entries) of ``model`` whose field is :data:`HostPorts`, in nested
    models and lists of them (``instances[1].sentinel.hosts``)."""
    found: list[tuple[tuple[str | int, ...], list[str]]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        if _marked_as(info.metadata, info.annotation, HostPortsMarker) and isinstance(value,
                                                                                        list):
            found.append(((name,), value))
        elif isinstance(value, BaseModel):
            found.extend(((name, *path), v) for path, v in host_port_fields(value))
        elif isinstance(value, list):
            for k, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found.extend(((name, k, *path), v) for path, v in host_port_fields(item))
    return found


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field's type holds (``Publish``, ``Publish | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = nested_model(arg)
        if found is not None:
            return found
    return None


def pattern_fields(model: BaseModel) -> list[tuple[tuple[str, ...], str]]:
    """Every (path, pattern) of ``model`` whose field is a :data:`Pattern`, nested included."""
    found: list[tuple[tuple[str, ...], str]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        if _marked(info.metadata, info.annotation) and isinstance(value, str):
            found.append(((name,), value))
        elif isinstance(value, BaseModel):
            found.extend(((name, *path), v) for path, v in pattern_fields(value))
    return found


def field_doc(model: type[BaseModel], name: str) -> str:
    info = model.model_fields[name]
    return info.description or ""


def default_text(model: type[BaseModel], name: str) -> str:
    """The default as the reference shows it: ``—`` for a required key."""
    info = model.model_fields[name]
    if info.is_required():
        return "required"
    value: Any = info.get_default(call_default_factory=True)
    if value is None:
        return "—"
    return repr(value) if isinstance(value, str) else str(value)
