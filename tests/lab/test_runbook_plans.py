"""A runbook's --dry-run plan is the run: for each pg and redis runbook, the plan's steps
(title, hosts), preflight included, are those the real run then takes -- on the lab.

Each test starts from the lab's initial topology (reset when a previous test changed it),
sets up what its runbook needs, and resets again afterwards, so any order works.
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
from helpers import explain, from_the_start, run_json, wait_for

import opskit.lab as labmod
from opskit.lab import LabStatus, pg_service, redis_service

MAIN = ("--group", "main")  # the lab's Redis group redis1-3:6379 (AUTH)

pytestmark = pytest.mark.lab


def steps(doc: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(s["title"], s["hosts"]) for s in doc["steps"]]


def plan_then_run(inv: Path, *args: str, snapshot: Callable[[], object],
                  journal: Path) -> dict[str, Any]:
    """``--dry-run --json`` (nothing may change), then ``--yes --json``; the plan's steps
    must be the real run's, and the real run must succeed. The real run's document."""
    before = snapshot()
    code, plan = run_json(inv, *args, "--dry-run", journal=journal)
    assert code == 0 and plan["dry_run"] is True, explain(plan)
    assert snapshot() == before, "the dry run changed something"
    assert plan["steps"][0]["title"].startswith("preflight")
    assert plan["steps"][0]["status"] == "ok"  # the read-only preflight ran
    assert any(s["status"] == "planned" for s in plan["steps"]), plan["steps"]
    assert all(s["status"] in ("ok", "warning", "planned") for s in plan["steps"])
    planned_entries = _entries(journal)
    code, real = run_json(inv, *args, "--yes", journal=journal)
    assert code == 0 and real["exit_code"] == 0 and real["dry_run"] is False, explain(real)
    assert all(s["status"] in ("ok", "warning") for s in real["steps"]), explain(real)
    assert steps(plan) == steps(real)
    assert len(real["steps"]) >= 2  # more than the preflight: a plan worth comparing
    # The journal: the dry run's final entry holds the plan; the real run journaled each step.
    assert planned_entries[-1]["dry_run"] is True
    assert steps(planned_entries[-1]["details"]) == steps(plan)
    ran = _entries(journal)[len(planned_entries):]
    assert [e["details"]["title"] for e in ran if e["command"] == f"{real['command']} step"] \
        == [t for t, _ in steps(real)]
    return real


def _entries(journal: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in journal.read_text().splitlines()]


# ---------------------------------------------------------------- PostgreSQL


def _addr(lab: LabStatus, name: str) -> str:
    return lab.host(name).address


def _query(lab: LabStatus, name: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(host=_addr(lab, name), port=5432, dbname="app", user="repmgr",
                         connect_timeout=3, autocommit=True) as c:
        cur = c.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def pg_snapshot(lab: LabStatus) -> dict[str, Any]:
    """Each node's (in recovery, sender host) or None when down; PgBouncer's target for app."""
    out: dict[str, Any] = {}
    for n in ("db1", "db2", "db3"):
        try:
            out[n] = _query(lab, n, "select pg_is_in_recovery(), coalesce((select sender_host "
                                    "from pg_stat_wal_receiver where status = 'streaming'), '')"
                            )[0]
        except psycopg.OperationalError:
            out[n] = None
    with psycopg.connect(host=_addr(lab, "lb1"), port=6432, dbname="pgbouncer",
                         user="pgbouncer", autocommit=True, connect_timeout=3) as c:
        c.prepare_threshold = None
        cur = c.cursor()
        cur.execute("SHOW DATABASES")
        out["pgbouncer"] = [r[1] for r in cur.fetchall() if r[0] == "app"]
    return out


def _pg_initial(lab: LabStatus) -> bool:
    try:
        s = pg_snapshot(lab)
    except psycopg.Error:
        return False
    db1 = _addr(lab, "db1")
    return (s["db1"] == (False, "") and s["db2"] == (True, db1) and s["db3"] == (True, db1)
            and s["pgbouncer"] == [db1])


@pytest.fixture
def cluster(lab: LabStatus) -> Iterator[LabStatus]:
    """db1 primary, db2 and db3 streaming from it, PgBouncer on lb1 at db1; after the test too."""
    yield from from_the_start(lab, lambda: _pg_initial(lab),
                              lambda: pg_service.reset_cluster(lab.state_dir), "db1 -> db2, db3")


def _stop_postgres(lab: LabStatus, name: str) -> None:
    """pg_ctl stop -m immediate as postgres inside the host (not through opskit)."""
    done = labmod.run_in_host(name, pg_service.as_postgres(
        f"{pg_service.BINDIR}/pg_ctl", "-D", pg_service.DATA_DIR, "-w", "stop", "-m",
        "immediate"), state_dir=lab.state_dir)
    assert done.returncode == 0, done.stderr


def test_pg_failover_plan_is_the_run(cluster: LabStatus, tmp_path: Path) -> None:
    _query(cluster, "db1", "select pg_switch_wal()")
    time.sleep(0.5)  # both standbys replay it: the choice of target is stable
    _stop_postgres(cluster, "db1")
    real = plan_then_run(cluster.inventory_path, "pg", "failover", "-l", "db",
                         snapshot=lambda: pg_snapshot(cluster), journal=tmp_path / "j.jsonl")
    titles = [t for t, _ in steps(real)]
    assert any(t.startswith("promote ") for t in titles) and any("fence" in t for t in titles)
    assert pg_snapshot(cluster)[real["target"]][0] is False  # out of recovery


def test_pg_switchover_plan_is_the_run(cluster: LabStatus, tmp_path: Path) -> None:
    real = plan_then_run(cluster.inventory_path, "pg", "switchover", "-l", "db", "--to", "db2",
                         snapshot=lambda: pg_snapshot(cluster), journal=tmp_path / "j.jsonl")
    assert any("RESUME" in t for t, _ in steps(real))  # the always-step is in the plan too
    assert pg_snapshot(cluster)["db2"][0] is False


@pytest.fixture
def failed_over(cluster: LabStatus, tmp_path: Path) -> str:
    """db1 stopped and a standby promoted by `pg failover`: db1 is a former primary."""
    _stop_postgres(cluster, "db1")
    code, doc = run_json(cluster.inventory_path, "pg", "failover", "-l", "db", "--yes",
                         journal=tmp_path / "setup.jsonl")
    assert code == 0, explain(doc)
    return str(doc["target"])


def test_pg_rejoin_plan_is_the_run(cluster: LabStatus, failed_over: str, tmp_path: Path) -> None:
    real = plan_then_run(cluster.inventory_path, "pg", "rejoin", "-l", "db", "db1",
                         snapshot=lambda: pg_snapshot(cluster), journal=tmp_path / "j.jsonl")
    assert real["changed"] is True
    assert wait_for(lambda: pg_snapshot(cluster)["db1"] == (True, _addr(cluster, failed_over)))


# ---------------------------------------------------------------- Redis

R = ("redis1", "redis2", "redis3")


def _rc(lab: LabStatus, name: str, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-h", _addr(lab, name), "-p", "6379", *args],
                          capture_output=True, text=True, timeout=10,
                          env=redis_service.machine_env(lab.state_dir))  # group main's AUTH
    return done.stdout.strip()


def _info(lab: LabStatus, name: str) -> dict[str, str]:
    text = _rc(lab, name, "INFO", "replication")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def redis_snapshot(lab: LabStatus) -> dict[str, tuple[str | None, str | None, str | None]]:
    out = {}
    for n in R:
        d = _info(lab, n)
        out[n] = (d.get("role"), d.get("master_host"), d.get("master_link_status"))
    return out


def _redis_initial(lab: LabStatus) -> bool:
    m = _addr(lab, "redis1")
    return redis_snapshot(lab) == {"redis1": ("master", None, None),
                                   "redis2": ("slave", m, "up"), "redis3": ("slave", m, "up")}


@pytest.fixture
def redis(lab: LabStatus) -> Iterator[LabStatus]:
    """redis1 master, redis2 and redis3 linked replicas; after the test too."""
    yield from from_the_start(lab, lambda: _redis_initial(lab),
                              lambda: redis_service.reset_redis(lab.state_dir), "redis1")


def _kill(lab: LabStatus, name: str) -> None:
    pid = int(_rc(lab, name, "INFO", "server").split("process_id:")[1].split()[0])
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: _rc(lab, name, "PING") != "PONG")


def test_redis_promote_plan_is_the_run(redis: LabStatus, tmp_path: Path) -> None:
    _rc(redis, "redis1", "SET", "k", "v")
    assert _rc(redis, "redis1", "WAIT", "2", "2000") == "2"  # equal offsets: a stable choice
    _kill(redis, "redis1")
    real = plan_then_run(redis.inventory_path, "redis", "promote", "-l", "redis", *MAIN,
                         snapshot=lambda: redis_snapshot(redis), journal=tmp_path / "j.jsonl")
    assert any("publish" in t for t, _ in steps(real))
    assert _info(redis, real["target"].split(":")[0])["role"] == "master"


def test_redis_switchover_plan_is_the_run(redis: LabStatus, tmp_path: Path) -> None:
    real = plan_then_run(redis.inventory_path, "redis", "switchover", "-l", "redis", *MAIN, "--to",
                         "redis2:6379", snapshot=lambda: redis_snapshot(redis),
                         journal=tmp_path / "j.jsonl")
    assert any("other replicas" in t for t, _ in steps(real))
    assert _info(redis, "redis2")["role"] == "master"


@pytest.fixture
def old_master_back(redis: LabStatus, lab_restore: Callable[[], Any], tmp_path: Path) -> str:
    """redis1 killed, a replica promoted, then redis1 started again: a second master."""
    _kill(redis, "redis1")
    code, doc = run_json(redis.inventory_path, "redis", "promote", "-l", "redis", *MAIN, "--yes",
                         journal=tmp_path / "setup.jsonl")
    assert code == 0, explain(doc)
    lab_restore()  # `lab up` starts the killed redis1 again, as a master
    assert wait_for(lambda: _rc(redis, "redis1", "PING") == "PONG")
    return str(doc["target"]).split(":")[0]


def test_redis_rejoin_plan_is_the_run(redis: LabStatus, old_master_back: str,
                                      tmp_path: Path) -> None:
    real = plan_then_run(redis.inventory_path, "redis", "rejoin", "-l", "redis", *MAIN,
                         "redis1:6379", snapshot=lambda: redis_snapshot(redis),
                         journal=tmp_path / "j.jsonl")
    assert real["changed"] is True
    assert wait_for(lambda: redis_snapshot(redis)["redis1"]
                    == ("slave", _addr(redis, old_master_back), "up"))


def test_redis_backup_plan_is_the_run(redis: LabStatus, tmp_path: Path) -> None:
    time.sleep(1.1)  # LASTSAVE has a one-second resolution: a save this second would not show
    real = plan_then_run(redis.inventory_path, "redis", "backup", "-l", "redis", *MAIN,
                         snapshot=lambda: {n: _rc(redis, n, "LASTSAVE") for n in R},
                         journal=tmp_path / "j.jsonl")
    assert {s["instance"] for s in real["saved"]} == {"redis2:6379", "redis3:6379"}
