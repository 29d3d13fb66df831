"""The ``postgres:`` and ``pgbouncer:`` inventory vars, checked before anything runs.

A db host takes part when its vars have ``postgres``; its repmgr node name is the inventory
host name unless ``postgres.node_name`` says otherwise. The PgBouncer hosts are the
inventory pattern in ``postgres.pgbouncer``; each has ``pgbouncer`` vars.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opskit.errors import InventoryError
from opskit.inventory import Host, Inventory

# \Z, not $: "$" also matches before a final newline, and a newline in a value written into
# pgbouncer.ini would start a line (a section, a setting) of its own.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\Z")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?\Z")


def is_host_address(value: object) -> bool:
    """A DNS host name (RFC 1123) or an IPv4/IPv6 literal: nothing else reaches an ini."""
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(value))


def _address(host: Host) -> str:
    if not is_host_address(host.address):
        raise InventoryError(f"host {host.name}: ansible_host {host.address!r} is not a host "
                             "name or an IP address",
                             hint="e.g. ansible_host: 10.0.1.12 or db1.internal")
    return host.address


@dataclass(frozen=True)
class PgNode:
    host: Host
    node_name: str
    port: int
    bindir: str
    data_directory: str
    repmgr_conf: str
    os_user: str
    socket_dir: str
    dbname: str
    app_user: str
    max_lag_bytes: int
    pgbouncer: str | None
    repmgr_user: str = "repmgr"
    repmgr_db: str = "repmgr"
    cluster: str = "main"  # one operator at a time per cluster: the lease's name
    witnesses: str | None = None  # inventory pattern: extra lock hosts (docs/postgres.md)

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def address(self) -> str:
        return self.host.address

    def conninfo(self) -> str:
        """How other nodes reach this one (repmgr's own conninfo format)."""
        return (f"host={self.address} port={self.port} user={self.repmgr_user} "
                f"dbname={self.repmgr_db} connect_timeout=2")

    def bin(self, program: str) -> str:
        return posixpath.join(self.bindir, program)


@dataclass(frozen=True)
class BouncerNode:
    host: Host
    ini: str
    port: int
    admin_user: str
    os_user: str
    databases: tuple[str, ...]
    psql: str = "psql"

    @property
    def name(self) -> str:
        return self.host.name


def _get(host: Host, section: dict[str, Any], key: str, kind: type, default: Any = None,
         where: str = "postgres") -> Any:
    value = section.get(key, default)
    if value is None:
        raise InventoryError(f"host {host.name}: {where}.{key} is missing",
                             hint=f"set {where}: {{{key}: ...}} in the inventory "
                                  "(docs/postgres.md)")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InventoryError(f"host {host.name}: {where}.{key} must be a number, "
                                 f"got {value!r}")
        if key == "port" and not 1 <= value <= 65535:
            raise InventoryError(f"host {host.name}: {where}.port must be 1-65535, "
                                 f"got {value!r}", hint="e.g. port: 5432")
        return value
    if kind is str and not isinstance(value, str):
        raise InventoryError(f"host {host.name}: {where}.{key} must be a string, got {value!r}")
    if key.endswith(("dir", "directory", "conf", "ini")) and not str(value).startswith("/"):
        raise InventoryError(f"host {host.name}: {where}.{key} must be an absolute path, "
                             f"got {value!r}")
    return value


def node(host: Host) -> PgNode:
    pg = host.vars.get("postgres")
    if not isinstance(pg, dict):
        raise InventoryError(f"host {host.name} has no postgres settings",
                             hint="select db hosts with postgres vars, e.g. -l db")
    name = str(pg.get("node_name") or host.name)
    if not _NAME.match(name):
        raise InventoryError(f"host {host.name}: postgres.node_name {name!r} is not a plain name")
    bindir = _get(host, pg, "bindir", str, "/usr/lib/postgresql/15/bin")
    _address(host)  # it is written into pgbouncer.ini at a failover: refuse it now
    dbname = _get(host, pg, "dbname", str, "postgres")
    if not _NAME.match(dbname):
        raise InventoryError(f"host {host.name}: postgres.dbname {dbname!r} is not a plain "
                             "name", hint="letters, digits, _ . - (e.g. dbname: app)")
    return PgNode(
        host=host, node_name=name,
        port=_get(host, pg, "port", int, 5432),
        bindir=bindir,
        data_directory=_get(host, pg, "data_directory", str),
        repmgr_conf=_get(host, pg, "repmgr_conf", str, "/etc/repmgr.conf"),
        os_user=_get(host, pg, "os_user", str, "postgres"),
        socket_dir=_get(host, pg, "socket_dir", str, "/var/run/postgresql"),
        dbname=dbname,
        app_user=_get(host, pg, "app_user", str, "postgres"),
        max_lag_bytes=_get(host, pg, "max_lag_bytes", int, 16 * 1024 * 1024),
        pgbouncer=pg.get("pgbouncer"),
        repmgr_user=_get(host, pg, "repmgr_user", str, "repmgr"),
        repmgr_db=_get(host, pg, "repmgr_db", str, "repmgr"),
        cluster=_plain(host, pg, "cluster", "main"),
        witnesses=pg.get("witnesses"),
    )  # fmt: skip


def _plain(host: Host, section: dict[str, Any], key: str, default: str) -> str:
    value = _get(host, section, key, str, default)
    if not _NAME.match(value):
        raise InventoryError(f"host {host.name}: postgres.{key} {value!r} is not a plain name",
                             hint="letters, digits, _ . - (e.g. cluster: users)")
    return str(value)


def bouncer(host: Host) -> BouncerNode:
    pb = host.vars.get("pgbouncer")
    if not isinstance(pb, dict):
        raise InventoryError(f"host {host.name} is named as a PgBouncer host but has no "
                             f"pgbouncer settings", hint="set pgbouncer: {ini: ..., port: 6432}")
    dbs = pb.get("databases") or []
    if not isinstance(dbs, list) or not dbs or not all(
            isinstance(d, str) and _NAME.match(d) for d in dbs):
        raise InventoryError(f"host {host.name}: pgbouncer.databases must list the [databases] "
                             f"entries to re-point, got {dbs!r}", hint="e.g. databases: [app]")
    return BouncerNode(
        host=host,
        ini=_get(host, pb, "ini", str, where="pgbouncer"),
        port=_get(host, pb, "port", int, 6432, where="pgbouncer"),
        admin_user=_get(host, pb, "admin_user", str, "pgbouncer", where="pgbouncer"),
        os_user=_get(host, pb, "os_user", str, "postgres", where="pgbouncer"),
        databases=tuple(dbs),
        psql=_get(host, pb, "psql", str, "psql", where="pgbouncer"),
    )


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[PgNode, ...]
    bouncers: tuple[BouncerNode, ...]
    witnesses: tuple[Host, ...] = ()

    @property
    def name(self) -> str:
        return self.nodes[0].cluster

    @property
    def lock_hosts(self) -> list[Host]:
        """Where the cluster's lease is held: its nodes, PgBouncer hosts and witnesses, so
        that a two-node shard keeps a majority with its primary down."""
        seen: dict[str, Host] = {}
        for h in [*(n.host for n in self.nodes), *(b.host for b in self.bouncers),
                  *self.witnesses]:
            seen.setdefault(h.name, h)
        return [seen[k] for k in sorted(seen)]

    def node(self, name: str) -> PgNode:
        for n in self.nodes:
            if name in (n.name, n.node_name):
                return n
        raise InventoryError(f"no PostgreSQL node {name!r} in the selection",
                             hint=f"nodes: {', '.join(n.name for n in self.nodes)}")

    @property
    def max_lag_bytes(self) -> int:
        return min(n.max_lag_bytes for n in self.nodes)


def load(inventory: Inventory, hosts: Sequence[Host]) -> Cluster:
    """The PostgreSQL nodes among ``hosts`` and the PgBouncer hosts they name."""
    nodes = tuple(node(h) for h in hosts if "postgres" in h.vars)
    if not nodes:
        raise InventoryError("none of the selected hosts has postgres settings",
                             hint="select the db hosts, e.g. -l db")
    names = sorted({n.cluster for n in nodes})
    if len(names) > 1:
        raise InventoryError(f"the selected nodes belong to {len(names)} clusters: "
                             f"{', '.join(names)}", hint="select one cluster's nodes, e.g. "
                             f"-l {names[0]} (postgres.cluster names it)")
    witnesses: dict[str, Host] = {}
    for pattern in sorted({n.witnesses for n in nodes if n.witnesses}):
        for h in inventory.select(str(pattern)):
            witnesses.setdefault(h.name, h)
    patterns = sorted({n.pgbouncer for n in nodes if n.pgbouncer})
    bouncers: list[BouncerNode] = []
    for pattern in patterns:
        for h in inventory.select(pattern):
            if h.name not in {b.name for b in bouncers}:
                bouncers.append(bouncer(h))
    return Cluster(nodes, tuple(bouncers), tuple(witnesses.values()))
