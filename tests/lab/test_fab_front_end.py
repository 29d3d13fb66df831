"""The Fabric front end against the lab: `fab snapshot.create`, `fab pg.switchover` and
`fab redis.promote` leave the same journal records and exit codes as the Click commands
(only the run id and `via` differ), because both run the one declared command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, wait_for

from opskit.lab import LabStatus, pg_service, redis_service

pytestmark = pytest.mark.lab

BIN = Path(sys.executable).parent


def run(argv: list[str], journal: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPSKIT_JOURNAL": str(journal),
           "OPSKIT_LOCK_DIR": str(tmp_path / "locks")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL)


def both(lab: LabStatus, tmp_path: Path, click_args: list[str], fab_args: list[str],
         between: Callable[[], None]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the Click command, set the lab back up (``between``), run the Fabric task: the
    journal records of each, and both exit codes equal."""
    j1, j2 = tmp_path / "click.jsonl", tmp_path / "fab.jsonl"
    between()
    a = run([str(BIN / "opskit"), "-i", str(lab.inventory_path), *click_args], j1, tmp_path)
    between()
    b = run([str(BIN / "fab"), *fab_args[:1], "--inventory", str(lab.inventory_path),
             *fab_args[1:]], j2, tmp_path)
    assert a.returncode == 0, a.stdout + a.stderr
    assert b.returncode == a.returncode, b.stdout + b.stderr
    return ([json.loads(x) for x in j1.read_text().splitlines()],
            [json.loads(x) for x in j2.read_text().splitlines()])


def comparable(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must be equal: command, hosts and their statuses, exit code, dry run, step titles
    (timings, ids and free-text details naturally differ between two runs)."""
    return [(e["phase"], e["command"], sorted(e["hosts"]),
             sorted((h, o["status"]) for h, o in e.get("outcomes", {}).items()),
             e.get("exit_code"), e["dry_run"], (e.get("details") or {}).get("title"))
            for e in entries]


def same_records(click_rec: list[dict[str, Any]], fab_rec: list[dict[str, Any]]) -> None:
    assert comparable(click_rec) == comparable(fab_rec)
    for records, via in ((click_rec, "opskit"), (fab_rec, "fab")):
        assert {e["via"] for e in records} == {via}
        assert len({e["run_id"] for e in records}) == 1  # one invocation, one run id
    assert click_rec[0]["run_id"] != fab_rec[0]["run_id"]


@pytest.fixture
def pg_initial(lab: LabStatus) -> Iterator[Callable[[], None]]:
    reset = lambda: pg_service.reset_cluster(lab.state_dir)  # noqa: E731
    yield reset
    reset()


@pytest.fixture
def redis_initial(lab: LabStatus) -> Iterator[Callable[[], None]]:
    reset = lambda: redis_service.reset_redis(lab.state_dir)  # noqa: E731
    yield reset
    reset()


def test_fab_snapshot_create_journals_like_the_cli(lab: LabStatus, tmp_path: Path) -> None:
    click_rec, fab_rec = both(
        lab, tmp_path, ["snapshot", "create", "-l", "db1", "--mount", "/data", "--yes"],
        ["snapshot.create", "--limit", "db1", "--mount", "/data", "--yes"], lambda: None)
    same_records(click_rec, fab_rec)
    assert [(e["phase"], e["command"]) for e in fab_rec] == [("started", "snapshot create"),
                                                              ("end", "snapshot create")]
    assert fab_rec[-1]["outcomes"]["db1"]["status"] == "ok"
    assert fab_rec[-1]["details"]["sets"]["db1"] != click_rec[-1]["details"]["sets"]["db1"]


def test_fab_pg_switchover_journals_like_the_cli(lab: LabStatus, tmp_path: Path,
                                                 pg_initial: Callable[[], None]) -> None:
    click_rec, fab_rec = both(lab, tmp_path, ["pg", "switchover", "-l", "db", "--to", "db2",
                                              "--yes"],
                              ["pg.switchover", "--limit", "db", "--to", "db2", "--yes"],
                              pg_initial)
    same_records(click_rec, fab_rec)
    assert fab_rec[-1]["command"] == "pg switchover" and fab_rec[-1]["exit_code"] == 0
    assert fab_rec[0]["phase"] == "started" and len(fab_rec) > 4
    assert all(e["command"] == "pg switchover step" for e in fab_rec[1:-1])


def test_fab_redis_promote_journals_like_the_cli(lab: LabStatus, tmp_path: Path,
                                                 redis_initial: Callable[[], None]) -> None:
    def master_down() -> None:
        redis_initial()
        out = subprocess.run(
            ["redis-cli", "-h", lab.host("redis1").address, "-p", "6379", "INFO", "server"],
            capture_output=True, text=True, timeout=10, check=True,
            env=redis_service.machine_env(lab.state_dir)).stdout  # group main's AUTH
        os.kill(int(out.split("process_id:")[1].split()[0]), signal.SIGKILL)
        assert wait_for(lambda: subprocess.run(
            ["redis-cli", "-h", lab.host("redis1").address, "-p", "6379", "PING"],
            capture_output=True, text=True, timeout=10,
            env=redis_service.machine_env(lab.state_dir)).stdout.strip() != "PONG")

    click_rec, fab_rec = both(lab, tmp_path, ["redis", "promote", "-l", "redis", "--to",
                                              "redis2:6379", "--yes"],
                              ["redis.promote", "--limit", "redis", "--to", "redis2:6379",
                               "--yes"], master_down)
    same_records(click_rec, fab_rec)
    assert fab_rec[-1]["command"] == "redis promote" and fab_rec[-1]["exit_code"] == 0
