"""The raw facts every inventory source adds, and the checks every declared var goes through.

Each source (YAML, INI, ``ansible-inventory --list`` JSON, a script, EC2, group_vars/ and
host_vars/ files) adds groups, edges, members and vars to one :class:`Collector`; the loader
then resolves the group graph and merges vars with Ansible's precedence. Every var passes
:func:`check_vars` where it is declared, so an error names that file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opskit.errors import InventoryError
from opskit.inventory import refuse, ssh_args
from opskit.inventory.model import CONNECTIONS
from opskit.inventory.origin import Origin

DOMAIN_KEYS = ("deploy", "snapshot", "postgres", "redis", "cache", "aws")
STRING_VARS = ("ansible_host", "ansible_user", "ansible_ssh_private_key_file", "opskit_known_hosts")


@dataclass
class RawGroup:
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)
    # hosts as a set: "already a member?" was a list scan, quadratic for app[1:100000].
    host_set: set[str] = field(default_factory=set)


@dataclass
class Collector:
    """Facts gathered from every file before the group graph is resolved.

    Vars come in Ansible's layers: inventory-file group vars (``RawGroup.vars``), group_vars/
    files (``group_files``), inventory-file host vars (``host_vars``), host_vars/ files
    (``host_files``); loader._build applies them in that order.
    """

    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)  # ordered: first seen
    host_origins: dict[str, dict[str, Origin]] = field(default_factory=dict)
    groups: dict[str, RawGroup] = field(default_factory=dict)
    edge_where: dict[tuple[str, str], str] = field(default_factory=dict)
    group_files: dict[str, tuple[dict[str, Any], dict[str, Origin]]] = field(default_factory=dict)
    host_files: dict[str, tuple[dict[str, Any], dict[str, Origin]]] = field(default_factory=dict)
    # False: sources that would call an API (EC2) are parsed and checked, not run; the vars
    # they would give every host are kept in ``undiscovered`` for `inventory check`.
    discover: bool = True
    undiscovered: list[dict[str, Origin]] = field(default_factory=list)

    def group(self, name: str) -> RawGroup:
        return self.groups.setdefault(name, RawGroup())

    def add_host(self, name: str, group: str, host_vars: Mapping[str, Any],
                 origins: Mapping[str, Origin] | None = None) -> None:
        self.host_vars.setdefault(name, {}).update(host_vars)  # later mention wins
        if origins:
            self.host_origins.setdefault(name, {}).update(origins)
        raw = self.group(group)
        if name not in raw.host_set:
            raw.host_set.add(name)
            raw.hosts.append(name)

    def set_host_vars(self, name: str, host_vars: Mapping[str, Any],
                      origins: Mapping[str, Origin]) -> None:
        """Vars of a host already added to its groups (``--list`` JSON's ``_meta``)."""
        self.host_vars.setdefault(name, {}).update(host_vars)
        if origins:
            self.host_origins.setdefault(name, {}).update(origins)

    def add_child(self, parent: str, child: str, where: str) -> None:
        self.group(child)
        children = self.group(parent).children
        if child not in children:
            children.append(child)
            self.edge_where[(parent, child)] = where

    def set_group_vars(self, name: str, group_vars: Mapping[str, Any],
                       origins: Mapping[str, Origin]) -> None:
        raw = self.group(name)
        raw.vars.update(group_vars)
        raw.origins.update(origins)


def line_at(source: str, mapping: Any, key: Any, default: str) -> str:
    """'file line N' for ``key`` of a YAML mapping that knows its key lines, else ``default``."""
    lines = getattr(mapping, "key_lines", None)
    if lines and key in lines:
        return f"{source} line {lines[key]}"
    return default


def check_vars(value: Any, at: str, owner: str, *, source: str | None = None,
               templates: bool = True) -> dict[str, Any]:
    """Validate one declaration's vars; return them as plain dicts.

    ``at`` is 'file line N' of the declaration; with ``source``, a var whose own line the
    YAML parser kept is reported at that line. ``templates=False`` skips the Jinja/vault
    check (EC2: tag values are AWS data, never templates).
    """
    if not isinstance(value, Mapping):
        raise InventoryError(
            f"{at}: vars of {owner} must be a mapping (got {kind(value)})",
            hint="write `name: value` pairs indented under it",
        )
    for key, item in value.items():
        key_at = line_at(source, value, key, at) if source else at
        if not isinstance(key, str):
            raise InventoryError(f"{key_at}: var name {key!r} of {owner} is not a string",
                                 hint=None)
        refuse.check_name(key, key_at, owner)
        if templates:
            found = refuse.offence(item, (key,))
            if found:
                path, what = found
                line = Origin(source or "", owner, None, item).line_of(path[1:]) \
                    if source else None
                where = f"{source} line {line}" if line and len(path) > 1 else key_at
                raise refuse.refuse_value(what, where, owner, path)
    _check_connection_vars(value, at, owner, source)
    for key in DOMAIN_KEYS:
        if value.get(key) is not None and not isinstance(value[key], Mapping):
            raise InventoryError(
                f"{_at(value, key, at, source)}: '{key}' of {owner} must be a mapping "
                f"(got {kind(value[key])})",
                hint=f"put the {key} settings as `key: value` pairs under `{key}:`",
            )
    return plain(value)


def _at(value: Any, key: str, at: str, source: str | None) -> str:
    return line_at(source, value, key, at) if source else at


def _check_connection_vars(value: Mapping[str, Any], at: str, owner: str,
                           source: str | None) -> None:
    port = value.get("ansible_port")
    if port is not None and not is_port(port):
        raise InventoryError(
            f"{_at(value, 'ansible_port', at, source)}: ansible_port of {owner} must be an "
            f"integer 1-65535 (got {port!r})",
            hint="e.g. `ansible_port: 2222`",
        )
    conn = value.get("ansible_connection")
    if conn is not None and conn not in CONNECTIONS:
        raise InventoryError(
            f"{_at(value, 'ansible_connection', at, source)}: ansible_connection of {owner} is "
            f"'{conn}'; opskit supports ssh and local",
            hint="remove it (ssh is the default) or set `ansible_connection: local`",
        )
    for key in STRING_VARS:
        if value.get(key) is not None and not isinstance(value[key], str):
            raise InventoryError(
                f"{_at(value, key, at, source)}: {key} of {owner} must be a string "
                f"(got {value[key]!r})",
                hint="quote the value",
            )
    for key in (ssh_args.COMMON, ssh_args.EXTRA):
        if value.get(key) is None:
            continue
        try:
            ssh_args.options(value[key], None)
        except ssh_args.SshArgsError as exc:
            raise InventoryError(f"{_at(value, key, at, source)}: {key} of {owner}: "
                                 f"{exc.message}", hint=exc.hint) from None


def origins_of(value: Mapping[str, Any], source: str, owner: str) -> dict[str, Origin]:
    """An :class:`Origin` for each var of one declaration (lines where YAML gave them)."""
    lines = getattr(value, "key_lines", None) or {}
    line = getattr(value, "line", None)
    return {k: Origin(source, owner, lines.get(k, line), v) for k, v in value.items()}


def is_port(port: Any) -> bool:
    if isinstance(port, bool):
        return False
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    return isinstance(port, int) and 1 <= port <= 65535


def plain(value: Any) -> Any:
    """Deep copy without the line-tracking dict subclass (and ``!unsafe`` as plain str)."""
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, refuse.Unsafe):
        return str(value)
    return value


def kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
