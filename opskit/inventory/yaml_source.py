"""Ansible-style YAML inventories: parsing (line numbers kept, alias bombs and duplicate keys
refused, ``!vault`` / ``!unsafe`` understood) and the group walk (``all`` / ``children`` /
``hosts`` / ``vars``), as Ansible's yaml inventory plugin reads them.

The parser is also used for group_vars/ and host_vars/ files and ``--list`` JSON files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from opskit.errors import InventoryError
from opskit.inventory import hostport, refuse
from opskit.inventory.collect import Collector, check_vars, kind, origins_of
from opskit.inventory.origin import Origin

GROUP_KEYS = ("hosts", "children", "vars")
MISSING_HINT = "pass -i PATH or set OPSKIT_INVENTORY"


def read_text(path: Path) -> str:
    """A file's text, or a one-line error (not UTF-8, unreadable)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{path}: not UTF-8 text ({exc.reason})", hint=MISSING_HINT) from exc
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read: {exc.strerror}", hint=MISSING_HINT) from exc


def read_yaml(path: Path) -> Any:
    text = read_text(path)
    refuse.refuse_vaulted_file(str(path), text)
    return parse_yaml(text, str(path))


class Marked(dict):  # type: ignore[type-arg]
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
    data = Marked()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    data.update(loader.construct_mapping(node))
    for key_node, _ in node.value:
        try:
            data.key_lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1
        except TypeError:  # an unhashable key; construct_mapping already complained
            pass




def _construct_vault(loader: Any, node: yaml.Node) -> refuse.Vaulted:
    # Kept as a marker so the refusal can name the var (the constructor does not know it).
    return refuse.Vaulted(node.start_mark.line + 1)


def _construct_unsafe(loader: Any, node: yaml.Node) -> Any:
    value = loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None
    if value is None:
        raise _RefusedYAML("!unsafe is supported on strings only", node.start_mark,
                           "write the value as a plain string")
    return refuse.Unsafe(value)


def _add_constructors(cls: type) -> None:
    cls.add_constructor("tag:yaml.org,2002:map", _construct_map)  # type: ignore[attr-defined]
    for tag in ("!vault", "!vault-encrypted"):
        cls.add_constructor(tag, _construct_vault)  # type: ignore[attr-defined]
    cls.add_constructor("!unsafe", _construct_unsafe)  # type: ignore[attr-defined]


_add_constructors(_Loader)

if hasattr(yaml, "CSafeLoader"):

    class _FastLoader(_Bounded, yaml.CSafeLoader):  # type: ignore[misc, name-defined]
        """libyaml parsing, same constructors; used first because it is ~10x faster."""

    _add_constructors(_FastLoader)
    _LOADERS: tuple[type, ...] = (_FastLoader, _Loader)
else:  # pragma: no cover - PyYAML built without libyaml
    _LOADERS = (_Loader,)


def parse_yaml(text: str, source: str) -> Any:
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




# --------------------------------------------------------------------------- the group walk


class Where:
    """Formats 'file line N' for a mapping key, when the line is known."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, mapping: Any = None, key: Any = None) -> str:
        line = None
        if isinstance(mapping, Marked):
            line = mapping.key_lines.get(key, mapping.line) if key is not None else mapping.line
        return f"{self.source} line {line}" if line else self.source


def add_document(collector: Collector, data: Any, source: str) -> None:
    """Add one parsed file: an EC2 source or Ansible-style groups."""
    where = Where(source)
    if data is None:
        return  # an empty file is an empty inventory, as in Ansible
    if not isinstance(data, Mapping):
        raise InventoryError(
            f"{where(data)}: the top level must be a mapping of groups (got {kind(data)})",
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
        add_ec2(collector, data, source)
        return
    for name, body in data.items():
        _add_group(collector, where, data, name, body, parent=None, stack=())


def _add_group(
    collector: Collector,
    where: Where,
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
            f"{at}: group '{name}' must be a mapping of hosts/children/vars (got {kind(body)})",
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
        group_vars = check_vars(body["vars"], vars_at, f"group '{name}'", source=where.source)
        collector.set_group_vars(name, group_vars,
                                 origins_of(body["vars"], where.source, f"group '{name}'"))
    children = body.get("children")
    if children is not None:
        if not isinstance(children, Mapping):
            raise InventoryError(
                f"{where(body, 'children')}: children of group '{name}' must be a mapping "
                f"(got {kind(children)})",
                hint="write each child group as a key: `children: {web: , db: }`",
            )
        for child, child_body in children.items():
            _add_group(collector, where, children, child, child_body, name, (*stack, id(body)))


def _add_hosts(collector: Collector, where: Where, body: Mapping[str, Any], group: str) -> None:
    hosts = body.get("hosts")
    if hosts is None:
        return
    if not isinstance(hosts, Mapping):
        raise InventoryError(
            f"{where(body, 'hosts')}: hosts of group '{group}' must be a mapping "
            f"(got {kind(hosts)})",
            hint="write each host as a key: `hosts: {app01: , app02: }` or `app01:` per line",
        )
    for pattern, host_vars in hosts.items():
        at = where(hosts, pattern)
        if not isinstance(pattern, str) or not pattern.strip():
            raise InventoryError(
                f"{at}: host names must be non-empty strings (got {pattern!r}) in group '{group}'",
                hint="quote the name",
            )
        names, port = hostport.expand(pattern, at, group)
        owner = f"host '{pattern}'"
        checked = check_vars(host_vars, at, owner, source=where.source) \
            if host_vars is not None else {}
        origins = origins_of(host_vars, where.source, owner) if checked else None
        line = getattr(hosts, "key_lines", {}).get(pattern)
        port_origin = {"ansible_port": Origin(where.source, owner, line, port)}
        for name in names:
            if port is not None and name not in collector.host_vars:
                # 'db1:2222' sets ansible_port when it creates the host, as in Ansible.
                collector.add_host(name, group, {"ansible_port": port}, port_origin)
            collector.add_host(name, group, checked, origins)


def add_ec2(collector: Collector, data: Mapping[str, Any], source: str) -> None:
    from opskit.inventory import ec2  # lazy: pulls in boto3 only when an EC2 source is used

    if not collector.discover:
        config = ec2.parse_config(data, source)  # every key checked, no AWS call
        # What discovery would give every host: the file's aws: (plus the region) and vars:.
        aws_vars = {**config.aws, "region": config.regions[0]}
        declared = {"aws": aws_vars, **config.vars}
        checked = check_vars(declared, source, "EC2 source", templates=False)
        origins = origins_of(data.get("vars") or {}, source, "EC2 source 'vars'")
        origins["aws"] = Origin(source, "EC2 source 'aws'", getattr(data, "key_lines", {})
                                .get("aws"), checked["aws"])
        collector.undiscovered.append(origins)
        return
    for found in ec2.discover(data, source):
        checked = check_vars(found.vars, source, f"EC2 host '{found.name}'", templates=False)
        origins = origins_of(found.vars, source, f"EC2 host '{found.name}'")
        for group in found.groups:
            collector.add_host(found.name, group, checked, origins)
        if not found.groups:
            collector.add_host(found.name, "all", checked, origins)


