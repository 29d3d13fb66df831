"""Hostile input against the lab's real PgBouncer (lb1): issue 15.

A host value with a newline never reaches pgbouncer.ini; a symlink planted at the old fixed
temp name (``<ini>.opskit-tmp``) is not written through; a real re-point keeps the ini's owner
and mode. Each test starts from the initial topology (db1 primary, lb1 -> db1) and leaves it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from helpers import from_the_start, run_opskit

import opskit.lab as labmod
from opskit import inventory
from opskit.lab import LabStatus, pg_service

pytestmark = pytest.mark.lab


def in_lb1(lab: LabStatus, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command inside lb1's namespaces (its private /etc/opskit-lab)."""
    pid = labmod.host_pid("lb1", state_dir=lab.state_dir)
    assert pid, "lb1 is not running"
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "--", *argv],
                          capture_output=True, text=True, timeout=60)


def ini_path(lab: LabStatus) -> str:
    return str(inventory.load(lab.inventory_path).hosts["lb1"].domain("pgbouncer")["ini"])


def bouncer_target(lab: LabStatus) -> str | None:
    try:
        with psycopg.connect(host=lab.host("lb1").address, port=6432, dbname="pgbouncer",
                             user="pgbouncer", autocommit=True, connect_timeout=3) as c:
            c.prepare_threshold = None
            rows = c.execute("SHOW DATABASES").fetchall()
    except psycopg.Error:
        return None
    return next((r[1] for r in rows if r[0] == "app"), None)


def primary_is_db1(lab: LabStatus) -> bool:
    try:
        with psycopg.connect(host=lab.host("db1").address, port=5432, dbname="app",
                             user="repmgr", autocommit=True, connect_timeout=3) as c:
            primary = c.execute("select not pg_is_in_recovery()").fetchone()[0]
    except psycopg.Error:
        return False
    return bool(primary) and bouncer_target(lab) == lab.host("db1").address


@pytest.fixture
def initial(lab: LabStatus) -> Iterator[LabStatus]:
    yield from from_the_start(lab, lambda: primary_is_db1(lab),
                              lambda: pg_service.reset_cluster(lab.state_dir), "db1 primary")


def stat_in_lb1(lab: LabStatus, path: str) -> str:
    done = in_lb1(lab, "stat", "-c", "%u:%g:%a:%F", path)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def read_in_lb1(lab: LabStatus, path: str) -> str:
    done = in_lb1(lab, "cat", path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_newline_in_a_host_value_is_refused_and_the_ini_untouched(
        initial: LabStatus, tmp_path: Path) -> None:
    ini = ini_path(initial)
    before = read_in_lb1(initial, ini)
    data = yaml.safe_load(initial.inventory_path.read_text())
    hostile = initial.host("db2").address + "\n[pgbouncer]\nauth_type = trust"
    _set_host_var(data["all"], "db2", "ansible_host", hostile)
    inv = tmp_path / "hostile.yml"
    inv.write_text(yaml.safe_dump(data))
    assert inventory.load(inv).hosts["db2"].address == hostile
    journal = tmp_path / "journal.jsonl"
    proc = run_opskit(inv, "pg", "switchover", "-l", "db", "--to", "db2", "--yes",
                      journal=journal)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: host db2: ansible_host"), lines
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in proc.stderr
    assert read_in_lb1(initial, ini) == before
    assert bouncer_target(initial) == initial.host("db1").address
    assert not journal.exists()


def _set_host_var(group: dict, host: str, key: str, value: str) -> None:
    """Set it on every mention of the host (a later mention's vars would win)."""
    hosts = group.get("hosts") or {}
    if host in hosts:
        hosts[host] = {**(hosts[host] or {}), key: value}
    for child in (group.get("children") or {}).values():
        _set_host_var(child or {}, host, key, value)


def test_a_symlink_at_the_old_temp_name_is_not_written_through(initial: LabStatus) -> None:
    ini = ini_path(initial)
    planted, victim = ini + ".opskit-tmp", os.path.dirname(ini) + "/victim.conf"
    assert in_lb1(initial, "sh", "-c", f"echo precious > {victim} && ln -sfn {victim} "
                  f"{planted}").returncode == 0
    try:
        proc = run_opskit(initial.inventory_path, "pg", "switchover", "-l", "db", "--to",
                          "db2", "--yes")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert read_in_lb1(initial, victim) == "precious\n"
        assert stat_in_lb1(initial, planted).endswith("symbolic link")
        assert bouncer_target(initial) == initial.host("db2").address
        leftovers = in_lb1(initial, "sh", "-c", f"ls -a {os.path.dirname(ini)}").stdout
        assert ".opskit" not in leftovers.replace(".opskit-tmp", "")  # no temp file left
    finally:
        in_lb1(initial, "rm", "-f", planted, victim)


def test_a_real_repoint_keeps_the_owner_and_mode_of_the_ini(initial: LabStatus) -> None:
    ini = ini_path(initial)
    original = stat_in_lb1(initial, ini)
    uid, gid, _mode, _kind = original.split(":")
    # A mode that is not the umask's default, so that keeping it is visible.
    assert in_lb1(initial, "chmod", "0604", ini).returncode == 0
    try:
        before = stat_in_lb1(initial, ini)
        proc = run_opskit(initial.inventory_path, "pg", "switchover", "-l", "db", "--to",
                          "db2", "--yes")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert bouncer_target(initial) == initial.host("db2").address
        assert stat_in_lb1(initial, ini) == before == f"{uid}:{gid}:604:regular file"
    finally:
        in_lb1(initial, "chmod", original.split(":")[2], ini)


def test_a_sub_second_connect_timeout_connects(lab: LabStatus) -> None:
    # Fabric made 0.5 an int (0): a non-blocking socket, "unreachable: BlockingIOError".
    proc = run_opskit(lab.inventory_path, "--connect-timeout", "0.5", "exec", "-l", "lb1",
                      "--yes", "--", "true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
