"""docs/settings.md, made from the schemas: every key, its type, default and meaning.

``python -m opskit.settings.reference > docs/settings.md`` rewrites it; a unit test fails when
the file and the schemas differ, so the reference cannot drift from what opskit checks.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from opskit.settings import base
from opskit.settings.registry import DOMAINS, schema

HEADER = """\
# Settings reference

Written by `python -m opskit.settings.reference > docs/settings.md` from the schemas in the
code (`opskit/settings/registry.py` lists them); a unit test fails when the two differ. Do not
edit it by hand.

Each opskit domain reads one mapping var, set on groups or hosts like any other var
(docs/inventory.md, "Vars and precedence": a host gets the whole mapping of the most specific
declaration, dicts are replaced, not merged). Every key is checked when a command reads the
domain, and `opskit inventory check` checks every host's every domain without connecting:

- an unknown key is an error naming the file, line and group or host, with the closest valid
  key (`inventory/x.yml line 12, group 'db': postgres.data_dir: unknown key (did you mean
  postgres.data_directory?)`);
- a value of the wrong type or outside its grammar is a one-line error naming the same
  (`... postgres.port: must be a port number 1-65535 (got 70000)`); values are not coerced:
  `"5432"` is not a port, `yes` is not a number;
- a var whose name is close to a domain's (`postgress:`) is an error too; other vars (your
  Ansible roles' own) are left alone.

Types: *path* is an absolute path; *relative path* is inside a release, without `..`; *name*
is letters, digits, `_ . -` (it is written into config files); *seconds* is a positive number;
*pattern* is an inventory `--limit` pattern (docs/inventory.md), which `inventory check` also
resolves.
"""

_NAMED = {
    base._abs_path: "path",
    base._rel_path: "relative path",
    base._plain_name: "name",
    base._seconds: "seconds",
    base._positive: "integer ≥ 1",
    base._port: "port",
}


def render() -> str:
    parts = [HEADER]
    for domain in DOMAINS:
        model = schema(domain)
        parts.append(f"\n## `{domain}:`\n\n{_doc(model)}\n\n"
                     "| key | type | default | meaning |\n|---|---|---|---|\n")
        parts.extend(_rows(model, domain))
    return "".join(parts)


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        key = f"{prefix}.{name}"
        rows.append(f"| `{key}` | {_type(info)} | {_default(info)} | "
                    f"{_cell(info.description or '')} |\n")
        nested = base.nested_model(info.annotation)
        if nested is not None:
            rows.extend(_rows(nested, key))
    return rows


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value: Any = info.get_default(call_default_factory=True)
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple | list):
        return f"`{list(value)}`" if value else "`[]`"
    return f"`{value}`"


def _type(info: FieldInfo) -> str:
    for meta in info.metadata:
        func = getattr(meta, "func", None)
        if func in _NAMED:
            return _NAMED[func]
        if isinstance(meta, base.PatternMarker):
            return "pattern"
    return _annotation(info.annotation)


def _annotation(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        for meta in args[1:]:
            func = getattr(meta, "func", None)
            if func in _NAMED:
                return _NAMED[func]
            if isinstance(meta, base.PatternMarker):
                return "pattern"
        return _annotation(args[0])
    if origin in (typing.Union, types.UnionType):
        shown = [_annotation(a) for a in args if a is not type(None)]
        return " or ".join(shown)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        return f"list of {_annotation(inner[0])}" if inner else "list"
    if origin is dict:
        return "mapping"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    return {str: "string", int: "integer", float: "number", bool: "bool"}.get(tp, str(tp))


if __name__ == "__main__":
    print(render(), end="")
