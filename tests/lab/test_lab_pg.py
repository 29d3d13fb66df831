"""The lab's PostgreSQL clusters: PostgreSQL 15 + repmgr on db1-db3, PgBouncer on lb1 (``main``),
and on shard1-shard2 with a PgBouncer on each (``shard``).

db1 is the primary, db2 and db3 stream from it, PgBouncer sends ``app`` to db1 (shard1 and
shard2 likewise, tested in test_pg_clusters.py); lab.yml
carries the ``postgres:`` / ``pgbouncer:`` vars `opskit pg` reads; ``up`` starts a stopped
node as whatever it is now; ``reset_cluster()`` rebuilds the initial topology; ``down``
leaves no server behind.
"""

from __future__ import annotations

import os
import pathlib
import pwd
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import yaml
from helpers import wait_for

import opskit.lab as labmod
from opskit.lab import LabContext, LabHost, LabStatus, layout, pg_service, pgbouncer_service, procs
from opskit.lab.services import hosts_for

pytestmark = pytest.mark.lab

DB = ("db1", "db2", "db3")
SHARD = ("shard1", "shard2")
BIN = pg_service.BINDIR
EXPECTED_PG_VARS = {
    "port": 5432,
    "bindir": "/usr/lib/postgresql/15/bin",
    "data_directory": "/data/pg/15/main",
    "repmgr_conf": "/etc/opskit-lab/repmgr.conf",
    "os_user": "postgres",
    "socket_dir": "/etc/opskit-lab/pg/run",
    "app_user": "app",
    "max_lag_bytes": 16777216,
    "pgbouncer": "pgbouncer",
    "cluster": "main",
}
# The second cluster: its own name, a PgBouncer on each node, lb1 a witness for its lease.
EXPECTED_SHARD_VARS = {**EXPECTED_PG_VARS, "pgbouncer": "shard", "cluster": "shard",
                       "witnesses": "lb1"}
EXPECTED_BOUNCER_VARS = {
    "ini": "/etc/opskit-lab/pgbouncer/pgbouncer.ini",
    "port": 6432,
    "admin_user": "pgbouncer",
    "os_user": "postgres",
    "databases": ["app"],
}


def in_host(lab: LabStatus, name: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return labmod.run_in_host(name, argv, state_dir=lab.state_dir, timeout=60)


def as_postgres(lab: LabStatus, name: str, *argv: str) -> str:
    """Run argv as postgres in the host (as `opskit pg` does over SSH); its stdout."""
    done = in_host(lab, name, pg_service.as_postgres(*argv))
    assert done.returncode == 0, f"{name}: {argv}: {done.stderr}"
    return done.stdout


def local_sql(lab: LabStatus, name: str, sql: str, db: str = "postgres") -> str:
    """psql as postgres over the host's own unix socket (the inventory's socket_dir)."""
    return as_postgres(lab, name, f"{BIN}/psql", "-X", "-A", "-t", "-q", "-h",
                       EXPECTED_PG_VARS["socket_dir"], "-p", "5432", "-d", db,
                       "-c", sql).strip()  # fmt: skip


def connect(lab: LabStatus, name: str, port: int = 5432, **kw: Any) -> psycopg.Connection[Any]:
    kw = {"dbname": "app", "user": "app", **kw}
    conn = psycopg.connect(host=lab.host(name).address, port=port, connect_timeout=3,
                           autocommit=True, **kw)  # fmt: skip
    conn.prepare_threshold = None  # PgBouncer 1.18 in transaction mode: no prepared statements
    return conn


def fetch(lab: LabStatus, name: str, sql: str, **kw: Any) -> list[tuple[Any, ...]]:
    with connect(lab, name, **kw) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def in_recovery(lab: LabStatus, name: str) -> bool | None:
    try:
        return bool(fetch(lab, name, "select pg_is_in_recovery()")[0][0])
    except psycopg.OperationalError:
        return None


def streams_from(lab: LabStatus, standby: str, primary: str) -> bool:
    try:
        rows = fetch(lab, standby, "select sender_host, status from pg_stat_wal_receiver",
                     user="repmgr")  # fmt: skip
    except psycopg.OperationalError:
        return False
    return rows == [(lab.host(primary).address, "streaming")]


def bouncer_target(lab: LabStatus) -> str | None:
    with connect(lab, "lb1", port=6432, dbname="pgbouncer", user="pgbouncer") as conn:
        # The admin console speaks the simple query protocol only.
        rows = conn.cursor().execute("SHOW DATABASES", prepare=False).fetchall()
    return next((f"{r[1]}:{r[2]}" for r in rows if r[0] == "app"), None)


def is_initial(lab: LabStatus) -> bool:
    try:
        return (
            in_recovery(lab, "db1") is False
            and all(streams_from(lab, n, "db1") for n in ("db2", "db3"))
            and bouncer_target(lab) == f"{lab.host('db1').address}:5432"
        )
    except psycopg.Error:
        return False


@pytest.fixture
def initial(lab: LabStatus) -> Iterator[LabStatus]:
    """The cluster in its initial topology before the test; restored after it if changed."""
    if not is_initial(lab):
        pg_service.reset_cluster(lab.state_dir)
    yield lab
    if not is_initial(lab):
        pg_service.reset_cluster(lab.state_dir)


# ---------------------------------------------------------------- where things run


def test_postgres_runs_on_db1_to_db3_and_pgbouncer_on_lb1(lab: LabStatus) -> None:
    status = labmod.status(state_dir=lab.state_dir)
    for host in status.hosts:  # and the second cluster: PgBouncer beside each of its nodes
        assert host.services.get("postgres") == (
            True if host.name in (*DB, *SHARD) else None), host.name
        assert host.services.get("pgbouncer") == (
            True if host.name in ("lb1", *SHARD) else None), host.name
    postgres_uid = pwd.getpwnam("postgres").pw_uid
    for name in (*DB, *SHARD):
        pid = pg_service.postmaster_pid(status.host(name), _context(status))
        assert pid is not None
        # The postmaster runs as postgres, inside this host's namespace (its /data, its
        # hostname), on this host's address only.
        assert os.stat(f"/proc/{pid}").st_uid == postgres_uid
        sshd = status.host(name).pid
        assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink(f"/proc/{sshd}/ns/mnt")
        assert fetch(lab, name, "select host(inet_server_addr())") == [(lab.host(name).address,)]
        assert local_sql(lab, name, "show data_directory") == "/data/pg/15/main"
        assert local_sql(lab, name, "show listen_addresses") == lab.host(name).address
    # The unix socket dir is private to each host: db1's socket is not on app1 or db2's side.
    socket = f"{EXPECTED_PG_VARS['socket_dir']}/.s.PGSQL.5432"
    assert in_host(lab, "db1", ["test", "-S", socket]).returncode == 0
    assert in_host(lab, "app1", ["test", "-e", socket]).returncode == 1
    mine = in_host(lab, "db2", ["stat", "-c", "%i", socket]).stdout
    assert mine != in_host(lab, "db1", ["stat", "-c", "%i", socket]).stdout
    # /data holds the data directory: the XFS of the data-xfs service.
    df = in_host(lab, "db1", ["stat", "-f", "-c", "%T", "/data/pg/15/main"])
    assert df.stdout.strip() == "xfs"


def _context(status: LabStatus) -> LabContext:
    def runner(name: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return labmod.run_in_host(name, argv, state_dir=status.state_dir)

    assert status.port is not None
    return LabContext(status.state_dir, status.port, status.hosts, runner)


def test_lab_yml_has_the_cluster_vars_and_groups(lab: LabStatus) -> None:
    inv = yaml.safe_load(pathlib.Path(str(lab.inventory_path)).read_text())["all"]
    assert set(inv["children"]["postgres"]["hosts"]) == set(DB)
    assert set(inv["children"]["pgbouncer"]["hosts"]) == {"lb1"}
    assert inv["children"]["pgbouncer"]["vars"] == {"pgbouncer": EXPECTED_BOUNCER_VARS}
    assert set(inv["children"]["shard"]["hosts"]) == set(SHARD)  # not in db: -l db is main
    assert inv["children"]["shard"]["vars"] == {"pgbouncer": EXPECTED_BOUNCER_VARS}
    for name, hvars in inv["hosts"].items():
        expected = (EXPECTED_PG_VARS if name in DB else EXPECTED_SHARD_VARS if name in SHARD
                    else None)
        assert hvars.get("postgres") == expected, name
    # The inventory names the socket dir, repmgr.conf and the data directory as they are.
    pg = inv["hosts"]["db2"]["postgres"]
    assert in_host(lab, "db2", ["test", "-f", pg["repmgr_conf"]]).returncode == 0
    assert in_host(lab, "db2", ["test", "-f", f"{pg['data_directory']}/PG_VERSION"]).returncode == 0


@pytest.mark.parametrize(("count", "nodes", "bouncers"), [
    (8, [], []),
    (9, list(DB), ["lb1"]),
    (12, [*DB, *SHARD], ["lb1", *SHARD]),  # the second cluster: a PgBouncer on each node
    (100, [*DB, *SHARD], ["lb1", *SHARD]),  # db4-db10 and lb2-lb8 get neither
])  # fmt: skip
def test_only_labs_with_three_db_hosts_have_the_clusters(
    count: int, nodes: list[str], bouncers: list[str], tmp_path: pathlib.Path
) -> None:
    hosts = [LabHost(s.name, s.address, 2222, s.name, None, s.groups, tmp_path / s.name)
             for s in layout.plan(count)]  # fmt: skip
    ctx = LabContext(tmp_path, 2222, hosts, runner=lambda name, argv: pytest.fail("no run"))
    assert [h.name for h in hosts_for(pg_service.POSTGRES, hosts)] == nodes
    assert [h.name for h in hosts_for(pgbouncer_service.PGBOUNCER, hosts)] == bouncers
    if nodes:
        found = pg_service.POSTGRES.inventory_vars(ctx)
        assert sorted(found.host_vars) == nodes and not found.group_vars


# ---------------------------------------------------------------- replication and PgBouncer


def test_db1_is_primary_and_db2_db3_stream_from_it(initial: LabStatus) -> None:
    lab = initial
    assert in_recovery(lab, "db1") is False
    assert in_recovery(lab, "db2") is True and in_recovery(lab, "db3") is True
    # application_name is the node name (repmgr's primary_conninfo); client_addr is no use:
    # connections between 127.10.0.N addresses come from 127.0.0.1.
    rows = fetch(lab, "db1", "select application_name, state from pg_stat_replication "
                             "order by 1", user="repmgr")  # fmt: skip
    assert rows == [("db2", "streaming"), ("db3", "streaming")]
    slots = fetch(lab, "db1", "select slot_name, active from pg_replication_slots order by 1",
                  user="repmgr")  # fmt: skip
    assert slots == [("repmgr_slot_2", True), ("repmgr_slot_3", True)]
    for name in ("db2", "db3"):
        assert streams_from(lab, name, "db1")


def test_a_row_written_through_pgbouncer_is_read_on_both_standbys(initial: LabStatus) -> None:
    lab = initial
    token = uuid.uuid4().hex
    with connect(lab, "lb1", port=6432) as conn:
        conn.execute("create table if not exists lab_pg_probe(token text primary key)")
        conn.execute("insert into lab_pg_probe values (%s)", (token,))
        server = conn.execute("select host(inet_server_addr()), current_user").fetchone()
    assert server == (lab.host("db1").address, "app")
    for name in ("db2", "db3"):
        found = lambda n=name: fetch(lab, n, f"select 1 from lab_pg_probe where token = '{token}'")  # noqa: E731
        assert wait_for(found, timeout=10), name
    # The brief's psql lines, as postgres in lb1: admin console and app database.
    addr = lab.host("lb1").address
    as_postgres(lab, "lb1", "psql", "-h", addr, "-p", "6432", "-U", "pgbouncer", "pgbouncer",
                "-c", "RELOAD")  # fmt: skip
    out = as_postgres(lab, "lb1", "psql", "-X", "-A", "-t", "-h", addr, "-p", "6432", "-U",
                      "app", "app", "-c", "select 1")  # fmt: skip
    assert out.strip() == "1"


def test_repmgr_cluster_show_lists_three_nodes(initial: LabStatus, lab_ssh) -> None:
    # Over SSH, as `opskit pg` runs it (cwd is root's home: repmgr must not mind).
    done = lab_ssh("db2", "runuser -u postgres -- /usr/lib/postgresql/15/bin/repmgr "
                          "-f /etc/opskit-lab/repmgr.conf cluster show --csv")  # fmt: skip
    assert done.returncode == 0, done.stderr
    # --csv: node_id,connection status (0 = up),recovery type (0 = up as expected, ...)
    rows = sorted(tuple(line.split(",")) for line in done.stdout.split())
    assert [r[:2] for r in rows] == [("1", "0"), ("2", "0"), ("3", "0")]
    table = lab_ssh("db1", "runuser -u postgres -- /usr/lib/postgresql/15/bin/repmgr "
                           "-f /etc/opskit-lab/repmgr.conf cluster show")  # fmt: skip
    assert table.returncode == 0, table.stderr
    lines = [[c.strip() for c in line.split("|")] for line in table.stdout.splitlines()[2:]]
    assert [(c[1], c[2], c[3], c[4]) for c in lines] == [
        ("db1", "primary", "* running", ""),
        ("db2", "standby", "running", "db1"),
        ("db3", "standby", "running", "db1"),
    ]


# ---------------------------------------------------------------- up, reset, down


def test_up_starts_a_stopped_node_as_what_it_is_now(initial: LabStatus, lab_restore) -> None:
    lab = initial
    pg_ctl = [f"{BIN}/pg_ctl", "-D", "/data/pg/15/main", "-w"]
    as_postgres(lab, "db2", *pg_ctl, "-m", "fast", "stop")
    assert labmod.status(state_dir=lab.state_dir).host("db2").services["postgres"] is False
    assert lab_restore().host("db2").services["postgres"] is True
    assert in_recovery(lab, "db2") is True and wait_for(lambda: streams_from(lab, "db2", "db1"))

    # db3 promoted by hand (a failover) and stopped: up brings it back as a primary.
    as_postgres(lab, "db3", *pg_ctl, "promote")
    as_postgres(lab, "db3", *pg_ctl, "-m", "fast", "stop")
    assert lab_restore().host("db3").services["postgres"] is True
    assert in_recovery(lab, "db3") is False
    assert in_recovery(lab, "db1") is False  # up did not touch db1 either


def test_reset_cluster_restores_the_topology_after_a_manual_promotion(initial: LabStatus) -> None:
    lab = initial
    as_postgres(lab, "db2", f"{BIN}/pg_ctl", "-D", "/data/pg/15/main", "-w", "promote")
    as_postgres(lab, "shard2", f"{BIN}/pg_ctl", "-D", "/data/pg/15/main", "-w", "promote")
    assert wait_for(lambda: in_recovery(lab, "db2") is False)
    assert wait_for(lambda: in_recovery(lab, "shard2") is False)
    # Re-point PgBouncer at db2, as a failover would.
    ini = pgbouncer_service.BOUNCER_INI
    sed = f"s/host={lab.host('db1').address} /host={lab.host('db2').address} /"
    assert in_host(lab, "lb1", ["sed", "-i", sed, ini]).returncode == 0
    with connect(lab, "lb1", port=6432, dbname="pgbouncer", user="pgbouncer") as conn:
        conn.cursor().execute("RELOAD", prepare=False)
    assert bouncer_target(lab) == f"{lab.host('db2').address}:5432"
    with connect(lab, "db2") as conn:
        conn.execute("create table after_promotion(x int)")
    assert not is_initial(lab)

    t0 = time.monotonic()
    pg_service.reset_cluster(lab.state_dir)
    took = time.monotonic() - t0
    print(f"reset_cluster took {took:.1f} s")
    assert is_initial(lab)
    assert took < 60
    # Both clusters: shard1 the primary of shard again, shard2 its standby.
    assert in_recovery(lab, "shard1") is False and streams_from(lab, "shard2", "shard1")
    with connect(lab, "lb1", port=6432) as conn:  # a fresh cluster: the table is gone
        assert conn.execute("select to_regclass('after_promotion')").fetchone() == (None,)
    status = labmod.status(state_dir=lab.state_dir)
    assert all(status.host(n).services["postgres"] for n in (*DB, *SHARD))
    assert all(status.host(n).services["pgbouncer"] for n in ("lb1", *SHARD))


def _parent(pid: int) -> int | None:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_down_leaves_no_postgres_or_pgbouncer(lab: LabStatus, lab_params) -> None:
    """Down the session lab itself (a second lab would clash on 127.10.0.N:5432), then up."""
    status = labmod.status(state_dir=lab.state_dir)
    ctx = _context(status)
    ours = [pg_service.postmaster_pid(status.host(n), ctx) for n in (*DB, *SHARD)]
    ours += [pgbouncer_service.bouncer_pid(status.host(n)) for n in ("lb1", *SHARD)]
    assert all(ours)
    family = set(ours) | {p for p in procs.pids() if _parent(p) in ours}  # + backends etc.
    assert len(family) > len(ours)
    try:
        lines = labmod.down(state_dir=lab.state_dir)
        for name in DB:
            assert f"stopped postgres on {name}" in lines
            assert f"stopped data-xfs on {name}" in lines
        for name in ("lb1", *SHARD):
            assert f"stopped pgbouncer on {name}" in lines
        assert "stopped postgres on shard2" in lines
        assert not [line for line in lines if "failed" in line]
        assert [p for p in family if procs.alive(p)] == []
        assert labmod.lab_mounts(lab.state_dir, [h.name for h in lab.hosts]) == []
    finally:
        labmod.up(**lab_params)
    assert is_initial(lab)  # a cold up builds the initial topology
