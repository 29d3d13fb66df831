"""The ``postgres:`` and ``pgbouncer:`` settings (read by :mod:`opskit.pg.config`).

Names that reach a command line, a conninfo string or pgbouncer.ini (users, databases, the
repmgr node and cluster names) are plain names: a space would add a conninfo keyword, a newline
a line of pgbouncer.ini. What depends on the host itself (its address, which is written into
pgbouncer.ini at a failover) is checked in the config module.

This module imports pydantic: import it only through :func:`opskit.settings.of`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from opskit.settings.base import (
    AbsPath,
    Distinct,
    Field,
    PatternMarker,
    PlainName,
    Port,
    Settings,
    Text,
)


def _not_negative(value: int) -> int:
    if value < 0:
        raise ValueError(f"must be 0 or more (got {value!r})")
    return value


def _databases(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must list the [databases] entries to re-point, e.g. [app]")
    return value


def _pattern(value: str | None) -> str | None:
    if value is not None and "\0" in value:
        raise ValueError("must not contain NUL")
    return value


Bytes = Annotated[int, AfterValidator(_not_negative)]
# An optional inventory pattern (null: none, e.g. to drop a YAML anchor's value). The marker is
# on the field itself, not inside the union, so ``inventory check`` resolves it.
MaybePattern = Annotated[str | None, AfterValidator(_pattern), PatternMarker()]
Databases = Annotated[list[PlainName], AfterValidator(_databases), Distinct]


class PostgresSettings(Settings):
    """A PostgreSQL node managed with repmgr: how opskit reaches its server and tools."""

    data_directory: AbsPath = Field(description="The server's data directory (pg_ctl -D, "
                                    "pg_controldata; health measures it against RAM).")
    node_name: PlainName | None = Field(None, description="The node's name in repmgr "
                                        "(repmgr.nodes), when it is not the inventory host "
                                        "name.")
    port: Port = Field(5432, description="The server's port, on the local socket and in the "
                       "address other nodes and PgBouncer use.")
    bindir: AbsPath = Field("/usr/lib/postgresql/15/bin", description="Directory of psql, "
                            "pg_ctl, pg_controldata and repmgr on the host.")
    repmgr_conf: AbsPath = Field("/etc/repmgr.conf", description="The node's repmgr.conf "
                                 "(repmgr -f).")
    os_user: PlainName = Field("postgres", description="The OS user that runs the server; "
                               "psql, pg_ctl and repmgr run as it (runuser, or sudo -n -u).")
    socket_dir: AbsPath = Field("/var/run/postgresql", description="Directory of the server's "
                                "Unix socket, where opskit's psql connects (psql -h).")
    app_user: PlainName = Field("postgres", description="The database user the write check "
                                "connects as, through PgBouncer, after a failover or "
                                "switchover.")
    max_lag_bytes: Bytes = Field(16 * 1024 * 1024, description="Bytes of WAL a standby may "
                                 "be behind and still be promoted without --force (the "
                                 "smallest of the selected nodes counts).")
    pgbouncer: MaybePattern = Field(None, description="Inventory pattern of the PgBouncer "
                                      "hosts that follow this cluster's primary (each has "
                                      "pgbouncer: settings).")
    repmgr_user: PlainName = Field("repmgr", description="The database user of opskit's psql "
                                   "and of repmgr's conninfo (node rejoin).")
    repmgr_db: PlainName = Field("repmgr", description="The repmgr metadata database (psql "
                                 "-d, and repmgr's conninfo).")
    cluster: PlainName = Field("main", description="The repmgr cluster the node belongs "
                               "to: pg status judges each cluster on its own, a runbook acts "
                               "on one (--cluster NAME), and its lease is named after it.")
    witnesses: MaybePattern = Field(None, description="Inventory pattern of extra lock "
                                      "hosts for the cluster lease (e.g. a repmgr witness), "
                                      "so a two-node cluster keeps a majority.")


class PgbouncerSettings(Settings):
    """A PgBouncer host in front of a cluster: re-pointed at the new primary on a failover."""

    ini: AbsPath = Field(description="The pgbouncer.ini whose [databases] entries are "
                         "rewritten (host=, port=) at a failover or switchover.")
    databases: Databases = Field(description="The [databases] entries that follow the "
                                 "primary (the write check goes through the first).")
    port: Port = Field(6432, description="PgBouncer's listen port (admin console and the "
                       "write check).")
    admin_user: PlainName = Field("pgbouncer", description="A user in PgBouncer's "
                                  "admin_users: PAUSE, RELOAD, RESUME, SHOW DATABASES.")
    os_user: PlainName = Field("postgres", description="The OS user psql runs as on the "
                               "PgBouncer host.")
    psql: Text = Field("psql", description="The psql program on the PgBouncer host (a name "
                       "on PATH or a path).")
