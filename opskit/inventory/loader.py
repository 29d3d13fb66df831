"""The inventory: hosts, groups and their vars, loaded from Ansible-compatible YAML or EC2.

Public entry point for the rest of opskit::

    inv = load("inventory/production.yml")        # a file, an EC2 source, or a directory
    for host in inv.select("app*:!app01"):        # --limit patterns (opskit.inventory.patterns)
        host.address, host.user, host.domain("deploy")

Loading happens in two steps: every file adds its raw facts (groups, edges, direct
members, vars, each with where it was declared) to a :class:`_Collector`; :func:`_build`
then checks the group graph for cycles and merges vars with Ansible's precedence
(all < parent < child, siblings by name < host). Dict values are replaced, not merged.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opskit.errors import InventoryError
from opskit.inventory import hostrange
from opskit.inventory.model import CONNECTIONS, Group, Host, Inventory
from opskit.inventory.origin import Origin

DOMAIN_KEYS = ("deploy", "snapshot", "postgres", "redis", "cache", "aws")
GROUP_KEYS = ("hosts", "children", "vars")
STRING_VARS = ("ansible_host", "ansible_user", "ansible_ssh_private_key_file", "opskit_known_hosts")
MISSING_HINT = "pass -i PATH or set OPSKIT_INVENTORY"


# --------------------------------------------------------------------------- loading


def load(path: str | os.PathLike[str]) -> Inventory:
    """Load a YAML inventory, an EC2 source file, or a directory of them (merged)."""
    root = Path(path)
    if root.is_dir():
        files = sorted(
            p
            for p in root.iterdir()
            if p.suffix in (".yml", ".yaml")
            and not p.name.startswith(".")
            and not p.name.endswith((".example.yml", ".example.yaml"))
            and p.is_file()
        )
        if not files:
            raise InventoryError(
                f"{root}: no *.yml or *.yaml inventory files in this directory", hint=MISSING_HINT
            )
    elif root.is_file():
        files = [root]
    else:
        raise InventoryError(f"inventory not found: {root}", hint=MISSING_HINT)
    collector = _Collector()
    for file in files:
        _add_document(collector, _read_yaml(file), str(file))
    return _build(collector, [str(f) for f in files])


def loads(text: str, source: str = "<string>") -> Inventory:
    """Load an inventory from YAML text (tests and tools that generate inventories)."""
    collector = _Collector()
    _add_document(collector, _parse_yaml(text, source), source)
    return _build(collector, [source])


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Inventory:
    """Build an inventory from already-parsed YAML data (same rules as a file)."""
    collector = _Collector()
    _add_document(collector, data, source)
    return _build(collector, [source])


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{path}: not UTF-8 text ({exc.reason})", hint=MISSING_HINT) from exc
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read: {exc.strerror}", hint=MISSING_HINT) from exc
    return _parse_yaml(text, str(path))


class _Marked(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers the line of each key, for error messages."""

    line: int | None = None
    key_lines: dict[Any, int]


# How many nodes aliases may add when the document is expanded (every *alias counts as a
# copy of what its anchor holds). Real inventories share a few vars blocks; a billion-laughs
# set of anchors would expand to 10**9 nodes and a self-referencing alias forever.
ALIAS_BUDGET = 1_000_000


class _RefusedYAML(yaml.constructor.ConstructorError):
    """A document opskit refuses to expand (alias loop or bomb, duplicate key), with a hint."""

    def __init__(self, problem: str, mark: Any, hint: str) -> None:
        super().__init__(None, None, problem, mark)
        self.hint = hint


_ALIAS_HINT = "an alias (*name) may not point into its own anchor, and aliases may not nest " \
    "into a huge document: write the values out"


class _Bounded:
    """Checks a composed document's alias expansion before anything is constructed."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_aliases(node)
        return super().construct_document(node)  # type: ignore[misc]


def _check_aliases(root: yaml.Node) -> None:
    """Refuse an alias cycle and an expansion over ALIAS_BUDGET, in time linear in the nodes.

    Aliases make the node tree a graph in which one node may be reached many times; its
    expanded size is counted once per node (memoised), iteratively so depth costs no stack.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            continue
        if key in size:
            continue
        if key in on_path:
            raise _RefusedYAML("a YAML alias refers to a node that contains it (an alias loop)",
                               node.start_mark, _ALIAS_HINT)
        on_path.add(key)
        stack.append((node, True))
        for kid in kids:
            if id(kid) in on_path:
                raise _RefusedYAML("a YAML alias refers to a node that contains it (an alias "
                                   "loop)", kid.start_mark, _ALIAS_HINT)
            if id(kid) not in size:
                stack.append((kid, False))
    expanded = size[id(root)]
    if expanded - len(size) > ALIAS_BUDGET:
        raise _RefusedYAML(f"YAML aliases expand this document to {expanded:,} nodes, more "
                           f"than {ALIAS_BUDGET:,} beyond its own (an alias bomb?)",
                           root.start_mark, _ALIAS_HINT)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class _Loader(_Bounded, yaml.SafeLoader):
    """Pure-Python safe loader: its error messages are the ones users see."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_map(loader: Any, node: yaml.MappingNode) -> Any:
    # A duplicate key would silently replace the first one (PyYAML's default): refuse it.
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        try:
            key = loader.construct_object(key_node)
            hash(key)
        except TypeError:
            continue  # an unhashable key; construct_mapping complains about it
        if key in seen:
            raise _RefusedYAML(f"duplicate key {key!r} (first on line {seen[key]})",
                               key_node.start_mark, "a key may appear once in a mapping: "
                               "remove one, or merge their values")
        seen[key] = key_node.start_mark.line + 1
    data = _Marked()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    data.update(loader.construct_mapping(node))
    for key_node, _ in node.value:
        try:
            data.key_lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1
        except TypeError:  # an unhashable key; construct_mapping already complained
            pass


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)

if hasattr(yaml, "CSafeLoader"):

    class _FastLoader(_Bounded, yaml.CSafeLoader):  # type: ignore[misc, name-defined]
        """libyaml parsing, same constructors; used first because it is ~10x faster."""

    _FastLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
    _LOADERS: tuple[type, ...] = (_FastLoader, _Loader)
else:  # pragma: no cover - PyYAML built without libyaml
    _LOADERS = (_Loader,)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_LOADERS[0])  # noqa: S506 - SafeLoader subclasses
    except yaml.YAMLError:
        pass
    # Re-parse with the pure loader so the message is PyYAML's, whatever libyaml said.
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source} line {mark.line + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        column = f" column {mark.column + 1}" if mark else ""
        hint = getattr(exc, "hint", None) or \
            f"fix the YAML near{column or ' there'}: check indentation, ':' and quotes"
        raise InventoryError(f"{where}: {problem}", hint=hint) from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"{source}: invalid YAML: {exc}", hint="fix the YAML syntax") from None


# --------------------------------------------------------------------------- raw facts


@dataclass
class _RawGroup:
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)
    # hosts as a set: "already a member?" was a list scan, quadratic for app[1:100000].
    host_set: set[str] = field(default_factory=set)


@dataclass
class _Collector:
    """Facts gathered from every file before the group graph is resolved."""

    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)  # ordered: first seen
    host_origins: dict[str, dict[str, Origin]] = field(default_factory=dict)
    groups: dict[str, _RawGroup] = field(default_factory=dict)
    edge_where: dict[tuple[str, str], str] = field(default_factory=dict)

    def group(self, name: str) -> _RawGroup:
        return self.groups.setdefault(name, _RawGroup())

    def add_host(self, name: str, group: str, host_vars: Mapping[str, Any],
                 origins: Mapping[str, Origin] | None = None) -> None:
        self.host_vars.setdefault(name, {}).update(host_vars)  # later mention wins
        if origins:
            self.host_origins.setdefault(name, {}).update(origins)
        raw = self.group(group)
        if name not in raw.host_set:
            raw.host_set.add(name)
            raw.hosts.append(name)

    def add_child(self, parent: str, child: str, where: str) -> None:
        self.group(child)
        children = self.group(parent).children
        if child not in children:
            children.append(child)
            self.edge_where[(parent, child)] = where


class _Where:
    """Formats 'file line N' for a mapping key, when the line is known."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, mapping: Any = None, key: Any = None) -> str:
        line = None
        if isinstance(mapping, _Marked):
            line = mapping.key_lines.get(key, mapping.line) if key is not None else mapping.line
        return f"{self.source} line {line}" if line else self.source


def _add_document(collector: _Collector, data: Any, source: str) -> None:
    """Add one parsed file: an EC2 source or Ansible-style groups."""
    where = _Where(source)
    if data is None:
        return  # an empty file is an empty inventory, as in Ansible
    if not isinstance(data, Mapping):
        raise InventoryError(
            f"{where(data)}: the top level must be a mapping of groups (got {_kind(data)})",
            hint="start with `all:` and put hosts, children and vars under it",
        )
    if "plugin" in data:
        raise InventoryError(
            f"{where(data, 'plugin')}: Ansible inventory plugins are not supported",
            hint="for EC2 write `source: ec2` (see docs/inventory.md)",
        )
    if "source" in data:
        if data["source"] != "ec2":
            raise InventoryError(
                f"{where(data, 'source')}: unknown inventory source '{data['source']}'",
                hint="the only source is `source: ec2`; static groups need no `source:` key",
            )
        _add_ec2(collector, data, source)
        return
    for name, body in data.items():
        _add_group(collector, where, data, name, body, parent=None, stack=())


def _add_group(
    collector: _Collector,
    where: _Where,
    container: Any,
    name: Any,
    body: Any,
    parent: str | None,
    stack: tuple[int, ...],
) -> None:
    """Add group ``name`` (declared as key of ``container``) and everything under it."""
    at = where(container, name)
    if not isinstance(name, str) or not name.strip():
        raise InventoryError(
            f"{at}: group names must be non-empty strings (got {name!r})", hint="quote the name"
        )
    if parent is not None and name == "all":
        raise InventoryError(f"{at}: 'all' cannot be a child of '{parent}'", hint="remove it")
    collector.group(name)
    if parent is not None:
        collector.add_child(parent, name, at)
    if body is None:
        return
    if not isinstance(body, Mapping):
        raise InventoryError(
            f"{at}: group '{name}' must be a mapping of hosts/children/vars (got {_kind(body)})",
            hint=f"write `{name}:` then `hosts:`, `children:` or `vars:` indented under it",
        )
    if id(body) in stack:
        raise InventoryError(f"{at}: group '{name}' contains itself (YAML alias loop)", hint=None)
    unknown = [k for k in body if k not in GROUP_KEYS]
    if unknown:
        raise InventoryError(
            f"{where(body, unknown[0])}: unknown key '{unknown[0]}' in group '{name}'",
            hint="a group has only hosts:, children: and vars: (nest host vars under a host)",
        )
    _add_hosts(collector, where, body, name)
    if body.get("vars") is not None:
        vars_at = where(body, "vars")
        group_vars = _check_vars(body["vars"], vars_at, f"group '{name}'")
        collector.group(name).vars.update(group_vars)
        collector.group(name).origins.update(
            origins_of(body["vars"], where.source, f"group '{name}'"))
    children = body.get("children")
    if children is not None:
        if not isinstance(children, Mapping):
            raise InventoryError(
                f"{where(body, 'children')}: children of group '{name}' must be a mapping "
                f"(got {_kind(children)})",
                hint="write each child group as a key: `children: {web: , db: }`",
            )
        for child, child_body in children.items():
            _add_group(collector, where, children, child, child_body, name, (*stack, id(body)))


def _add_hosts(collector: _Collector, where: _Where, body: Mapping[str, Any], group: str) -> None:
    hosts = body.get("hosts")
    if hosts is None:
        return
    if not isinstance(hosts, Mapping):
        raise InventoryError(
            f"{where(body, 'hosts')}: hosts of group '{group}' must be a mapping "
            f"(got {_kind(hosts)})",
            hint="write each host as a key: `hosts: {app01: , app02: }` or `app01:` per line",
        )
    for pattern, host_vars in hosts.items():
        at = where(hosts, pattern)
        if not isinstance(pattern, str) or not pattern.strip():
            raise InventoryError(
                f"{at}: host names must be non-empty strings (got {pattern!r}) in group '{group}'",
                hint="quote the name",
            )
        try:
            names = hostrange.expand(pattern)
        except hostrange.RangeError as exc:
            raise InventoryError(
                f"{at}: {exc} in group '{group}'",
                hint="a range is [begin:end] or [begin:end:stride], e.g. app[01:25] or db[a:c]",
            ) from None
        checked = _check_vars(host_vars, at, f"host '{pattern}'") if host_vars is not None else {}
        origins = origins_of(host_vars, where.source, f"host '{pattern}'") if checked else None
        for name in names:
            collector.add_host(name, group, checked, origins)


def _add_ec2(collector: _Collector, data: Mapping[str, Any], source: str) -> None:
    from opskit.inventory import ec2  # lazy: pulls in boto3 only when an EC2 source is used

    for found in ec2.discover(data, source):
        checked = _check_vars(found.vars, source, f"EC2 host '{found.name}'")
        origins = origins_of(found.vars, source, f"EC2 host '{found.name}'")
        for group in found.groups:
            collector.add_host(found.name, group, checked, origins)
        if not found.groups:
            collector.add_host(found.name, "all", checked, origins)


def _check_vars(value: Any, at: str, owner: str) -> dict[str, Any]:
    """Validate the vars opskit interprets; return them as plain dicts."""
    if not isinstance(value, Mapping):
        raise InventoryError(
            f"{at}: vars of {owner} must be a mapping (got {_kind(value)})",
            hint="write `name: value` pairs indented under it",
        )
    for key in value:
        if not isinstance(key, str):
            raise InventoryError(f"{at}: var name {key!r} of {owner} is not a string", hint=None)
    _check_connection_vars(value, at, owner)
    for key in DOMAIN_KEYS:
        if value.get(key) is not None and not isinstance(value[key], Mapping):
            raise InventoryError(
                f"{at}: '{key}' of {owner} must be a mapping (got {_kind(value[key])})",
                hint=f"put the {key} settings as `key: value` pairs under `{key}:`",
            )
    return _plain(value)


def _check_connection_vars(value: Mapping[str, Any], at: str, owner: str) -> None:
    port = value.get("ansible_port")
    if port is not None and not _is_port(port):
        raise InventoryError(
            f"{at}: ansible_port of {owner} must be an integer 1-65535 (got {port!r})",
            hint="e.g. `ansible_port: 2222`",
        )
    conn = value.get("ansible_connection")
    if conn is not None and conn not in CONNECTIONS:
        raise InventoryError(
            f"{at}: ansible_connection of {owner} is '{conn}'; opskit supports ssh and local",
            hint="remove it (ssh is the default) or set `ansible_connection: local`",
        )
    for key in STRING_VARS:
        if value.get(key) is not None and not isinstance(value[key], str):
            raise InventoryError(
                f"{at}: {key} of {owner} must be a string (got {value[key]!r})",
                hint="quote the value",
            )


def origins_of(value: Mapping[str, Any], source: str, owner: str) -> dict[str, Origin]:
    """An :class:`Origin` for each var of one declaration (lines where YAML gave them)."""
    lines = getattr(value, "key_lines", None) or {}
    line = getattr(value, "line", None)
    return {k: Origin(source, owner, lines.get(k, line), v) for k, v in value.items()}


def _is_port(port: Any) -> bool:
    if isinstance(port, bool):
        return False
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    return isinstance(port, int) and 1 <= port <= 65535


def _plain(value: Any) -> Any:
    """Deep copy without the line-tracking dict subclass."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


# --------------------------------------------------------------------------- resolution


def _build(collector: _Collector, sources: list[str]) -> Inventory:
    raw = collector.groups
    raw.setdefault("all", _RawGroup())
    raw.setdefault("ungrouped", _RawGroup())
    parents = _parents(raw)
    _check_cycles(collector, parents)
    # Groups nobody claims hang under 'all' (top-level groups, as in Ansible).
    for name in raw:
        if name != "all" and not parents[name]:
            parents[name] = ["all"]
            if name not in raw["all"].children:
                raw["all"].children.append(name)
    depth: dict[str, int] = {"all": 0}
    ancestors: dict[str, set[str]] = {"all": set()}
    for name in raw:
        _resolve(name, parents, depth, ancestors)

    direct: dict[str, list[str]] = {h: [] for h in collector.host_vars}
    for name, group in raw.items():
        for host in group.hosts:
            direct[host].append(name)
    hosts: dict[str, Host] = {}
    for name, host_vars in collector.host_vars.items():
        member_of = {"all"}
        for group in direct[name]:
            member_of |= {group} | ancestors[group]
        if not member_of - {"all", "ungrouped"}:
            member_of.add("ungrouped")
        else:
            member_of.discard("ungrouped")  # explicit 'ungrouped' loses to a real group
        ordered = _ordered_groups(raw, member_of, depth)
        merged = _merge_vars(raw, ordered, host_vars)
        origins: dict[str, Origin] = {}
        for group in ordered:
            origins.update(raw[group].origins)
        origins.update(collector.host_origins.get(name, {}))
        hosts[name] = Host(name=name, vars=merged, groups=tuple(sorted(member_of)),
                           origins=origins)

    ungrouped = [h.name for h in hosts.values() if "ungrouped" in h.groups]
    groups = {
        name: Group(
            name=name,
            hosts=ungrouped if name == "ungrouped" else list(g.hosts),
            children=list(g.children),
            vars=copy.deepcopy(g.vars),
            origins=dict(g.origins),
        )
        for name, g in raw.items()
    }
    if "ungrouped" not in groups["all"].children:
        groups["all"].children.append("ungrouped")
    return Inventory(hosts, groups, sources)


def _parents(raw: Mapping[str, _RawGroup]) -> dict[str, list[str]]:
    parents: dict[str, list[str]] = {name: [] for name in raw}
    for name, group in raw.items():
        for child in group.children:
            parents[child].append(name)
    return parents


def _check_cycles(collector: _Collector, parents: Mapping[str, list[str]]) -> None:
    """Depth-first search over child edges; a back edge is a cycle."""
    raw = collector.groups
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for child in raw[name].children:
            if state.get(child) == 1:
                on_path = [*path, name]
                cycle = [*on_path[on_path.index(child) :], child]
                raise InventoryError(
                    f"{collector.edge_where[(name, child)]}: group cycle " + " → ".join(cycle),
                    hint=f"a group cannot be its own ancestor; remove '{child}' from the "
                    f"children of '{name}'",
                )
            if child not in state:
                visit(child, [*path, name])
        state[name] = 2

    for name in raw:
        if name not in state:
            visit(name, [])


def _resolve(
    name: str,
    parents: Mapping[str, list[str]],
    depth: dict[str, int],
    ancestors: dict[str, set[str]],
) -> None:
    """Depth = longest path from 'all' (Ansible's group depth); ancestors = all parents."""
    if name in depth:
        return
    for parent in parents[name]:
        _resolve(parent, parents, depth, ancestors)
    depth[name] = 1 + max(depth[p] for p in parents[name])
    ancestors[name] = set(parents[name]).union(*(ancestors[p] for p in parents[name]))


def _ordered_groups(
    raw: Mapping[str, _RawGroup], member_of: set[str], depth: Mapping[str, int]
) -> list[str]:
    """all < shallower groups < deeper groups (same depth: by name): Ansible's order."""
    return ["all", *sorted(member_of - {"all"}, key=lambda g: (depth[g], g))]


def _merge_vars(
    raw: Mapping[str, _RawGroup], ordered: list[str], host_vars: Mapping[str, Any]
) -> dict[str, Any]:
    """Group vars in ``ordered`` precedence, then the host's own; dicts replace."""
    merged: dict[str, Any] = {}
    for group in ordered:
        merged.update(raw[group].vars)
    merged.update(host_vars)
    return copy.deepcopy(merged)  # hosts must not share mutable values
