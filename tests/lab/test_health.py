"""`opskit health` and `opskit top` against the lab fleet (real sshd hosts, shared kernel)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import stop_sshd

from opskit.health.checks import DEFAULTS
from opskit.lab import LabStatus

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
# Every threshold off: only UNKNOWN (cannot tell) can make a host not OK.
QUIET = [a for k in DEFAULTS for a in ("--warn", f"{k}=off", "--crit", f"{k}=off")]


def opskit(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)


def test_fleet_health_table_has_every_host_and_the_lab_note(lab: LabStatus) -> None:
    proc = opskit(lab.inventory_path, "health")
    assert proc.returncode in (0, 1, 2), proc.stdout + proc.stderr
    assert proc.stdout.startswith("HEALTH ")
    for h in lab.hosts:
        assert any(line.split()[:1] == [h.name] for line in proc.stdout.splitlines()), h.name
    assert "share one kernel" in proc.stdout


def test_fleet_json_samples_and_working_sets(lab: LabStatus) -> None:
    proc = opskit(lab.inventory_path, "health", "--json", "-l", "db:redis:app1", *QUIET)
    doc = json.loads(proc.stdout)
    assert proc.returncode == doc["exit_code"] == doc["status"], proc.stderr
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert {"db1", "db2", "db3", "redis1", "redis2", "redis3", "app1"} == set(by_host)
    for h in by_host.values():
        assert h["reach"] == "ok" and h["sample"]["source"] == "probe"
        assert h["sample"]["hostname"] == h["host"]  # each lab host has its own UTS name
        assert h["sample"]["memory"]["total"] > 0 and h["sample"]["disks"]
    for name in ("db1", "db2", "db3"):
        ws = by_host[name]["sample"]["working_set"]
        pg = next(w for w in ws if w["service"] == "postgres")
        assert pg.get("size", 0) > 0 and 0 <= pg["resident_percent"] <= 100, pg
        assert "/data" in {d["mount"] for d in by_host[name]["sample"]["disks"]}
    # Every instance of the host (main, tls, watched groups), each read with its AUTH/TLS.
    ports = {"redis1": [6379, 6380], "redis2": [6379, 6380, 6381], "redis3": [6379, 6381]}
    for name, on in ports.items():
        ws = by_host[name]["sample"]["working_set"]
        assert [w["service"] for w in ws] == [f"redis:{p}" for p in on], ws
        assert all(w.get("size", 0) > 0 for w in ws), ws
    assert by_host["app1"]["sample"]["working_set"] == []


def test_unreachable_host_is_unknown_and_exit_3(lab: LabStatus, lab_restore) -> None:
    victim = lab.hosts[2].name
    stop_sshd(lab, victim)
    try:
        proc = opskit(lab.inventory_path, "health", "--connect-timeout", "3",
                      "--no-working-set", "--json", *QUIET)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        doc = json.loads(proc.stdout)
        status = {h["host"]: h for h in doc["hosts"]}
        assert status[victim]["status_name"] == "UNKNOWN"
        assert status[victim]["reach"] == "unreachable"
        assert {h["status"] for n, h in status.items() if n != victim} == {0}
        table = opskit(lab.inventory_path, "health", "--connect-timeout", "3",
                       "--no-working-set", *QUIET)
        assert table.returncode == 3
        row = next(line for line in table.stdout.splitlines() if line.startswith(victim + " "))
        assert "UNKNOWN" in row and "unreachable" in row
        assert len([ln for ln in table.stdout.splitlines()
                    if ln.split()[:1] and ln.split()[0] in {h.name for h in lab.hosts}]) \
            == len(lab.hosts)
    finally:
        lab_restore()


def test_top_under_tmux_shows_every_host_and_quits_on_q(lab: LabStatus) -> None:
    sock = f"opskit-health-{os.getpid()}"  # our own tmux server, not anyone else's
    tmux = ["tmux", "-L", sock]
    cmd = shlex.join([sys.executable, "-m", "opskit", "-i", str(lab.inventory_path), "top",
                      "-l", "all", "--interval", "2"])
    subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", "200", "-y", "50",
                    # pytest exports COLUMNS=80: the view must size itself from the pane.
                    f"cd {shlex.quote(str(ROOT))} && env -u COLUMNS -u LINES {cmd}"],
                   check=True, timeout=30)
    try:
        screen, deadline = "", time.monotonic() + 60
        names = [h.name for h in lab.hosts]
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"],
                                    capture_output=True, text=True, timeout=10).stdout
            if all(f" {n} " in screen for n in names) and "opskit top" in screen:
                break
            time.sleep(0.5)
        assert all(f" {n} " in screen for n in names), screen
        assert "q: quit" in screen
        subprocess.run([*tmux, "send-keys", "-t", "top", "q"], check=True, timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            alive = subprocess.run([*tmux, "has-session", "-t", "top"], capture_output=True,
                                   timeout=10).returncode == 0
            if not alive:
                break
            time.sleep(0.2)
        assert not alive, "top did not exit on q"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
