"""The inventory model: hosts with their merged vars, groups as declared, selection by
--limit pattern. Built by ``opskit.inventory.loader``; read by everything else."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opskit.errors import InventoryError
from opskit.inventory import patterns, ssh_args
from opskit.inventory.origin import Origin

CONNECTIONS = {"ssh": "ssh", "smart": "ssh", "paramiko": "ssh", "local": "local"}
_NO_SSH_ARGS = ssh_args.SshOptions()


@dataclass
class Host:
    """One host with its fully merged vars and every group it belongs to."""

    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ("all",)
    # Where each var's winning value was declared (file, line, group or host): for errors.
    origins: dict[str, Origin] = field(default_factory=dict, repr=False, compare=False)

    # Hosts are keyed by name in runner results and sets; equal names mean the same host.
    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host") or self.name)

    @property
    def port(self) -> int | None:
        port = self.vars.get("ansible_port")
        if port is None:
            port = self._ssh().port
        return int(port) if port is not None else None

    @property
    def user(self) -> str | None:
        return self.vars.get("ansible_user") or self._ssh().user or None

    @property
    def key_file(self) -> str | None:
        path = self.vars.get("ansible_ssh_private_key_file") or self._ssh().key_file
        return os.path.expanduser(path) if path else None

    @property
    def connection(self) -> str:
        return CONNECTIONS.get(self.vars.get("ansible_connection") or "ssh", "ssh")

    @property
    def known_hosts(self) -> str | None:
        """The first extra known_hosts file (connections read all: known_hosts_files)."""
        files = self.known_hosts_files
        return files[0] if files else None

    @property
    def known_hosts_files(self) -> list[str]:
        """Every extra known_hosts file: opskit_known_hosts, then ssh args'
        ``-o UserKnownHostsFile=`` (``~`` expanded, duplicates dropped)."""
        path = self.vars.get("opskit_known_hosts")
        files = [os.path.expanduser(path)] if path else []
        for extra in self._ssh().known_hosts:
            if extra not in files:
                files.append(extra)
        return files

    def _ssh(self) -> ssh_args.SshOptions:
        """The honoured options of ansible_ssh_common_args / _extra_args (parsed once per
        distinct text; the loader has already refused what opskit does not honour)."""
        common = self.vars.get(ssh_args.COMMON)
        extra = self.vars.get(ssh_args.EXTRA)
        if not common and not extra:
            return _NO_SSH_ARGS
        try:
            return ssh_args.options(common, extra)
        except ssh_args.SshArgsError as exc:
            raise InventoryError(f"host {self.name}: {exc.message}", hint=exc.hint) from None

    def domain(self, key: str) -> dict[str, Any]:
        """The settings of one domain, e.g. ``host.domain('deploy')``; {} when unset."""
        return self.vars.get(key) or {}


@dataclass
class Group:
    """A group as declared: direct hosts (file order), child groups, its own vars."""

    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    # Where each of its vars was declared: `inventory check` checks a group's settings even
    # where every member overrides them (a typo there must not wait for a new member).
    origins: dict[str, Origin] = field(default_factory=dict, repr=False, compare=False)


class Inventory:
    """Hosts (in file order) and groups (always including 'all' and 'ungrouped')."""

    def __init__(self, hosts: dict[str, Host], groups: dict[str, Group], sources: list[str],
                 undiscovered: list[dict[str, Origin]] | None = None):
        self.hosts = hosts
        self.groups = groups
        self.sources = sources
        # The vars an EC2 source would give its hosts, when loaded without discovery.
        self.undiscovered = undiscovered or []
        self._members: dict[str, list[str]] = {name: [] for name in groups}
        for host in hosts.values():
            for group in host.groups:
                self._members.setdefault(group, []).append(host.name)

    def __repr__(self) -> str:
        return f"<Inventory {len(self.hosts)} hosts, {len(self.groups)} groups from {self.sources}>"

    def members(self, group: str) -> list[Host]:
        """Every host of ``group``, descendants' included, in inventory order."""
        return [self.hosts[h] for h in self._members.get(group, [])]

    def select(self, pattern: str | None) -> list[Host]:
        """Hosts matching a --limit pattern (see opskit.inventory.patterns); raises PatternError."""
        names = patterns.select(pattern, list(self.hosts), self._members)
        return [self.hosts[n] for n in names]

    def graph(self) -> dict[str, Any]:
        """``{'name', 'hosts', 'children'}`` tree from 'all' for --graph rendering.

        Children are sorted by name (as ansible-inventory --graph does); 'all' lists no
        hosts itself, its hosts outside any group appear under 'ungrouped'.
        """
        return self._graph_node("all")

    def _graph_node(self, name: str) -> dict[str, Any]:
        group = self.groups[name]
        children = [c for c in sorted(group.children) if c != "ungrouped" or self.groups[c].hosts]
        return {
            "name": name,
            "hosts": [] if name == "all" else list(group.hosts),
            "children": [self._graph_node(c) for c in children],
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dump: hosts with groups and merged vars, groups as declared."""
        return {
            "hosts": {
                h.name: {"groups": list(h.groups), "vars": _jsonable(h.vars)}
                for h in self.hosts.values()
            },
            "groups": {
                g.name: {
                    "hosts": list(g.hosts),
                    "children": list(g.children),
                    "vars": _jsonable(g.vars),
                }
                for g in self.groups.values()
            },
        }



def _jsonable(value: Any) -> Any:
    """YAML can yield dates, sets and bytes; JSON cannot carry them as such."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_jsonable(v) for v in items]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
