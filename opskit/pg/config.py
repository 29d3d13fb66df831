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
from opskit.runner import choose

if TYPE_CHECKING:
    from opskit.pg.settings import PgbouncerSettings, PostgresSettings

# \Z, not $: "$" also matches before a final newline, and a newline in a value written into
# pgbouncer.ini would start a line (a section, a setting) of its own.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\Z")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?\Z")
DEFAULT_CLUSTER = "main"  # postgres.cluster when unset (pg/settings.py declares the same)


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
    cluster: str = DEFAULT_CLUSTER  # one operator at a time per cluster: the lease's name
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
        raise InventoryError(f"no PostgreSQL node {name!r} in the cluster {self.name}",
                             hint=f"its nodes: {', '.join(n.name for n in self.nodes)}")

    def has(self, name: str) -> bool:
        return any(name in (n.name, n.node_name) for n in self.nodes)

    @property
    def max_lag_bytes(self) -> int:
        return min(n.max_lag_bytes for n in self.nodes)

    @property
    def layout(self) -> str:
        """Where its PgBouncers run: ``per-node`` (one on every database host, each in front
        of its own cluster), ``central`` (hosts of their own) or ``none``."""
        if not self.bouncers:
            return "none"
        nodes = {n.name for n in self.nodes}
        return "per-node" if all(b.name in nodes for b in self.bouncers) else "central"


@dataclass(frozen=True)
class Fleet:
    """The clusters a selection touches, each whole: a selection naming one host of a cluster
    brings in all its nodes (a cluster is judged and acted on whole, never in part).
    ``added``: per cluster, its nodes the selection did not name (status says so)."""

    clusters: tuple[Cluster, ...]
    added: dict[str, tuple[str, ...]]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.clusters]

    def cluster_of(self, host: str) -> Cluster:
        for c in self.clusters:
            if c.has(host):
                return c
        raise InventoryError(f"{host!r} is not a PostgreSQL node of the selection "
                             f"(clusters: {', '.join(self.names)})",
                             hint="name a database host, e.g. "
                             f"{self.clusters[0].nodes[0].name}")

    def only(self, name: str) -> Fleet:
        """This fleet narrowed to the cluster ``name`` (``pg status --cluster``)."""
        c = by_name(self, name)
        return Fleet((c,), {name: self.added.get(name, ())})

    def one(self, *, cluster: str | None = None, hosts: Sequence[str] = ()) -> Cluster:
        """The one cluster a runbook acts on: ``cluster`` (--cluster), else the cluster of
        the ``hosts`` it names (a host argument, --to), else the selection's only one. A
        selection spanning several clusters without naming one is refused: a runbook that
        acts on a cluster must never act on two."""
        named: dict[str, str] = {}
        for h in hosts:
            if h:
                named.setdefault(self.cluster_of(h).name, h)
        if cluster is not None:
            by_name(self, cluster)
        name = choose.one(KIND, self.names, named, cluster,
                          example=f"name one of its hosts (-l {self.clusters[0].nodes[0].name})")
        return by_name(self, name)


KIND = choose.Kind("PostgreSQL cluster", "--cluster", "hosts", "cluster")


def by_name(fleet: Fleet, name: str) -> Cluster:
    """The cluster ``name`` of the selection (--cluster): a one-line error naming the
    selection's clusters otherwise."""
    for c in fleet.clusters:
        if c.name == name:
            return c
    raise InventoryError(f"no PostgreSQL cluster {name!r} in the selection (clusters: "
                         f"{', '.join(fleet.names)})",
                         hint="postgres.cluster names a cluster; `opskit pg status` lists "
                         "them all")


def _raw_cluster(host: Host) -> object:
    """A host's ``postgres.cluster`` as written (unchecked): enough to tell which hosts share
    a cluster without checking the settings of hosts of other clusters."""
    pg = host.vars.get("postgres")
    if not isinstance(pg, dict):
        return None
    return pg.get("cluster", DEFAULT_CLUSTER)


def fleet(inventory: Inventory, hosts: Sequence[Host]) -> Fleet:
    """The clusters of the PostgreSQL nodes among ``hosts``, each with every one of its nodes
    in the inventory, its PgBouncer hosts and its witnesses (no connection: the planning
    step of ``pg status`` and of every runbook)."""
    selected = [node(h) for h in hosts if "postgres" in h.vars]
    if not selected:
        raise InventoryError("none of the selected hosts has postgres settings",
                             hint="select the db hosts, e.g. -l db")
    named = {n.name for n in selected}
    clusters: list[Cluster] = []
    added: dict[str, tuple[str, ...]] = {}
    for name in dict.fromkeys(n.cluster for n in selected):  # first seen first
        members = [node(h) for h in inventory.hosts.values() if _raw_cluster(h) == name]
        c = _cluster(inventory, tuple(n for n in members if n.cluster == name))
        clusters.append(c)
        added[name] = tuple(n.name for n in c.nodes if n.name not in named)
    return Fleet(tuple(clusters), added)


def load(inventory: Inventory, hosts: Sequence[Host], *, cluster: str | None = None,
         named: Sequence[str] = ()) -> Cluster:
    """The one cluster of a runbook (:meth:`Fleet.one`): ``cluster`` or the cluster of the
    ``named`` hosts, else the selection's only one."""
    return fleet(inventory, hosts).one(cluster=cluster, hosts=named)


def _cluster(inventory: Inventory, nodes: tuple[PgNode, ...]) -> Cluster:
    """A cluster's nodes with the PgBouncer hosts and witnesses they name."""
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
