"""`opskit redis` against the lab's real Redis 7 (redis1 master, redis2 and redis3 replicas).

The `topology` fixture puts that topology back (the lab's reset) when a test changed it.
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

import pytest
import yaml
from helpers import explain, from_the_start, run_json, wait_for
from helpers import run_opskit as opskit

from opskit.lab import LabStatus, redis_service

MAIN = ("--group", "main")  # the lab's Redis group redis1-3:6379 (AUTH)

pytestmark = pytest.mark.lab

R = ("redis1", "redis2", "redis3")


def rc(lab: LabStatus, name: str, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-h", lab.host(name).address, "-p", "6379", *args],
                          capture_output=True, text=True, timeout=10,
                          env=redis_service.machine_env(lab.state_dir))  # group main's AUTH
    return done.stdout.strip()


def info(lab: LabStatus, name: str) -> dict[str, str]:
    text = rc(lab, name, "INFO", "replication")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def replicates_from(lab: LabStatus, name: str, master: str) -> bool:
    d = info(lab, name)
    return (d.get("role") == "slave" and d.get("master_host") == lab.host(master).address
            and d.get("master_link_status") == "up")


def topology(lab: LabStatus) -> dict[str, tuple[str | None, str | None]]:
    out = {}
    for n in R:
        d = info(lab, n)
        out[n] = (d.get("role"), d.get("master_host"))
    return out


def initial(lab: LabStatus) -> bool:
    return info(lab, "redis1").get("role") == "master" and all(
        replicates_from(lab, n, "redis1") for n in ("redis2", "redis3"))


@pytest.fixture
def redis(lab: LabStatus) -> Iterator[LabStatus]:
    yield from from_the_start(lab, lambda: initial(lab),
                              lambda: redis_service.reset_redis(lab.state_dir),
                              "redis1 -> redis2, redis3")


def kill_master(lab: LabStatus, name: str) -> None:
    pid = int(rc(lab, name, "INFO", "server").split("process_id:")[1].split()[0])
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: rc(lab, name, "PING") != "PONG")


def test_status_shows_master_and_two_linked_replicas(redis: LabStatus) -> None:
    code, doc = run_json(redis.inventory_path, "redis", "status", "-l", "redis", *MAIN)
    assert code == 0, doc["warnings"]
    by = {x["name"]: x for x in doc["instances"]}
    assert by["redis1:6379"]["role"] == "master" and by["redis1:6379"]["replicas"] == 2
    for n in ("redis2:6379", "redis3:6379"):
        assert by[n]["role"] == "replica" and by[n]["link"] == "up"
        assert by[n]["master"] == f"{redis.host('redis1').address}:6379"
        assert by[n]["priority"] == 100 and by[n]["host_ram"] > 0
    table = opskit(redis.inventory_path, "redis", "status", "-l", "redis", *MAIN)
    assert "MASTER" in table.stdout and "healthy" in table.stdout


def test_promote_after_the_master_is_killed(redis: LabStatus, tmp_path: Path) -> None:
    for i in range(200):
        rc(redis, "redis1", "SET", f"k{i}", str(i))
    assert rc(redis, "redis1", "WAIT", "1", "2000") in ("1", "2")
    before = {n: int(info(redis, n)["slave_repl_offset"]) for n in ("redis2", "redis3")}
    kill_master(redis, "redis1")
    journal = tmp_path / "journal.jsonl"
    code, doc = run_json(redis.inventory_path, "redis", "promote", "-l", "redis", *MAIN, "--yes",
                         journal=journal)
    assert code == 0, explain(doc)
    new = doc["target"].split(":")[0]
    best = max(before.values())
    assert before[new] == best  # the highest offset (ties broken by run id)
    other = "redis3" if new == "redis2" else "redis2"
    assert info(redis, new)["role"] == "master"
    assert wait_for(lambda: replicates_from(redis, other, new))
    assert rc(redis, new, "SET", "after", "yes") == "OK"
    assert rc(redis, new, "WAIT", "1", "2000") == "1"
    assert rc(redis, other, "GET", "after") == "yes"
    assert all(rc(redis, new, "GET", f"k{i}") == str(i) for i in range(200))
    # The apps' file names the new master.
    published = [s for s in doc["steps"] if "publish" in s["title"]]
    assert published and published[0]["status"] == "ok"
    entries = [json.loads(x) for x in journal.read_text().splitlines()]
    assert any(e["command"] == "redis promote step" for e in entries)


def test_switchover_keeps_acknowledged_writes(redis: LabStatus) -> None:
    for i in range(300):
        rc(redis, "redis1", "SET", f"s{i}", str(i))
    assert rc(redis, "redis1", "WAIT", "2", "2000") == "2"
    code, doc = run_json(redis.inventory_path, "redis", "switchover", "-l", "redis", *MAIN, "--to",
                         "redis2:6379", "--yes")
    assert code == 0, explain(doc)
    assert info(redis, "redis2")["role"] == "master"
    assert all(rc(redis, "redis2", "GET", f"s{i}") == str(i) for i in range(300))
    assert wait_for(lambda: replicates_from(redis, "redis1", "redis2"))
    assert wait_for(lambda: replicates_from(redis, "redis3", "redis2"))


def test_refuses_when_the_only_replicas_link_is_stale(redis: LabStatus, tmp_path: Path) -> None:
    data = yaml.safe_load(redis.inventory_path.read_text())
    _set(data["all"], "max_link_down_seconds", 1)
    inv = tmp_path / "lab.yml"
    inv.write_text(yaml.safe_dump(data))
    kill_master(redis, "redis1")
    time.sleep(2.5)
    before = topology_alive(redis)
    proc = opskit(inv, "redis", "promote", "-l", "redis1:redis2", *MAIN, "--yes")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "no link to the master" in proc.stderr
    assert topology_alive(redis) == before
    dry = opskit(inv, "redis", "promote", "-l", "redis1:redis2", *MAIN, "--dry-run", "--force")
    assert dry.returncode == 0 and "REPLICAOF NO ONE" in dry.stdout
    assert topology_alive(redis) == before


def topology_alive(lab: LabStatus) -> dict[str, tuple[str | None, str | None]]:
    return {n: v for n, v in topology(lab).items() if v[0]}


def _set(group: dict[str, Any], key: str, value: Any) -> None:
    for h in (group.get("hosts") or {}).values():
        if h and "redis" in h:
            h["redis"][key] = value
    for child in (group.get("children") or {}).values():
        _set(child or {}, key, value)


def test_rejoin_leaves_one_master(redis: LabStatus, lab_restore: Callable[[], Any]) -> None:
    kill_master(redis, "redis1")
    code, doc = run_json(redis.inventory_path, "redis", "promote", "-l", "redis", *MAIN, "--yes")
    assert code == 0, explain(doc)
    new = doc["target"].split(":")[0]
    lab_restore()  # `lab up` starts the killed redis1 again: an old master, back as a master
    assert wait_for(lambda: rc(redis, "redis1", "PING") == "PONG")
    code, doc = run_json(redis.inventory_path, "redis", "rejoin", "-l", "redis", *MAIN,
                         "redis1:6379", "--yes")
    assert code == 0, explain(doc)
    assert wait_for(lambda: replicates_from(redis, "redis1", new))
    roles = [info(redis, n)["role"] for n in R]
    assert roles.count("master") == 1
    code, st = run_json(redis.inventory_path, "redis", "status", "-l", "redis", *MAIN)
    assert code == 0, st["warnings"]


def test_backup_on_replicas_and_refused_on_a_master(redis: LabStatus) -> None:
    rc(redis, "redis1", "SET", "b", "1")
    rc(redis, "redis1", "WAIT", "2", "2000")
    before = {n: int(rc(redis, n, "LASTSAVE")) for n in ("redis2", "redis3")}
    time.sleep(1.1)  # LASTSAVE has a one-second resolution
    code, doc = run_json(redis.inventory_path, "redis", "backup", "-l", "redis", *MAIN, "--yes")
    assert code == 0, explain(doc)
    saved = {s["instance"].split(":")[0]: s for s in doc["saved"]}
    assert set(saved) == {"redis2", "redis3"} and doc["skipped"] == ["redis1:6379"]
    for n, s in saved.items():
        assert int(rc(redis, n, "LASTSAVE")) > before[n]
        assert s["bytes"] and s["bytes"] > 0 and s["rdb"].endswith(".rdb")
    proc = opskit(redis.inventory_path, "redis", "backup", "-l", "redis1", *MAIN, "--yes")
    assert proc.returncode == 4 and "--allow-master" in proc.stderr
