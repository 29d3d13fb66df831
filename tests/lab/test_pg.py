"""`opskit pg` against the lab's real PostgreSQL 15 + repmgr + PgBouncer (db1-3, lb1).

Every test starts from the lab's initial topology (db1 primary, db2 and db3 streaming from
it, PgBouncer on lb1 sending `app` to db1): the `cluster` fixture resets it when a previous
test changed it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from helpers import Writer, explain, from_the_start, run_json, wait_for
from helpers import run_opskit as opskit

import opskit.lab as labmod
from opskit.lab import LabStatus, pg_service

pytestmark = pytest.mark.lab

DB = ("db1", "db2", "db3")


def addr(lab: LabStatus, name: str) -> str:
    return lab.host(name).address


def conn(lab: LabStatus, name: str, db: str = "app", user: str = "app",
         port: int = 5432) -> psycopg.Connection[Any]:
    return psycopg.connect(host=addr(lab, name), port=port, dbname=db, user=user,
                           connect_timeout=3, autocommit=True)


def query(lab: LabStatus, name: str, sql: str, db: str = "app") -> list[tuple[Any, ...]]:
    with conn(lab, name, db=db, user="repmgr") as c:
        cur = c.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def in_recovery(lab: LabStatus, name: str) -> bool | None:
    try:
        return bool(query(lab, name, "select pg_is_in_recovery()")[0][0])
    except psycopg.OperationalError:
        return None


def through_bouncer(lab: LabStatus) -> psycopg.Connection[Any]:
    c = psycopg.connect(host=addr(lab, "lb1"), port=6432, dbname="app", user="app",
                        connect_timeout=5, autocommit=True)
    c.prepare_threshold = None  # PgBouncer pools by transaction: no prepared statements
    return c


def streams_from(lab: LabStatus, standby: str, primary: str) -> bool:
    try:
        rows = query(lab, standby, "select sender_host, status from pg_stat_wal_receiver")
    except psycopg.OperationalError:
        return False
    return bool(rows) and rows[0][0] == addr(lab, primary) and rows[0][1] == "streaming"


def run_in_host(lab: LabStatus, name: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """A command inside the lab host's namespaces (its private /data, /etc/opskit-lab)."""
    pid = labmod.host_pid(name, state_dir=lab.state_dir)
    assert pid, f"{name} is not running"
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "--", *argv],
                          capture_output=True, text=True, timeout=60)


def pg_ctl(lab: LabStatus, name: str, *args: str) -> None:
    """pg_ctl as postgres inside the host's namespace (not through opskit)."""
    pg = host_pg(lab, name)
    done = run_in_host(lab, name, ["runuser", "-u", "postgres", "--",
                                              f"{pg['bindir']}/pg_ctl", "-D",
                                              pg["data_directory"], "-w", *args])
    assert done.returncode == 0, done.stderr


def host_pg(lab: LabStatus, name: str) -> dict[str, Any]:
    data = yaml.safe_load(lab.inventory_path.read_text())
    return _find_vars(data["all"], name)["postgres"]


def _find_vars(group: dict[str, Any], host: str, inherited: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    merged = {**(inherited or {}), **(group.get("vars") or {})}
    hosts = group.get("hosts") or {}
    if host in hosts:
        return {**merged, **(hosts[host] or {})}
    for child in (group.get("children") or {}).values():
        found = _find_vars(child or {}, host, merged)
        if found:
            return found
    return {}


def snapshot(lab: LabStatus) -> dict[str, Any]:
    """What a failover would change: roles, upstreams, timelines, PgBouncer's target."""
    out: dict[str, Any] = {}
    for n in DB:
        rows = query(lab, n, "select pg_is_in_recovery(), coalesce((select sender_host from "
                             "pg_stat_wal_receiver), '')")
        out[n] = rows[0]
    with psycopg.connect(host=addr(lab, "lb1"), port=6432, dbname="pgbouncer",
                         user="pgbouncer", autocommit=True, connect_timeout=3) as c:
        c.prepare_threshold = None
        cur = c.cursor()
        cur.execute("SHOW DATABASES")
        out["pgbouncer"] = [(r[0], r[1], r[2]) for r in cur.fetchall() if r[0] == "app"]
    return out


def bouncer_config(lab: LabStatus, name: str, key: str) -> str:
    """A setting as the running PgBouncer on ``name`` has it (SHOW CONFIG)."""
    with psycopg.connect(host=addr(lab, name), port=6432, dbname="pgbouncer",
                         user="pgbouncer", autocommit=True, connect_timeout=3) as c:
        c.prepare_threshold = None
        cur = c.cursor()
        cur.execute("SHOW CONFIG")
        return str(next(r[1] for r in cur.fetchall() if r[0] == key))


@pytest.fixture
def cluster(lab: LabStatus) -> Iterator[LabStatus]:
    """The initial topology, restored before the test if needed and after it."""
    yield from from_the_start(lab, lambda: _initial(lab),
                              lambda: pg_service.reset_cluster(lab.state_dir), "db1 -> db2, db3")


def _initial(lab: LabStatus) -> bool:
    try:
        return (in_recovery(lab, "db1") is False
                and all(streams_from(lab, n, "db1") for n in ("db2", "db3"))
                and snapshot(lab)["pgbouncer"][0][1] == addr(lab, "db1"))
    except (psycopg.Error, IndexError):
        return False


# ---------------------------------------------------------------- status


def test_status_shows_one_primary_two_streaming_standbys_and_pgbouncer(cluster: LabStatus) -> None:
    code, doc = run_json(cluster.inventory_path, "pg", "status", "-l", "db")
    assert code == 0, doc["warnings"]
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert set(nodes) == set(DB)  # db4+ (none here) would have no postgres vars
    assert nodes["db1"]["role"] == "primary"
    for n in ("db2", "db3"):
        assert nodes[n]["role"] == "standby"
        assert nodes[n]["upstream"].startswith(addr(cluster, "db1") + ":")
        assert nodes[n]["timeline"] == nodes["db1"]["timeline"]
        assert nodes[n]["replay_paused"] is False
        assert nodes[n]["repmgr_role"] == "standby" and nodes[n]["repmgr_status"] == "running"
    assert doc["pgbouncer"][0]["targets"]["app"] == f"{addr(cluster, 'db1')}:5432"
    assert doc["warnings"] == []
    table = opskit(cluster.inventory_path, "pg", "status", "-l", "db")
    assert table.returncode == 0 and "PRIMARY" in table.stdout and "lb1/app" in table.stdout


# ---------------------------------------------------------------- refusals and dry run


def test_dry_run_prints_the_plan_and_changes_nothing(cluster: LabStatus, tmp_path: Path) -> None:
    before = snapshot(cluster)
    journal = tmp_path / "journal.jsonl"
    proc = opskit(cluster.inventory_path, "pg", "failover", "-l", "db", "--dry-run",
                  journal=journal)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in ("dry run", "promote", "KILL app", "db1", "lb1", "repmgr", "re-point"):
        assert text in proc.stdout, text
    assert snapshot(cluster) == before
    entries = [json.loads(x) for x in journal.read_text().splitlines()]
    assert entries[-1]["command"] == "pg failover" and entries[-1]["dry_run"] is True


def _refused(lab: LabStatus, *args: str, inv: Path | None = None) -> str:
    before = snapshot(lab)
    proc = opskit(inv or lab.inventory_path, "pg", "failover", "-l", "db", "--yes", *args)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert snapshot(lab) == before  # nothing changed
    return proc.stderr


def test_refuses_a_target_with_replay_paused(cluster: LabStatus) -> None:
    query(cluster, "db2", "select pg_wal_replay_pause()")
    try:
        assert "replay paused" in _refused(cluster, "--to", "db2")
    finally:
        query(cluster, "db2", "select pg_wal_replay_resume()")


def test_refuses_a_target_lagging_over_the_threshold(cluster: LabStatus, tmp_path: Path) -> None:
    # db3 stops receiving (no primary_conninfo), the primary writes 2 MB: db3 lags, unpaused.
    inv = tmp_path / "lab.yml"
    data = yaml.safe_load(cluster.inventory_path.read_text())
    _set_max_lag(data["all"], 1024 * 1024)
    inv.write_text(yaml.safe_dump(data))
    saved = query(cluster, "db3", "show primary_conninfo")[0][0]
    query(cluster, "db3", "alter system set primary_conninfo = ''")
    query(cluster, "db3", "select pg_reload_conf()")
    try:
        with conn(cluster, "db1") as c:
            c.execute("create table if not exists lagtest(x text)")
            c.execute("insert into lagtest select repeat('x', 1000) from generate_series(1, 3000)")
        err = _refused(cluster, "--to", "db3", inv=inv)
        assert "lags" in err and "max_lag_bytes" in err, err
    finally:
        query(cluster, "db3", f"alter system set primary_conninfo = '{saved}'")
        query(cluster, "db3", "select pg_reload_conf()")
        assert wait_for(lambda: streams_from(cluster, "db3", "db1"))


def _set_max_lag(group: dict[str, Any], value: int) -> None:
    for h in (group.get("hosts") or {}).values():
        if h and "postgres" in h:
            h["postgres"]["max_lag_bytes"] = value
    if "postgres" in (group.get("vars") or {}):
        group["vars"]["postgres"]["max_lag_bytes"] = value
    for child in (group.get("children") or {}).values():
        _set_max_lag(child or {}, value)


def test_refuses_when_the_target_is_not_in_recovery(cluster: LabStatus) -> None:
    assert "not in recovery" in _refused(cluster, "--to", "db1")


def test_refuses_when_two_nodes_are_already_primary(cluster: LabStatus) -> None:
    pg_ctl(cluster, "db3", "promote")
    assert wait_for(lambda: in_recovery(cluster, "db3") is False)
    assert "already primary" in _refused(cluster)


# ---------------------------------------------------------------- failover, rejoin


def test_failover_after_the_primary_stops_then_rejoin(cluster: LabStatus, tmp_path: Path) -> None:
    with through_bouncer(cluster) as c:
        c.execute("create table if not exists fo(id int primary key, at timestamptz)")
        c.execute("insert into fo values (1, now()) on conflict do nothing")
    query(cluster, "db1", "select pg_switch_wal()")  # let both standbys catch up
    time.sleep(0.5)
    pg_ctl(cluster, "db1", "stop", "-m", "immediate")
    journal = tmp_path / "journal.jsonl"
    t0 = time.monotonic()
    code, doc = run_json(cluster.inventory_path, "pg", "failover", "-l", "db", "--yes",
                         journal=journal)
    assert code == 0, explain(doc)
    took = time.monotonic() - t0
    new = doc["target"]
    assert new in ("db2", "db3") and doc["old_primary"] == "db1"
    other = "db3" if new == "db2" else "db2"
    assert in_recovery(cluster, new) is False
    assert wait_for(lambda: streams_from(cluster, other, new))
    with through_bouncer(cluster) as c:  # a client through PgBouncer writes on the new primary
        c.execute("insert into fo values (2, now())")
        server = c.execute("select host(inet_server_addr())").fetchone()[0]
        assert server == addr(cluster, new)
        assert c.execute("select count(*) from fo").fetchone()[0] == 2
    # The other standby follows the new primary: the row written after the failover arrives.
    assert wait_for(lambda: len(query(cluster, other, "select id from fo")) == 2)
    steps = [s["title"] for s in doc["steps"]]
    assert any("promote" in s for s in steps) and any("re-point" in s for s in steps)
    entries = [json.loads(x) for x in journal.read_text().splitlines()]
    assert sum(e["command"] == "pg failover step" for e in entries) == len(doc["steps"])
    assert all("seconds" in s for s in doc["steps"]) and took < 60

    # The old primary comes back as a standby of the new one.
    code, doc = run_json(cluster.inventory_path, "pg", "rejoin", "-l", "db", "db1", "--yes")
    assert code == 0, explain(doc)
    assert wait_for(lambda: streams_from(cluster, "db1", new))
    assert wait_for(lambda: len(query(cluster, "db1", "select id from fo")) == 2)
    # And the whole cluster reads healthy: one primary, streaming standbys, PgBouncer resumed.
    code, st = run_json(cluster.inventory_path, "pg", "status", "-l", "db")
    assert code == 0 and st["warnings"] == [], st["warnings"]
    assert st["pgbouncer"][0]["paused"] == {"app": False}


def test_failover_under_a_writer_loses_no_acknowledged_write_and_restores_login_retry(
        cluster: LabStatus) -> None:
    # An application writes through PgBouncer all along. db1 stops (fast: its WAL reaches
    # the standbys, so every write it acknowledged must survive); the writer's next login
    # through PgBouncer fails, which arms PgBouncer's server_login_retry. The failover runs
    # PgBouncer's RESUME with the retry at 0 and sets it back to the lab's 1 afterwards.
    with through_bouncer(cluster) as c:
        c.execute("drop table if exists acked")
        c.execute("create table acked(id int primary key)")
    assert bouncer_config(cluster, "lb1", "server_login_retry") == "1"
    w = Writer(addr(cluster, "lb1"), "acked")
    try:
        assert wait_for(lambda: len(w.acked) >= 5)
        t_stop = time.monotonic()
        pg_ctl(cluster, "db1", "stop", "-m", "fast")
        assert wait_for(lambda: w.failed > 0 or w.waiting_since(t_stop))
        code, doc = run_json(cluster.inventory_path, "pg", "failover", "-l", "db", "--yes")
        assert code == 0, explain(doc)
        after = len(w.acked)
        assert wait_for(lambda: len(w.acked) > after + 5)  # clients write again
    finally:
        acked = w.stop()
    new = doc["target"]
    stored = {r[0] for r in query(cluster, new, "select id from acked")}
    assert set(acked) <= stored, sorted(set(acked) - stored)
    # server_login_retry was 0 from the RESUME until a write went through, then set back.
    steps = {s["title"].split(" (")[0]: s for s in doc["steps"]}
    repoint = next(s for title, s in steps.items() if title.startswith("re-point"))
    assert "server_login_retry 0 (configured: lb1 1)" in repoint["detail"]
    restore = steps["restore server_login_retry on PgBouncer"]
    assert (restore["status"], restore["detail"]) == ("ok", "server_login_retry back to 1 "
                                                             "on lb1")
    titles = [s["title"] for s in doc["steps"]]
    assert titles.index(restore["title"]) == titles.index(repoint["title"]) + 2  # after verify
    assert bouncer_config(cluster, "lb1", "server_login_retry") == "1"


def test_a_standby_that_cannot_follow_fails_the_run_after_clients_are_back(
        cluster: LabStatus, tmp_path: Path) -> None:
    # db3's repmgr.conf hidden: its `repmgr standby follow` fails. Clients are let go before
    # the follow, so they write on db2 anyway; the run exits 2 naming db3, and --continue
    # (once the cause is fixed) makes it follow.
    query(cluster, "db1", "select pg_switch_wal()")
    time.sleep(0.5)
    pg_ctl(cluster, "db1", "stop", "-m", "immediate")
    conf = host_pg(cluster, "db3")["repmgr_conf"]
    assert run_in_host(cluster, "db3", ["mv", conf, conf + ".hidden"]).returncode == 0
    journal = tmp_path / "journal.jsonl"
    try:
        code, doc = run_json(cluster.inventory_path, "pg", "failover", "-l", "db", "--to", "db2",
                             "--yes", journal=journal)
    finally:
        run_in_host(cluster, "db3", ["mv", conf + ".hidden", conf])
    assert code == 2, explain(doc)
    assert "db3" in doc["error"] and "clients can write through PgBouncer" in doc["hint"]
    assert [s["status"] for s in doc["steps"]][-2:] == ["ok", "failed"]  # verify, follow
    with through_bouncer(cluster) as c:
        assert c.execute("select host(inet_server_addr())").fetchone()[0] == addr(cluster, "db2")
    run_id = next(json.loads(x)["run_id"] for x in journal.read_text().splitlines())
    code, doc = run_json(cluster.inventory_path, "pg", "failover", "-l", "db", "--continue",
                         run_id, "--yes", journal=journal)
    assert code == 0, explain(doc)
    assert not any(s["title"].startswith("promote") for s in doc["steps"])
    assert wait_for(lambda: streams_from(cluster, "db3", "db2"))


def test_unreachable_old_primary_needs_yes_and_is_reported(cluster: LabStatus,
                                                           lab_restore: Callable[[], Any],
                                                           tmp_path: Path) -> None:
    pg_ctl(cluster, "db1", "stop", "-m", "immediate")
    os.kill(labmod.host_pid("db1", state_dir=cluster.state_dir) or 0, signal.SIGKILL)
    assert wait_for(lambda: labmod.host_pid("db1", state_dir=cluster.state_dir) is None)
    try:
        # Without --yes nothing happens (no TTY here: the confirmation cannot be given).
        before = {n: in_recovery(cluster, n) for n in ("db2", "db3")}
        proc = opskit(cluster.inventory_path, "pg", "failover", "-l", "db")
        assert proc.returncode != 0 and "--yes" in proc.stderr
        assert {n: in_recovery(cluster, n) for n in ("db2", "db3")} == before == {
            "db2": True, "db3": True}
        journal = tmp_path / "journal.jsonl"
        code, doc = run_json(cluster.inventory_path, "pg", "failover", "-l", "db", "--yes",
                             journal=journal)
        assert code == 0, explain(doc)
        fence = next(s for s in doc["steps"] if "fence" in s["title"])
        assert fence["status"] == "warning" and "UNREACHABLE" in fence["detail"]
        entries = [json.loads(x) for x in journal.read_text().splitlines()]
        assert any(e["command"] == "pg failover step" and "UNREACHABLE" in
                   e["details"]["detail"] for e in entries)
    finally:
        lab_restore()


# ---------------------------------------------------------------- switchover


def test_switchover_loses_no_committed_row(cluster: LabStatus) -> None:
    with through_bouncer(cluster) as c:
        c.execute("create table if not exists so(id serial primary key, v text)")
        c.execute("insert into so(v) select 'row' from generate_series(1, 500)")
        committed = c.execute("select count(*) from so").fetchone()[0]
    code, doc = run_json(cluster.inventory_path, "pg", "switchover", "-l", "db", "--to",
                         "db2", "--yes")
    assert code == 0, explain(doc)
    assert in_recovery(cluster, "db2") is False
    assert query(cluster, "db2", "select count(*) from so")[0][0] == committed
    assert wait_for(lambda: streams_from(cluster, "db1", "db2"))
    assert wait_for(lambda: streams_from(cluster, "db3", "db2"))
    assert snapshot(cluster)["pgbouncer"][0][1] == addr(cluster, "db2")
    with through_bouncer(cluster) as c:
        c.execute("insert into so(v) values ('after')")


def test_switchover_resumes_pgbouncer_when_a_step_fails(cluster: LabStatus) -> None:
    # Break the target's repmgr.conf: its promote fails after the old primary was stopped.
    conf = host_pg(cluster, "db2")["repmgr_conf"]
    assert run_in_host(cluster, "db2", ["mv", conf, conf + ".hidden"]).returncode == 0
    try:
        code, doc = run_json(cluster.inventory_path, "pg", "switchover", "-l", "db", "--to",
                             "db2", "--yes")
    finally:
        run_in_host(cluster, "db2", ["mv", conf + ".hidden", conf])
    assert code == 2, explain(doc)
    titles = [(s["title"], s["status"]) for s in doc["steps"]]
    assert any("RESUME" in t and st == "ok" for t, st in titles), titles
    assert any("start the old primary" in t for t, _ in titles), titles
    db = snapshot(cluster)["pgbouncer"]
    assert db[0][1] == addr(cluster, "db1")
    with through_bouncer(cluster) as c:  # not paused: a client gets through at once
        c.execute("select txid_current()")
    assert in_recovery(cluster, "db1") is False
