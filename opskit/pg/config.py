"""The ``postgres:`` and ``pgbouncer:`` inventory vars, checked before anything runs.

A db host takes part when its vars have ``postgres``; its repmgr node name is the inventory
host name unless ``postgres.node_name`` says otherwise. The PgBouncer hosts are the
inventory pattern in ``postgres.pgbouncer``; each has ``pgbouncer`` vars. The values are
declared and checked in :mod:`opskit.pg.settings` (through :func:`opskit.settings.of`); what
needs the host too (its address, its name as the node name) is checked here.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from opskit import settings
from opskit.errors import InventoryError
from opskit.inventory import Host, Inventory

if TYPE_CHECKING:
    from opskit.pg.settings import PgbouncerSettings, PostgresSettings

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


def node(host: Host) -> PgNode:
    """``host``'s PostgreSQL node, its ``postgres:`` settings checked (opskit.pg.settings)."""
    if not isinstance(host.vars.get("postgres"), dict):
        raise InventoryError(f"host {host.name} has no postgres settings",
                             hint="select db hosts with postgres vars, e.g. -l db")
    pg = cast("PostgresSettings", settings.of(host, "postgres"))
    name = pg.node_name or host.name
    if not _NAME.match(name):
        raise InventoryError(f"host {host.name}: the repmgr node name {name!r} (the host "
                             "name) is not a plain name",
                             hint="set postgres.node_name: letters, digits, _ . -")
    _address(host)  # it is written into pgbouncer.ini at a failover: refuse it now
    return PgNode(
        host=host, node_name=name, port=pg.port, bindir=pg.bindir,
        data_directory=pg.data_directory, repmgr_conf=pg.repmgr_conf, os_user=pg.os_user,
        socket_dir=pg.socket_dir, app_user=pg.app_user,
        max_lag_bytes=pg.max_lag_bytes, pgbouncer=pg.pgbouncer, repmgr_user=pg.repmgr_user,
        repmgr_db=pg.repmgr_db, cluster=pg.cluster, witnesses=pg.witnesses,
    )


def bouncer(host: Host) -> BouncerNode:
    """``host``'s PgBouncer, its ``pgbouncer:`` settings checked (opskit.pg.settings)."""
    if host.vars.get("pgbouncer") is None:
        raise InventoryError(f"host {host.name} is named as a PgBouncer host but has no "
                             f"pgbouncer settings", hint="set pgbouncer: {ini: ..., port: 6432}")
    pb = cast("PgbouncerSettings", settings.of(host, "pgbouncer"))
    return BouncerNode(host=host, ini=pb.ini, port=pb.port, admin_user=pb.admin_user,
                       os_user=pb.os_user, databases=tuple(pb.databases), psql=pb.psql)


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
