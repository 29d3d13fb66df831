"""Issue 18's Redis acceptance on the lab's three groups: main (redis1 -> redis2, redis3; AUTH
as the ACL user opskit), tls (redis1 -> redis2 on 6380; TLS with client certificates) and
watched (redis2 -> redis3 on 6381; three Sentinels on 26379).

A fleet-wide status judges each group on its own; a dead master degrades its group only and a
promote of it leaves the others untouched; a runbook over several groups is refused; status,
promote and backup work on the AUTH and the TLS group with the password nowhere in an argv on
the hosts, the journal or the output; a Sentinel group is handed to its Sentinels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT, ExecWatch, explain, redis_cli, run_json, wait_for
from helpers import run_opskit as opskit
from test_lab_redis import is_initial, sentinel_masters

from opskit.lab import LabStatus, redis_secrets, redis_service

pytestmark = pytest.mark.lab


@pytest.fixture
def groups(lab: LabStatus) -> Iterator[LabStatus]:
    """The three groups in their initial roles (and the Sentinels agreeing), before and
    after the test."""
    if not wait_for(lambda: is_initial(lab), timeout=5):
        redis_service.reset_redis(lab.state_dir)
    yield lab
    if not is_initial(lab):
        redis_service.reset_redis(lab.state_dir)


def rc(lab: LabStatus, name: str, port: int, *args: str) -> str:
    return redis_cli(lab, name, *args, port=port).stdout.strip()


def role(lab: LabStatus, name: str, port: int) -> str | None:
    for line in rc(lab, name, port, "INFO", "replication").splitlines():
        if line.startswith("role:"):
            return line.split(":", 1)[1].strip()
    return None


def run_id(lab: LabStatus, name: str, port: int) -> str:
    text = rc(lab, name, port, "INFO", "server")
    return next(x.split(":", 1)[1].strip() for x in text.splitlines() if x.startswith("run_id:"))


def kill(lab: LabStatus, name: str, port: int) -> None:
    text = rc(lab, name, port, "INFO", "server")
    pid = int(next(x.split(":", 1)[1] for x in text.splitlines() if x.startswith("process_id:")))
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: rc(lab, name, port, "PING") != "PONG")


def by_group(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["name"]: g for g in doc["groups"]}


def test_fleet_status_judges_each_group_and_a_promote_touches_only_its_own(
        groups: LabStatus) -> None:
    lab, inv = groups, groups.inventory_path
    code, doc = run_json(inv, "redis", "status")
    assert code == 0, doc["warnings"]
    g = by_group(doc)
    assert list(g) == ["main", "tls", "watched"]
    assert doc["summary"]["line"] == "3 groups: 3 healthy"
    assert [v["master"] for v in g["watched"]["sentinels"]] == \
        [f"{lab.host('redis2').address}:6381"] * 3
    assert all(v["ckquorum"].startswith("OK") for v in g["watched"]["sentinels"])
    tls_master, watched_master = run_id(lab, "redis1", 6380), run_id(lab, "redis2", 6381)

    kill(lab, "redis1", 6379)
    code, doc = run_json(inv, "redis", "status")
    g = by_group(doc)
    assert code == 2 and g["main"]["verdict"] == "degraded"
    assert g["tls"]["verdict"] == g["watched"]["verdict"] == "healthy"
    assert "1 degraded (main: no master" in doc["summary"]["line"]
    # A runbook over the three groups is refused before anything runs.
    proc = opskit(inv, "redis", "promote", "--yes")
    assert proc.returncode == 1 and "spans 3 Redis groups" in proc.stderr, proc.stderr
    assert role(lab, "redis2", 6379) == role(lab, "redis3", 6379) == "slave"

    code, doc = run_json(inv, "redis", "promote", "--group", "main", "--yes")
    assert code == 0, explain(doc)
    assert doc["target"] in ("redis2:6379", "redis3:6379")
    assert role(lab, doc["target"].split(":")[0], 6379) == "master"
    # The other groups: the same masters, never restarted.
    assert run_id(lab, "redis1", 6380) == tls_master and role(lab, "redis1", 6380) == "master"
    assert run_id(lab, "redis2", 6381) == watched_master
    assert set(sentinel_masters(lab).values()) == {f"{lab.host('redis2').address}:6381"}


def secrets_of(lab: LabStatus) -> list[str]:
    pw = redis_secrets.passwords(lab.state_dir)
    return [pw.default, pw.opskit]


def test_the_auth_group_status_promote_backup_never_show_its_password(
        groups: LabStatus, tmp_path: Path) -> None:
    lab, inv = groups, groups.inventory_path
    journal = tmp_path / "journal.jsonl"
    outputs: list[str] = []
    with ExecWatch(lab, ["redis1", "redis2", "redis3"], tmp_path / "exec.log") as ps:
        for args in (["status", "--group", "main"], ["backup", "--group", "main", "--yes"],
                     ["switchover", "--to", "redis3:6379", "--yes"]):
            proc = opskit(inv, "redis", *args, journal=journal)
            outputs.append(proc.stdout + proc.stderr)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        kill(lab, "redis3", 6379)
        proc = opskit(inv, "redis", "promote", "--group", "main", "--yes", journal=journal)
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any('/redis-cli", [' in line and '"--user", "opskit"' in line
               for line in ps.lines), "no redis-cli run by opskit seen"
    for secret in secrets_of(lab):
        assert not any(secret in line for line in ps.lines)
        assert secret not in journal.read_text()
        assert not any(secret in out for out in outputs)
    assert "BGSAVE" in outputs[1] and "redis3:6379" in outputs[2]


def redis_host_vars(node: Any) -> Iterator[dict[str, Any]]:
    """Every host's vars in a lab.yml that hold ``redis:`` settings."""
    if isinstance(node, dict):
        if isinstance(node.get("redis"), dict) and "instances" in node["redis"]:
            yield node
        for v in node.values():
            yield from redis_host_vars(v)


def test_a_secret_file_here_authenticates_and_one_open_to_others_is_refused(
        groups: LabStatus, tmp_path: Path) -> None:
    lab = groups
    data = yaml.safe_load(lab.inventory_path.read_text())
    secret = tmp_path / "redis-opskit.pass"
    secret.write_text(redis_secrets.passwords(lab.state_dir).opskit + "\n")
    secret.chmod(0o600)
    for host in redis_host_vars(data):
        host["redis"]["auth"] = {"user": "opskit", "secret_file": str(secret)}
    inv = tmp_path / "lab.yml"
    inv.write_text(yaml.safe_dump(data))
    journal = tmp_path / "journal.jsonl"
    code, doc = run_json(inv, "redis", "backup", "--group", "main", "--yes", journal=journal)
    assert code == 0, explain(doc)
    assert {s["instance"] for s in doc["saved"]} == {"redis2:6379", "redis3:6379"}
    assert redis_secrets.passwords(lab.state_dir).opskit not in journal.read_text()
    secret.chmod(0o644)
    proc = opskit(inv, "redis", "status", "--group", "main")
    assert proc.returncode == 1 and "open to others" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2  # the error and its hint


def test_the_tls_group_status_backup_and_promote(groups: LabStatus) -> None:
    lab, inv = groups, groups.inventory_path
    code, doc = run_json(inv, "redis", "status", "--group", "tls")
    assert code == 0, doc["warnings"]
    assert [(x["name"], x["role"]) for x in doc["instances"]] == [
        ("redis1:6380", "master"), ("redis2:6380", "replica")]
    code, doc = run_json(inv, "redis", "backup", "--group", "tls", "--yes")
    assert code == 0, explain(doc)
    assert [s["instance"] for s in doc["saved"]] == ["redis2:6380"]
    assert rc(lab, "redis1", 6380, "SET", "tls-key", "v") == "OK"
    assert rc(lab, "redis1", 6380, "WAIT", "1", "2000") == "1"
    kill(lab, "redis1", 6380)
    code, doc = run_json(inv, "redis", "promote", "--group", "tls", "--yes")
    assert code == 0, explain(doc)
    assert doc["target"] == "redis2:6380" and role(lab, "redis2", 6380) == "master"
    assert rc(lab, "redis2", 6380, "GET", "tls-key") == "v"
    assert role(lab, "redis1", 6379) == "master"  # main untouched


def test_a_sentinel_group_is_handed_to_its_sentinels(groups: LabStatus,
                                                     tmp_path: Path) -> None:
    lab, inv = groups, groups.inventory_path
    before = {n: run_id(lab, n, 6381) for n in ("redis2", "redis3")}
    for args, says in ((["switchover", "--to", "redis3:6381"], "its Sentinels"),
                       (["rejoin", "redis2:6381"], "its Sentinels"),
                       (["promote", "--group", "watched", "--to", "redis3:6381"],
                        "--to is refused")):
        proc = opskit(inv, "redis", *args, "--yes")
        assert proc.returncode == 4 and says in proc.stderr, (args, proc.stderr)
    assert role(lab, "redis2", 6381) == "master"
    journal = tmp_path / "journal.jsonl"
    code, doc = run_json(inv, "redis", "promote", "--group", "watched", "--yes",
                         journal=journal)
    assert code == 0, explain(doc)
    assert doc["target"] == "redis3:6381" and doc["sentinel"].endswith(":26379")
    assert role(lab, "redis3", 6381) == "master"
    new = f"{lab.host('redis3').address}:6381"
    assert wait_for(lambda: set(sentinel_masters(lab).values()) == {new})
    # The Sentinels re-pointed the old master (alive: a manual failover) before promote
    # ended: it waited for that, so no moment after it shows two masters.
    assert role(lab, "redis2", 6381) == "slave"
    assert [s["status"] for s in doc["steps"]] == ["ok", "ok", "ok"], doc["steps"]
    assert {n: run_id(lab, n, 6381) for n in ("redis2", "redis3")} == before
    steps = [json.loads(x) for x in journal.read_text().splitlines()]
    assert any("SENTINEL FAILOVER" in json.dumps(s) for s in steps)
    code, doc = run_json(inv, "redis", "status", "--group", "watched")
    assert code == 0, doc["warnings"]


def test_undeclared_sentinels_are_seen_and_promote_refuses(groups: LabStatus,
                                                            tmp_path: Path) -> None:
    lab = groups
    text = lab.inventory_path.read_text()
    data = yaml.safe_load(text)

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("sentinel", None)
            for v in node.values():
                strip(v)
        elif isinstance(node, list):
            for v in node:
                strip(v)

    strip(data)
    inv = tmp_path / "lab.yml"
    inv.write_text(yaml.safe_dump(data))
    code, doc = run_json(inv, "redis", "status", "--group", "watched")
    assert code == 2 and any("redis.sentinel does not declare them" in w
                             for w in doc["warnings"]), doc["warnings"]
    kill(lab, "redis2", 6381)  # a master down: promote would act, were it not refused
    proc = opskit(inv, "redis", "promote", "--group", "watched", "--yes")
    assert proc.returncode == 4 and "Sentinels watch it" in proc.stderr, proc.stderr


def test_two_sentinel_promotes_at_once_one_asks_the_other_is_refused(
        groups: LabStatus, tmp_path: Path) -> None:
    lab, inv = groups, groups.inventory_path
    journal = tmp_path / "journal.jsonl"
    env = {**os.environ, "OPSKIT_JOURNAL": str(journal), "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([sys.executable, "-m", "opskit", "-i", str(inv), "redis",
                              "promote", "--group", "watched", "--yes"], cwd=ROOT, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert first.stdout is not None
    seen = []
    for line in first.stdout:  # it holds the group's lease: its preflight has begun
        seen.append(line)
        if line.lstrip().startswith("1. preflight"):
            break
    # Paused while the second runs: it cannot end before the second tries its lease.
    first.send_signal(signal.SIGSTOP)
    try:
        second = opskit(inv, "redis", "promote", "--group", "watched", "--yes",
                        journal=journal)
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, "".join(seen) + out + err
    assert second.returncode == 4 and "the Redis group watched is locked by" in second.stderr, \
        second.stderr
    new = f"{lab.host('redis3').address}:6381"
    assert set(sentinel_masters(lab).values()) == {new}  # one failover, not two
    assert role(lab, "redis2", 6381) == "slave"
