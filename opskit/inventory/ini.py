"""INI inventories, read as Ansible's ini inventory plugin reads them.

    app01 ansible_host=10.0.0.1 ansible_port=2222   # before any section: group 'ungrouped'
    [web]                                          # hosts of 'web'
    app[01:25]
    db1:2222 color=blue
    [web:vars]                                     # one `name = value` per line
    http_port=8080
    [prod:children]                                # child groups, one per line
    web

Host lines are split into shell-like words (quotes, ``#`` comments); each word after the host
pattern is ``name=value``. Values, on host lines and in ``:vars``, are Python literals when
``ast.literal_eval`` takes them (``8080`` an int, ``True`` a bool, ``[1, 2]`` a list,
``'x'`` a string) and strings otherwise (``yes``, ``/srv/app``), as in Ansible.

A ``[g:vars]`` section needs ``g`` declared by a ``[g]`` or ``[g:children]`` header, and a
``[p:children]`` entry needs its group declared somewhere (later is fine): an error names the
first undeclared one, as Ansible does. Every error is one line with the file and line.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field
from typing import Any

from opskit.errors import InventoryError
from opskit.inventory import hostport
from opskit.inventory.collect import Collector, check_vars
from opskit.inventory.origin import Origin
from opskit.redact import is_secret_name

_SECTION = re.compile(r"\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?")
_GROUP_NAME = re.compile(r"([^:\]\s]+)\s*(?:#.*)?")
_COMMENTS = ("#", ";")
HINT = "INI inventory: `[group]`, `[group:vars]`, `[group:children]`, host lines " \
    "`name key=value ...` (see docs/inventory.md)"


@dataclass
class _Pending:
    """A group used before it is declared: by ``[g:vars]`` or as a child."""

    line: int
    state: str
    parents: list[str] = field(default_factory=list)


def decode(data: bytes, source: str) -> list[str]:
    """The lines; non-UTF-8 bytes are allowed in comment lines only (as in Ansible)."""
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        pass
    lines = []
    for number, raw in enumerate(data.splitlines(), 1):
        if raw.lstrip()[:1] in (b"#", b";"):
            lines.append("")
            continue
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InventoryError(f"{source} line {number}: not UTF-8 text ({exc.reason})",
                                 hint="save the file as UTF-8") from None
    return lines


def add(collector: Collector, lines: list[str], source: str) -> None:
    """Add one INI file's groups, hosts and vars to ``collector``."""
    known = set(collector.groups) | {"all", "ungrouped"}
    pending: dict[str, _Pending] = {}
    group, state = "ungrouped", "hosts"
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith(_COMMENTS):
            continue
        at = f"{source} line {number}"
        section = _SECTION.fullmatch(line)
        if section:
            group, state = section.group(1), section.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise InventoryError(f"{at}: section [{group}:{state}] has unknown type "
                                     f"'{state}'", hint="a section is [g], [g:vars] or "
                                     "[g:children]")
            if group not in known:
                # [g] and [g:children] declare g; [g:vars] only uses it (checked at the end).
                if state == "vars" and group not in pending:
                    pending[group] = _Pending(number, state)
                known.add(group)
                collector.group(group)
            if state != "vars" and group in pending:
                if pending[group].state == "children":
                    _declare_child(collector, group, pending, source)
                else:
                    del pending[group]
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(f"{at}: invalid section {line!r}",
                                 hint="no spaces in a section header: [group], [group:vars]")
        if state == "hosts":
            _host_line(collector, line, source, number, group)
        elif state == "vars":
            _var_line(collector, line, source, number, group)
        else:
            child = _GROUP_NAME.fullmatch(line)
            if not child:
                raise InventoryError(f"{at}: expected a group name in [{group}:children], got "
                                     f"{line!r}", hint="one child group name per line")
            name = child.group(1)
            if name == "all":
                raise InventoryError(f"{at}: 'all' cannot be a child of '{group}'",
                                     hint="remove it")
            if name in known:
                collector.add_child(group, name, at)
            else:
                pending.setdefault(name, _Pending(number, "children")).parents.append(group)
    for name, decl in pending.items():
        at = f"{source} line {decl.line}"
        if decl.state == "vars":
            raise InventoryError(f"{at}: section [{name}:vars] is for group '{name}', which is "
                                 "not declared", hint=f"declare it with [{name}] or "
                                 f"[{name}:children] (or fix the name)")
        raise InventoryError(f"{at}: [{decl.parents[-1]}:children] names group '{name}', which "
                             "is not declared", hint=f"declare it with [{name}] or "
                             f"[{name}:children] (or fix the name)")


def _declare_child(collector: Collector, group: str, pending: dict[str, _Pending],
                   source: str) -> None:
    decl = pending.pop(group)
    for parent in decl.parents:
        collector.add_child(parent, group, f"{source} line {decl.line}")
        if parent in pending and pending[parent].state == "children":
            _declare_child(collector, parent, pending, source)


def _host_line(collector: Collector, line: str, source: str, number: int, group: str) -> None:
    at = f"{source} line {number}"
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError(f"{at}: cannot split the host line into words: {exc}",
                             hint="check the quotes") from None
    if not words or not words[0]:
        raise InventoryError(f"{at}: empty host name", hint=HINT)
    pattern = words[0]
    if pattern.endswith(":") or pattern == "---":
        why = "'---' starts a YAML document: is this a YAML file with another extension?" \
            if pattern == "---" else "a ':' after a host name must be followed by a port"
        raise InventoryError(f"{at}: invalid host pattern {pattern!r}", hint=why)
    names, port = hostport.expand(pattern, at, group)
    host_vars: dict[str, Any] = {}
    for word in words[1:]:
        if "=" not in word:
            raise InventoryError(f"{at}: expected name=value after host '{pattern}', got "
                                 f"{_shown(word)}", hint="host vars are name=value, e.g. "
                                 "ansible_port=2222")
        key, value = word.split("=", 1)
        host_vars[key] = parse_value(value, at)
    owner = f"host '{pattern}'"
    checked = check_vars(host_vars, at, owner)
    origins = {k: Origin(source, owner, number, v) for k, v in checked.items()}
    port_origin = {"ansible_port": Origin(source, owner, number, port)}
    for name in names:
        if port is not None and name not in collector.host_vars:
            # 'db1:2222' sets ansible_port when it creates the host, as in Ansible.
            collector.add_host(name, group, {"ansible_port": port}, port_origin)
        collector.add_host(name, group, checked, origins)


def _var_line(collector: Collector, line: str, source: str, number: int, group: str) -> None:
    at = f"{source} line {number}"
    if "=" not in line:
        raise InventoryError(f"{at}: expected name=value in [{group}:vars], got {_shown(line)}",
                             hint="one `name = value` per line")
    key, value = (part.strip() for part in line.split("=", 1))
    owner = f"group '{group}'"
    checked = check_vars({key: parse_value(value, at)}, at, owner)
    collector.set_group_vars(group, checked, {key: Origin(source, owner, number, checked[key])})


def _shown(text: str) -> str:
    """A malformed line as an error quotes it, unless it may hold a secret (db_password x)."""
    first = re.split(r"[=:\s]", text.strip(), maxsplit=1)[0]
    if is_secret_name(first):
        return f"a line starting {first!r} (the rest is not shown: it may be a secret)"
    return repr(text)


def parse_value(text: str, at: str) -> Any:
    """A Python literal when ast.literal_eval takes it, else the text (Ansible's rule)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    except (RecursionError, MemoryError, TypeError) as exc:
        # Ansible fails on these too ('{[1]: 2}', thousands of nested brackets).
        raise InventoryError(f"{at}: value {text[:40]!r} cannot be read "
                             f"({type(exc).__name__})", hint="quote it as a string") from None
    return _coerce(value)


def _coerce(value: Any) -> Any:
    # Ansible's ini plugin: tuples and sets become lists, bytes text; `...` and complex
    # numbers are not variable types, so they stay the text that was written.
    if isinstance(value, (list, tuple, set)):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {_coerce(k): _coerce(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value
