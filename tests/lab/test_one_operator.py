"""One operator at a time per cluster: two opskit runs started together on the real lab, a
killed run's lease expiring, --break-lock. (Deploys: test_deploy.py; snapshots:
test_snapshot_lease in test_journal_lab.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, explain, run_json, wait_for
from test_pg import cluster, in_recovery, pg_ctl, query, streams_from  # noqa: F401
from test_redis import info, kill_master, redis, replicates_from  # noqa: F401

from opskit.lab import LabStatus

MAIN = ("--group", "main")  # the lab's Redis group redis1-3:6379 (AUTH)

DB = ("db1", "db2", "db3")


def start(inv: Path, journal: Path, *args: str) -> subprocess.Popen[str]:
    """``opskit -i INV ARGS`` started now, unbuffered, its output piped."""
    env = {**os.environ, "OPSKIT_JOURNAL": str(journal), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "opskit", "-i", str(inv), *args], cwd=ROOT,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def together(inv: Path, journal: Path, *runs: list[str]) -> list[tuple[int, str, str]]:
    procs = [start(inv, journal, *args) for args in runs]
    outs = [p.communicate(timeout=240) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs, strict=True)]


def records(journal: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in journal.read_text().splitlines()]


def primaries(lab: LabStatus) -> list[str]:
    return [n for n in DB if in_recovery(lab, n) is False]


def killed_after_lease(inv: Path, journal: Path, *args: str) -> str:
    """Start a runbook and SIGKILL it once it holds its lease (its preflight has begun, no
    step has changed anything yet); the killed run's id."""
    proc = start(inv, journal, *args)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.lstrip().startswith("1. preflight"):
                break
        else:
            raise AssertionError(f"no preflight: {proc.stderr.read() if proc.stderr else ''}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return next(r["run_id"] for r in records(journal) if r["phase"] == "started"
                and r["pid"] == proc.pid)


@pytest.fixture
def primary_down(cluster: LabStatus) -> Iterator[LabStatus]:  # noqa: F811
    query(cluster, "db1", "select pg_switch_wal()")  # both standbys caught up
    time.sleep(0.5)
    pg_ctl(cluster, "db1", "stop", "-m", "immediate")
    yield cluster


def test_two_failovers_at_once_exactly_one_promotes(primary_down: LabStatus,
                                                    tmp_path: Path) -> None:
    lab, journal = primary_down, tmp_path / "journal.jsonl"
    (a_code, a_out, a_err), (b_code, b_out, b_err) = together(
        lab.inventory_path, journal, ["pg", "failover", "-l", "db", "--yes"],
        ["pg", "failover", "-l", "db", "--yes", "--to", "db3"])
    assert sorted([a_code, b_code]) == [0, 4], (a_out, a_err, b_out, b_err)
    loser_err = a_err if a_code == 4 else b_err
    starts = [r for r in records(journal) if r["phase"] == "started"]
    ends = {r["run_id"]: r for r in records(journal) if r["phase"] == "end"}
    winner = next(r["run_id"] for r in starts if ends[r["run_id"]]["exit_code"] == 0)
    assert "locked by" in loser_err and winner in loser_err, loser_err
    assert "Traceback" not in a_err + b_err
    assert primaries(lab) in (["db2"], ["db3"])
    new = primaries(lab)[0]
    other = "db3" if new == "db2" else "db2"
    assert wait_for(lambda: streams_from(lab, other, new))
    # No hand fix: rejoin the old primary with opskit, and the cluster reads healthy.
    code, doc = run_json(lab.inventory_path, "pg", "rejoin", "-l", "db", "db1", "--yes")
    assert code == 0, explain(doc)
    code, st = run_json(lab.inventory_path, "pg", "status", "-l", "db")
    assert code == 0 and st["warnings"] == [], st["warnings"]
    assert [n["name"] for n in st["nodes"] if n["role"] == "primary"] == [new]


def test_a_killed_failovers_lease_blocks_then_expires(primary_down: LabStatus,
                                                      tmp_path: Path) -> None:
    inv, journal = primary_down.inventory_path, tmp_path / "journal.jsonl"
    args = ["pg", "failover", "-l", "db", "--yes"]
    dead = killed_after_lease(inv, journal, *args, "--lock-ttl", "6")
    t_killed = time.monotonic()
    code, doc = run_json(inv, *args, journal=journal)
    assert code == 4 and dead in doc["error"], explain(doc)
    assert primaries(primary_down) == []  # the refused run changed nothing
    time.sleep(max(0.0, 7 - (time.monotonic() - t_killed)))
    code, doc = run_json(inv, *args, journal=journal)
    assert code == 0, explain(doc)
    assert primaries(primary_down) == [doc["target"]]
    runs = {r["run_id"]: r for r in json.loads(subprocess.run(
        [sys.executable, "-m", "opskit", "journal", "--json"], capture_output=True, text=True,
        env={**os.environ, "OPSKIT_JOURNAL": str(journal)}, check=True).stdout)["runs"]}
    assert runs[dead]["status"] == "interrupted"


def test_break_lock_takes_over_and_is_journaled(cluster: LabStatus,  # noqa: F811
                                                tmp_path: Path) -> None:
    inv, journal = cluster.inventory_path, tmp_path / "journal.jsonl"
    args = ["pg", "switchover", "-l", "db", "--to", "db2", "--yes"]
    dead = killed_after_lease(inv, journal, *args)  # the default ttl: minutes
    code, doc = run_json(inv, *args, journal=journal)
    assert code == 4 and dead in doc["error"], explain(doc)
    code, doc = run_json(inv, *args, "--break-lock", journal=journal)
    assert code == 0, explain(doc)
    assert primaries(cluster) == ["db2"]
    broke = [r for r in records(journal) if r["phase"] == "step"
             and r["details"].get("title", "").startswith("break the lock")]
    breaker = next(r["run_id"] for r in records(journal) if r["phase"] == "started"
                   and "--break-lock" in r["argv"])
    assert len(broke) == 1 and broke[0]["run_id"] == breaker
    assert dead in json.dumps(broke[0]["details"]["broken"])


def test_two_redis_promotes_at_once_exactly_one_master(redis: LabStatus,  # noqa: F811
                                                       tmp_path: Path) -> None:
    lab, journal = redis, tmp_path / "journal.jsonl"
    kill_master(lab, "redis1")
    (a_code, _, a_err), (b_code, _, b_err) = together(
        lab.inventory_path, journal, ["redis", "promote", "-l", "redis", *MAIN, "--yes"],
        ["redis", "promote", "-l", "redis", *MAIN, "--yes", "--to", "redis3:6379"])
    assert sorted([a_code, b_code]) == [0, 4], (a_err, b_err)
    assert "locked by" in (a_err if a_code == 4 else b_err)
    survivors = ("redis2", "redis3")
    masters = [n for n in survivors if info(lab, n).get("role") == "master"]
    assert len(masters) == 1, {n: info(lab, n) for n in survivors}
    other = next(n for n in survivors if n != masters[0])
    assert wait_for(lambda: replicates_from(lab, other, masters[0]))
