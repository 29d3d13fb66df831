"""The inventory: hosts, groups and their vars, loaded the way Ansible reads an inventory.

Public entry point for the rest of opskit::

    inv = load("inventory/production.yml")        # a file, a directory, a script, EC2
    for host in inv.select("app*:!app01"):        # --limit patterns (opskit.inventory.patterns)
        host.address, host.user, host.domain("deploy")

Which reader takes a file follows Ansible's order of inventory plugins: an executable file is a
script (json_source.py: run with --list); a ``.yml`` / ``.yaml`` / ``.json`` file is YAML
(yaml_source.py; ``source: ec2`` → ec2.py; ``ansible-inventory --list`` JSON →
json_source.py); a file without extension is YAML if it parses as a YAML mapping, else INI
(ini.py); any other file is INI. A directory is read file by file, as Ansible does.

Loading happens in two steps: every source adds its raw facts (groups, edges, direct members,
vars, each with where it was declared) to a :class:`~opskit.inventory.collect.Collector`,
then group_vars/ and host_vars/ beside it are read (vars_dirs.py); :func:`_build` checks the
group graph for cycles and merges vars with Ansible's precedence:

    all's inventory vars < other groups' inventory vars < group_vars/all
    < group_vars/<group> < inventory host vars < host_vars/<host>

(groups by depth, then name, as in Ansible; dict values are replaced, not merged). Every var
passes the checks of collect.check_vars and refuse.py where it is declared.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opskit.errors import InventoryError
from opskit.inventory import ini, json_source, refuse, ssh_args, vars_dirs
from opskit.inventory.collect import Collector, RawGroup, origins_of
from opskit.inventory.model import Group, Host, Inventory
from opskit.inventory.origin import Origin
from opskit.inventory.yaml_source import (
    ALIAS_BUDGET,
    MISSING_HINT,
    add_document,
    parse_yaml,
    read_text,
)

__all__ = ["ALIAS_BUDGET", "from_dict", "load", "loads", "origins_of"]

YAML_EXTENSIONS = (".yml", ".yaml", ".json")  # Ansible's yaml plugin's extensions
# A directory's files Ansible skips (INVENTORY_IGNORE_EXTS) and the names it never reads as
# inventories; opskit also skips dotfiles and *.example.yml (templates such as
# inventory/ec2.example.yml).
IGNORED_EXTENSIONS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst",
                      ".orig", ".cfg", ".retry")
IGNORED_NAMES = ("group_vars", "host_vars", "vars_plugins")


# --------------------------------------------------------------------------- loading


def load(path: str | os.PathLike[str], *, discover: bool = True) -> Inventory:
    """Load an inventory file (YAML, INI, --list JSON, script, EC2 source) or a directory of
    them (merged), with the group_vars/ and host_vars/ beside it.

    ``discover=False`` (``inventory check``): an EC2 source is checked but not queried; the
    inventory then has no hosts from it and lists its declared vars in ``undiscovered``.
    """
    root = Path(path)
    if root.is_dir():
        files = _directory(root, top=True)
        if not files:
            raise InventoryError(
                f"{root}: no *.yml, *.yaml, *.json, INI or script inventory files in this "
                "directory", hint=MISSING_HINT)
        basedir = root
    elif root.is_file():
        files = [root]
        basedir = root.parent
    else:
        raise InventoryError(f"inventory not found: {root}", hint=MISSING_HINT)
    collector = Collector(discover=discover)
    for file in files:
        _add_file(collector, file)
    vars_dirs.add(collector, basedir)
    return _build(collector, [str(f) for f in files])


def loads(text: str, source: str = "<string>") -> Inventory:
    """Load an inventory from YAML (or --list JSON) text (tests and tools that generate
    inventories); no group_vars/ or host_vars/."""
    collector = Collector()
    _add_parsed(collector, parse_yaml(text, source), source)
    return _build(collector, [source])


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Inventory:
    """Build an inventory from already-parsed YAML or --list data (same rules as a file)."""
    collector = Collector()
    _add_parsed(collector, data, source)
    return _build(collector, [source])


def _directory(root: Path, top: bool) -> list[Path]:
    """The inventory files of a directory, sorted, subdirectories included (as Ansible)."""
    files: list[Path] = []
    for name in sorted(os.listdir(root)):
        full = root / name
        if name in IGNORED_NAMES:
            if not top and full.is_dir():
                # Ansible reads group_vars/ only beside the -i path: these would be ignored.
                raise InventoryError(
                    f"{full}: {name}/ in a subdirectory of the inventory directory is not read "
                    f"(Ansible reads only the {name}/ beside the path given with -i)",
                    hint=f"move its files to {name}/ at the top of the inventory directory")
            continue
        if name.startswith(".") or name.endswith(IGNORED_EXTENSIONS) or \
                name.endswith((".example.yml", ".example.yaml")):
            continue
        if full.is_dir():
            files.extend(_directory(full, top=False))
        elif full.is_file():
            files.append(full)
    return files


def _add_file(collector: Collector, file: Path) -> None:
    source = str(file)
    if os.access(file, os.X_OK):
        try:
            listing = json_source.run(source, ["--list"])
        except json_source.NotAProgram:
            pass  # no #! line: a file with the executable bit, read by its extension
        else:
            json_source.add_script(collector, source, listing)
            return
    ext = file.suffix.lower()
    if ext == ".toml":
        raise InventoryError(f"{file}: TOML inventories are not supported",
                             hint="convert it to YAML or INI")
    if ext in YAML_EXTENSIONS:
        text = read_text(file)
        refuse.refuse_vaulted_file(source, text)
        _add_parsed(collector, parse_yaml(text, source), source)
        return
    lines = ini.decode(_read_bytes(file), source)
    refuse.refuse_vaulted_file(source, "\n".join(lines[:1]))
    if ext == "":
        # Ansible's yaml plugin also takes files without an extension, when they are a YAML
        # mapping; anything else falls through to the ini plugin.
        try:
            data = parse_yaml("\n".join(lines), source)
        except InventoryError:
            data = None
        if isinstance(data, Mapping):
            _add_parsed(collector, data, source)
            return
    ini.add(collector, lines, source)


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise InventoryError(f"{file}: cannot read: {exc.strerror}", hint=MISSING_HINT) from exc


def _add_parsed(collector: Collector, data: Any, source: str) -> None:
    if json_source.is_list_format(data, source.endswith(".json")):
        json_source.add(collector, data, source)
    else:
        add_document(collector, data, source)


# --------------------------------------------------------------------------- resolution


def _build(collector: Collector, sources: list[str]) -> Inventory:
    raw = collector.groups
    raw.setdefault("all", RawGroup())
    raw.setdefault("ungrouped", RawGroup())
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
        merged: dict[str, Any] = {}
        origins: dict[str, Origin] = {}
        for layer_vars, layer_origins in _layers(collector, ordered, name, host_vars):
            merged.update(layer_vars)
            origins.update(layer_origins)
        host = Host(name=name, vars=copy.deepcopy(merged),  # hosts must not share values
                    groups=tuple(sorted(member_of)), origins=origins)
        if ssh_args.COMMON in merged or ssh_args.EXTRA in merged:
            _check_ssh_args(host)
        hosts[name] = host

    ungrouped = [h.name for h in hosts.values() if "ungrouped" in h.groups]
    groups = {
        name: Group(
            name=name,
            hosts=ungrouped if name == "ungrouped" else list(g.hosts),
            children=list(g.children),
            vars=copy.deepcopy({**g.vars, **collector.group_files.get(name, ({}, {}))[0]}),
            origins={**g.origins, **collector.group_files.get(name, ({}, {}))[1]},
        )
        for name, g in raw.items()
    }
    if "ungrouped" not in groups["all"].children:
        groups["all"].children.append("ungrouped")
    return Inventory(hosts, groups, sources, undiscovered=collector.undiscovered)


def _parents(raw: Mapping[str, RawGroup]) -> dict[str, list[str]]:
    parents: dict[str, list[str]] = {name: [] for name in raw}
    for name, group in raw.items():
        for child in group.children:
            parents[child].append(name)
    return parents


def _check_cycles(collector: Collector, parents: Mapping[str, list[str]]) -> None:
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
    raw: Mapping[str, RawGroup], member_of: set[str], depth: Mapping[str, int]
) -> list[str]:
    """all < shallower groups < deeper groups (same depth: by name): Ansible's order."""
    return ["all", *sorted(member_of - {"all"}, key=lambda g: (depth[g], g))]


def _layers(collector: Collector, ordered: list[str], host: str,
            host_vars: dict[str, Any]) -> list[tuple[Mapping[str, Any], Mapping[str, Origin]]]:
    """One host's vars, lowest precedence first, as Ansible's VariableManager merges them
    (its default ``precedence``: all_inventory, groups_inventory, all_plugins_inventory,
    groups_plugins_inventory; then the host's own, then host_vars/)."""
    raw = collector.groups
    layers: list[tuple[Mapping[str, Any], Mapping[str, Origin]]] = [
        (raw[g].vars, raw[g].origins) for g in ordered]
    layers.extend(collector.group_files[g] for g in ordered if g in collector.group_files)
    layers.append((host_vars, collector.host_origins.get(host, {})))
    if host in collector.host_files:
        layers.append(collector.host_files[host])
    return layers


def _check_ssh_args(host: Host) -> None:
    """ssh args that contradict the plain vars (every extra known_hosts file is read)."""
    common = host.origins.get(ssh_args.COMMON) or host.origins.get(ssh_args.EXTRA)
    at = common.where() if common else f"host '{host.name}'"
    try:
        opts = ssh_args.options(host.vars.get(ssh_args.COMMON), host.vars.get(ssh_args.EXTRA))
    except ssh_args.SshArgsError as exc:
        raise InventoryError(f"{at}: {exc.message} (host '{host.name}')", hint=exc.hint) \
            from None
    plain = (("port", "ansible_port", opts.port), ("user", "ansible_user", opts.user),
             ("key_file", "ansible_ssh_private_key_file", opts.key_file))
    for what, var, from_args in plain:
        value = host.vars.get(var)
        if from_args is None or value is None:
            continue
        if var == "ansible_port":
            value = int(value)
        elif var == "ansible_ssh_private_key_file":
            value = os.path.expanduser(value)
        if value != from_args:
            declared = host.origins.get(var)
            there = f" ({declared.where()})" if declared else ""
            raise InventoryError(
                f"{at}: ssh args set {what} {from_args!r} but {var} is {value!r}{there} for "
                f"host '{host.name}'", hint=f"keep one: remove it from the ssh args or {var}")
