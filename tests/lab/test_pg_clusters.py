"""`opskit pg` over the lab's two PostgreSQL clusters: ``main`` (db1-db3, one central
PgBouncer on lb1) and ``shard`` (shard1-shard2, a PgBouncer on each node, lb1 a witness).

A fleet-wide status judges each cluster on its own; a failover named by one host acts on
that host's cluster only; a mutating command whose selection spans both is refused. The
``clusters`` fixture starts from both clusters' initial topology and restores it after.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from helpers import Writer, explain, from_the_start, run_json, run_opskit, wait_for

import opskit.lab as labmod
from opskit.lab import LabContext, LabStatus, pg_service

pytestmark = pytest.mark.lab

INITIAL = {"main": ("db1", ("db2", "db3")), "shard": ("shard1", ("shard2",))}
BOUNCERS = {"main": ("lb1",), "shard": ("shard1", "shard2")}


def sql(lab: LabStatus, host: str, query: str, port: int = 5432, **kw: Any) -> list[Any]:
    kw = {"dbname": "app", "user": "repmgr", **kw}
    with psycopg.connect(host=lab.host(host).address, port=port, connect_timeout=3,
                         autocommit=True, **kw) as c:
        c.prepare_threshold = None  # PgBouncer pools by transaction
        return c.cursor().execute(query, prepare=False).fetchall()  # type: ignore[arg-type]


def role(lab: LabStatus, node: str) -> tuple[bool, str]:
    """(in recovery?, the address it streams from)."""
    return tuple(sql(lab, node, "select pg_is_in_recovery(), coalesce((select sender_host "  # type: ignore[return-value]
                                "from pg_stat_wal_receiver where status = 'streaming'), '')")[0])


def bouncer_target(lab: LabStatus, host: str) -> str:
    rows = sql(lab, host, "SHOW DATABASES", port=6432, dbname="pgbouncer", user="pgbouncer")
    return str(next(r[1] for r in rows if r[0] == "app"))


def topology(lab: LabStatus, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Per node (but ``skip``): its role; per PgBouncer: where it sends ``app``."""
    out: dict[str, Any] = {}
    for primary, standbys in INITIAL.values():
        for n in (primary, *standbys):
            if n not in skip:
                out[n] = role(lab, n)
    for b in (*BOUNCERS["main"], *BOUNCERS["shard"]):
        out[f"pgbouncer {b}"] = bouncer_target(lab, b)
    return out


def _initial(lab: LabStatus) -> bool:
    try:
        now = topology(lab)
    except (psycopg.Error, StopIteration, IndexError):
        return False
    for cluster, (primary, standbys) in INITIAL.items():
        address = lab.host(primary).address
        if now[primary] != (False, "") or any(now[s] != (True, address) for s in standbys):
            return False
        if any(now[f"pgbouncer {b}"] != address for b in BOUNCERS[cluster]):
            return False
    return True


@pytest.fixture
def clusters(lab: LabStatus) -> Iterator[LabStatus]:
    """Both clusters in their initial topology, restored before the test if needed and
    after it (``opskit lab pg-reset``'s reset_cluster resets both)."""
    yield from from_the_start(lab, lambda: _initial(lab),
                              lambda: pg_service.reset_cluster(lab.state_dir),
                              "db1 -> db2, db3; shard1 -> shard2")


def at_start(lab: LabStatus, cluster: pg_service.LabCluster) -> bool:
    """reset_cluster's own check (it rebuilds a cluster other than main only when false)."""
    def runner(name: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return labmod.run_in_host(name, argv, state_dir=lab.state_dir)

    assert lab.port is not None
    ctx = LabContext(lab.state_dir, lab.port, lab.hosts, runner)
    return pg_service.at_start(cluster, pg_service.nodes_of(cluster, lab.hosts), ctx)


def by_cluster(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["clusters"]}


def primary_and_timeline(doc: dict[str, Any], cluster: str) -> list[tuple[str, int]]:
    return [(n["name"], n["timeline"]) for n in by_cluster(doc)[cluster]["nodes"]
            if n["role"] == "primary"]


def test_one_cluster_fails_over_while_the_other_stays_untouched(clusters: LabStatus) -> None:
    lab, inv = clusters, clusters.inventory_path
    # Fleet-wide: no -l is every host with postgres settings; both layouts judged healthy.
    code, doc = run_json(inv, "pg", "status")
    assert code == 0, doc["summary"]
    assert doc["summary"]["line"] == "2 clusters: 2 healthy"
    got = by_cluster(doc)
    assert [b["name"] for b in got["main"]["pgbouncer"]] == ["lb1"]
    assert [b["name"] for b in got["shard"]["pgbouncer"]] == ["shard1", "shard2"]
    assert at_start(lab, pg_service.MAIN) and at_start(lab, pg_service.SHARD)
    main_before = primary_and_timeline(doc, "main")
    assert main_before[0][0] == "db1" and primary_and_timeline(doc, "shard")[0][0] == "shard1"
    # One host names its whole cluster, and the output says what it added.
    table = run_opskit(inv, "pg", "status", "-l", "shard2")
    assert table.returncode == 0, table.stdout + table.stderr
    assert "shard1 added" in table.stdout and "1 cluster: 1 healthy" in table.stdout

    # A mutating command over both clusters is refused before it touches anything.
    before = topology(lab)
    for args in (("pg", "failover", "--yes"), ("pg", "failover", "-l", "db1:shard1", "--yes")):
        proc = run_opskit(inv, *args)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "spans 2 PostgreSQL clusters: main, shard" in proc.stderr
        assert "--cluster NAME" in proc.stderr
    assert topology(lab) == before

    # shard1's server crashes: its cluster is degraded, main stays healthy.
    done = labmod.run_in_host("shard1", pg_service.as_postgres(
        *pg_service.pg_ctl("stop", "-m", "immediate")), state_dir=lab.state_dir)
    assert done.returncode == 0, done.stderr
    code, doc = run_json(inv, "pg", "status")
    assert code == 2
    got = by_cluster(doc)
    assert (got["main"]["verdict"], got["shard"]["verdict"]) == ("healthy", "degraded")
    assert doc["summary"]["line"] == "2 clusters: 1 healthy, 1 degraded (shard: no primary)"
    assert not at_start(lab, pg_service.SHARD) and at_start(lab, pg_service.MAIN)

    # The failover named by one host acts on its cluster only.
    code, out = run_json(inv, "pg", "failover", "shard1", "--yes")
    assert code == 0, explain(out)
    assert (out["target"], out["old_primary"]) == ("shard2", "shard1")
    code, doc = run_json(inv, "pg", "status", "--cluster", "main")
    assert code == 0 and primary_and_timeline(doc, "main") == main_before
    now = topology(lab, skip=("shard1",))  # fenced: stopped by the failover
    assert now["shard2"] == (False, "")
    assert now["pgbouncer shard1"] == now["pgbouncer shard2"] == lab.host("shard2").address
    assert now["pgbouncer lb1"] == lab.host("db1").address
    assert {n: now[n] for n in ("db1", "db2", "db3")} == {
        n: before[n] for n in ("db1", "db2", "db3")}
    # A client of shard2's own PgBouncer writes on the new primary.
    rows = sql(lab, "shard2", "select host(inet_server_addr()), txid_current() > 0", port=6432,
               user="app")
    assert rows == [(lab.host("shard2").address, True)]


def login_retry(lab: LabStatus, host: str) -> str:
    rows = sql(lab, host, "SHOW CONFIG", port=6432, dbname="pgbouncer", user="pgbouncer")
    return str(next(r[1] for r in rows if r[0] == "server_login_retry"))


def test_a_pgbouncer_on_each_node_under_writers_loses_no_acknowledged_write(
        clusters: LabStatus) -> None:
    # The shard layout: an application writes through each node's own PgBouncer, the one on
    # the old primary's host included. shard1 stops (fast: its WAL reaches shard2); both
    # PgBouncers are re-pointed with server_login_retry 0 for the RESUME, then set back.
    lab = clusters
    with psycopg.connect(host=lab.host("shard1").address, port=6432, dbname="app",
                         user="app", autocommit=True, connect_timeout=3) as c:
        c.prepare_threshold = None  # PgBouncer pools by transaction
        for b in BOUNCERS["shard"]:  # the application's own tables
            c.execute(f"drop table if exists acked_{b}")
            c.execute(f"create table acked_{b}(id int primary key)")
    assert [login_retry(lab, b) for b in BOUNCERS["shard"]] == ["1", "1"]
    writers = {b: Writer(lab.host(b).address, f"acked_{b}") for b in BOUNCERS["shard"]}
    try:
        assert wait_for(lambda: all(len(w.acked) >= 5 for w in writers.values()))
        t_stop = time.monotonic()
        done = labmod.run_in_host("shard1", pg_service.as_postgres(
            *pg_service.pg_ctl("stop", "-m", "fast")), state_dir=lab.state_dir)
        assert done.returncode == 0, done.stderr
        assert wait_for(lambda: all(w.failed or w.waiting_since(t_stop)
                                    for w in writers.values()))
        code, doc = run_json(lab.inventory_path, "pg", "failover", "shard1", "--yes")
        assert code == 0, explain(doc)
        assert doc["target"] == "shard2"
        after = {b: len(w.acked) for b, w in writers.items()}
        assert wait_for(lambda: all(len(w.acked) > after[b] + 5 for b, w in writers.items()))
    finally:
        acked = {b: w.stop() for b, w in writers.items()}
    for b, ids in acked.items():
        stored = {r[0] for r in sql(lab, "shard2", f"select id from acked_{b}")}
        assert set(ids) <= stored, (b, sorted(set(ids) - stored))
    restore = next(s for s in doc["steps"] if s["title"].startswith("restore server_login"))
    assert (restore["status"], restore["detail"]) == (
        "ok", "server_login_retry back to 1 on shard1, 1 on shard2")
    assert [login_retry(lab, b) for b in BOUNCERS["shard"]] == ["1", "1"]
