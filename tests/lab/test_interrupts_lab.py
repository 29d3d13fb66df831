"""Ctrl-C during a runbook, against the lab's real PostgreSQL/repmgr/PgBouncer and Redis.

`opskit pg failover --yes` (the primary stopped) and `opskit redis promote --yes` (the master
killed) run as real processes with SIGINT at its default, and get a SIGINT at a moment of the
run: at start-up, or as a numbered step begins. Afterwards either clients write (through
PgBouncer / to the new master), or the output names the state left and the command that
continues the run -- which then completes it. Never two primaries, never a traceback, exit 130.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, explain, from_the_start, run_json, wait_for
from test_pg import (
    _initial,
    addr,
    bouncer_config,
    in_recovery,
    pg_ctl,
    query,
    streams_from,
    through_bouncer,
)
from test_redis import info, initial, kill_master, rc

from opskit.lab import LabStatus, pg_service, redis_service

MAIN = ("--group", "main")  # the lab's Redis group redis1-3:6379 (AUTH)

pytestmark = pytest.mark.lab


class Run:
    """`opskit -i INV ARGS` started in the background, its output read as it comes."""

    def __init__(self, inv: Path, *args: str, journal: Path, at: str | None = None) -> None:
        """``at``: SIGINT the moment a line of stdout matches it (from the reading thread: a
        fence step takes 20 ms, a poll would miss it)."""
        self.at = re.compile(at) if at else None
        env = {**os.environ, "OPSKIT_JOURNAL": str(journal)}
        # A background child of a non-interactive shell ignores SIGINT: reset it.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opskit", "-i", str(inv), *args], cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.out: list[str] = []
        self.err: list[str] = []
        self.sent = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                         for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _read(self, stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)
            if self.at and into is self.out and not self.sent.is_set() and self.at.match(line):
                self.interrupt()

    def wait_sent(self, timeout: float = 60) -> None:
        assert self.sent.wait(timeout), \
            f"no line {self.at} in:\n{''.join(self.out)}{''.join(self.err)}"

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.sent.set()

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=10)
        return code, "".join(self.out), "".join(self.err)


def opskit(inv: Path, *args: str, journal: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPSKIT_JOURNAL": str(journal)}
    return subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), *args], cwd=ROOT,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def cluster(lab: LabStatus) -> Iterator[LabStatus]:
    yield from from_the_start(lab, lambda: _initial(lab),
                              lambda: pg_service.reset_cluster(lab.state_dir), "db1 -> db2, db3")


@pytest.fixture
def redis(lab: LabStatus) -> Iterator[LabStatus]:
    yield from from_the_start(lab, lambda: initial(lab),
                              lambda: redis_service.reset_redis(lab.state_dir),
                              "redis1 -> redis2, redis3")


def primaries(lab: LabStatus, journal: Path) -> list[str]:
    code, st = run_json(lab.inventory_path, "pg", "status", "-l", "db", journal=journal)
    return [n["name"] for n in st["nodes"] if n["role"] == "primary"]


def writes_through_bouncer(lab: LabStatus) -> str | None:
    """The node a write through PgBouncer landed on (None: it failed, or PgBouncer holds
    clients -- psql under a timeout, as a held client would wait for minutes)."""
    try:
        done = subprocess.run(
            ["psql", "-h", addr(lab, "lb1"), "-p", "6432", "-U", "app", "-d", "app", "-Atc",
             "insert into intr values (default); select host(inet_server_addr())"],
            capture_output=True, text=True, timeout=3, env={**os.environ,
                                                            "PGCONNECT_TIMEOUT": "2"})
    except subprocess.TimeoutExpired:
        return None
    lines = done.stdout.split()
    return lines[-1] if done.returncode == 0 and lines else None


# The moments: at start-up (before any output), and as steps begin -- 1 preflight, 3 fence
# (outside the critical sections), 4 promote (inside promote -> re-point -> RESUME), 6 verify
# (outside: server_login_retry, 0 since the RESUME, is set back on the way out) and 8 the
# other standbys' follow (its own section, after clients are back: 5 re-point, 7 restore
# server_login_retry).
MOMENTS = ["start-up", r" 1\. ", r" 3\. ", r" 4\. ", r" 6\. ", r" 8\. "]


@pytest.mark.parametrize("moment", MOMENTS)
def test_sigint_during_pg_failover_ends_named_and_continuable(
        cluster: LabStatus, tmp_path: Path, moment: str) -> None:
    with through_bouncer(cluster) as c:
        c.execute("create table if not exists intr(id serial primary key)")
    query(cluster, "db1", "select pg_switch_wal()")  # let both standbys catch up
    time.sleep(0.5)
    pg_ctl(cluster, "db1", "stop", "-m", "immediate")
    journal = tmp_path / "journal.jsonl"
    run = Run(cluster.inventory_path, "pg", "failover", "-l", "db", "--yes", journal=journal,
              at=None if moment == "start-up" else moment)
    if moment == "start-up":
        time.sleep(0.2)  # the modules are still loading
        run.interrupt()
    run.wait_sent()
    if moment == r" 8\. ":  # the follow takes a second: a second Ctrl-C says what it leaves
        assert wait_for(lambda: "finishing" in "".join(run.err), timeout=10)
        run.interrupt()
    code, out, err = run.finish()
    assert code == 130, out + err
    assert "Traceback" not in out + err
    assert len(primaries(cluster, journal)) <= 1

    if moment == "start-up":  # nothing was started: nothing changed
        assert out == "" and err.strip() == "interrupted", out + err
        assert in_recovery(cluster, "db2") and in_recovery(cluster, "db3")
        return
    if moment == r" 6\. ":  # cut in the verify: the retry is restored before the run stops
        assert "restore server_login_retry on PgBouncer (after the failure)" in out, out + err
        assert bouncer_config(cluster, "lb1", "server_login_retry") == "1"
    if moment == r" 8\. ":  # clients were let go before the follow began
        assert re.search(r"^second Ctrl-C: stopping now would leave: .*PgBouncer lb1 points at "
                         r"(db\d) and is RESUMEd; clients can write through PgBouncer; "
                         r"db\d still follows db1; press again within 3s", err, re.M), err
    said = re.search(r"^continue: (opskit .* --continue \S+)$", err, re.M)
    if wait_for(lambda: writes_through_bouncer(cluster), timeout=10) and said is None:
        return  # the failover had done what clients need
    assert said, f"no continuing command named:\n{out}{err}"
    assert re.search(r"^stopped: .*PgBouncer", err, re.M) or "nothing was changed" in err, err
    argv = said.group(1).split()[3:]  # after `opskit -i INV`
    code, doc = run_json(cluster.inventory_path, *argv, "--yes", journal=journal)
    assert code == 0, explain(doc)
    new = doc["target"]
    assert primaries(cluster, journal) == [new]
    other = "db3" if new == "db2" else "db2"
    assert wait_for(lambda: streams_from(cluster, other, new))
    assert wait_for(lambda: writes_through_bouncer(cluster), timeout=10) == addr(cluster, new)


def test_a_continue_refuses_when_another_node_became_primary(
        cluster: LabStatus, tmp_path: Path) -> None:
    pg_ctl(cluster, "db1", "stop", "-m", "immediate")
    journal = tmp_path / "journal.jsonl"
    run = Run(cluster.inventory_path, "pg", "failover", "-l", "db", "--to", "db2", "--yes",
              journal=journal, at=r" 3\. ")
    run.wait_sent()
    code, out, err = run.finish()
    assert code == 130 and "Traceback" not in out + err
    said = re.search(r"^continue: (opskit .* --continue \S+)$", err, re.M)
    assert said, out + err
    # Meanwhile someone promotes db3 by hand: the journal's plan (db2) no longer holds.
    pg_ctl(cluster, "db3", "promote")
    code, doc = run_json(cluster.inventory_path, *said.group(1).split()[3:], "--yes",
                         journal=journal)
    assert code == 4, doc
    assert "db3 answers as primary" in doc["error"]
    assert "db3" in primaries(cluster, journal)


def test_sigint_during_redis_promote_leaves_a_writable_master(
        redis: LabStatus, tmp_path: Path) -> None:
    kill_master(redis, "redis1")
    journal = tmp_path / "journal.jsonl"
    run = Run(redis.inventory_path, "redis", "promote", "-l", "redis", *MAIN, "--yes",
              journal=journal, at=r" 2\. ")  # the promote began: it and the re-point finish
    run.wait_sent()
    code, out, err = run.finish()
    assert code == 130, out + err
    assert "Traceback" not in out + err
    assert re.search(r"^stopped: redis promote interrupted: redis\d:6379 is the master", err,
                     re.M), err
    masters = [n for n in ("redis2", "redis3") if info(redis, n).get("role") == "master"]
    assert len(masters) == 1, masters
    new = masters[0]
    assert wait_for(lambda: rc(redis, new, "SET", "after-interrupt", "1") == "OK", timeout=10)
    other = "redis3" if new == "redis2" else "redis2"
    assert wait_for(lambda: info(redis, other).get("master_host") == redis.host(new).address)
