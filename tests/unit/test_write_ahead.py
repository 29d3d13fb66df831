"""The write-ahead journal as an operator meets it: real `opskit` processes on local hosts.

A run writes ``started`` before its first change (and does not start without it), its steps as
they end, and an ``end``; a SIGKILLed run is listed as interrupted; ``journal show`` shows one
run. The lab tests repeat the kill and the unwritable journal on real hosts (test_journal_lab).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opskit import journal

INVENTORY = """\
all:
  vars:
    ansible_connection: local
  hosts:
    h1:
    h2:
"""


@pytest.fixture()
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY)
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "journal.jsonl"))
    monkeypatch.delenv("OPSKIT_INVENTORY", raising=False)
    return path


def opskit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opskit", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60,
                          env={**os.environ, **(env or {})})


def records(tmp_path: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("journal_path", ["/proc/no-such-dir/journal.jsonl", "DIR"])
def test_an_unwritable_journal_stops_the_run_before_any_change(
        inv: Path, tmp_path: Path, journal_path: str) -> None:
    if journal_path == "DIR":  # a directory where the file should be
        (tmp_path / "is-a-dir").mkdir()
        journal_path = str(tmp_path / "is-a-dir")
    marker = tmp_path / "ran"
    proc = opskit("-i", str(inv), "exec", "--yes", "--", f"touch {marker}",
                  env={"OPSKIT_JOURNAL": journal_path})
    assert proc.returncode == 1, proc
    assert "cannot write the journal" in proc.stderr and "nothing was changed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 2 and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_a_run_writes_started_before_the_change_then_its_end(inv: Path, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    # The command itself reads the journal: the started record must already be there.
    proc = opskit("-i", str(inv), "exec", "-l", "h1", "--yes", "--",
                  f"cat {tmp_path / 'journal.jsonl'} > {seen}")
    assert proc.returncode == 0, proc
    during = [json.loads(x) for x in seen.read_text().splitlines()]
    assert [e["phase"] for e in during] == ["started"]
    started, end = records(tmp_path)
    assert started["run_id"] == end["run_id"] and end["phase"] == "end"
    assert started["hosts"] == ["h1"] and started["pid"] > 0 and started["user"]
    assert started["plan"]["command"].startswith("cat ")


def test_a_killed_run_is_listed_as_interrupted(inv: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "opskit", "-i", str(inv), "exec", "--yes",
                             "--", "sleep 30"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = json.loads(opskit("journal", "--json").stdout)["runs"]
            if listed and listed[-1]["status"] == "running":
                break
            time.sleep(0.2)
        assert listed[-1]["status"] == "running", listed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run = json.loads(opskit("journal", "--json").stdout)["runs"][-1]
    assert run["status"] == "interrupted" and run["exit_code"] is None
    shown = opskit("journal", "show", run["run_id"][:20])
    assert shown.returncode == 0 and "interrupted" in shown.stdout and "started" in shown.stdout
    assert "no end record" in shown.stdout


def test_journal_lists_runs_one_line_each(inv: Path, tmp_path: Path) -> None:
    assert opskit("-i", str(inv), "exec", "--yes", "--", "true").returncode == 0
    assert opskit("-i", str(inv), "exec", "--yes", "--", "false").returncode == 2
    assert opskit("-i", str(inv), "exec", "--dry-run", "--", "true").returncode == 0
    runs = json.loads(opskit("journal", "--json").stdout)["runs"]
    assert [r["status"] for r in runs] == ["ok", "failed", "dry run"]
    assert [r["exit_code"] for r in runs] == [0, 2, 0]
    text = opskit("journal").stdout.splitlines()
    assert len(text) == 4 and all(r["run_id"] in "\n".join(text) for r in runs)
    assert len(json.loads(opskit("journal", "--json", "--last", "1").stdout)["runs"]) == 1


def test_journal_show_needs_one_matching_run(inv: Path) -> None:
    opskit("-i", str(inv), "exec", "--yes", "--", "true")
    for prefix in ("nosuchrun", "2"):  # none; and (after a second run) several
        opskit("-i", str(inv), "exec", "--yes", "--", "true")
        proc = opskit("journal", "show", prefix)
        assert proc.returncode == 1 and "runs match" in proc.stderr, proc
    run = json.loads(opskit("journal", "--json").stdout)["runs"][0]
    doc = json.loads(opskit("journal", "show", run["run_id"], "--json").stdout)
    assert [r["phase"] for r in doc["records"]] == ["started", "end"]
    assert doc["run"]["status"] == "ok"


def test_runs_reads_old_records_and_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "j.jsonl"))
    old = {"time": "t0", "command": "exec", "hosts": ["a"], "exit_code": 0}  # no phase, no run
    journal.begin_run()
    journal.start("pg failover", ["opskit", "pg", "failover"], targets=["db1", "db2"])
    journal.record("pg failover step", ["opskit"], {"db2": {"status": "ok"}}, duration=1,
                   exit_code=0, details={"step": 1, "title": "promote"}, phase="step")
    runs = journal.runs([old, *journal.read()])
    assert [r["status"] for r in runs] == ["ok", "running"]  # this process is alive
    assert runs[1]["steps"] == 1 and runs[1]["hosts"] == ["db1", "db2"]
    dead = dict(journal.read()[0], pid=2**22 + 7)  # no such pid
    assert journal.runs([dead])[0]["status"] == "interrupted"
    elsewhere = dict(journal.read()[0], operator_host="another-laptop")
    assert journal.runs([elsewhere])[0]["status"] == "interrupted"
