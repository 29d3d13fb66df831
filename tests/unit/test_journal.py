from __future__ import annotations

import json
import threading

from opskit import journal


def test_redacts_secret_values() -> None:
    argv = ["deploy", "--db-password", "hunter2", "--api-token=abc", "AWS_SECRET_KEY=xyz",
            "--limit", "app"]
    assert journal.redact_argv(argv) == [
        "deploy", "--db-password", "***", "--api-token=***", "AWS_SECRET_KEY=***",
        "--limit", "app",
    ]


def test_record_and_read_back(tmp_path, monkeypatch) -> None:
    path = tmp_path / "state" / "j.jsonl"
    monkeypatch.setenv("OPSKIT_JOURNAL", str(path))
    journal.record("exec", ["opskit", "exec", "--", "uptime"],
                   {"a": {"status": "ok"}, "b": {"status": "failed"}},
                   duration=1.23456, exit_code=2)
    journal.record("exec", ["opskit", "exec", "--", "true"], {"a": {"status": "ok"}},
                   duration=0.1, exit_code=0)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["hosts"] == ["a", "b"] and first["exit_code"] == 2 and first["duration"] == 1.235
    assert first["user"] and first["time"].endswith("+00:00")
    assert [e["argv"][-1] for e in journal.read()] == ["uptime", "true"]
    assert [e["argv"][-1] for e in journal.read(last=1)] == ["true"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_concurrent_writers_never_interleave(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "j.jsonl"))
    big = {f"host{i:03d}": {"status": "ok", "error": "x" * 200} for i in range(50)}

    def write() -> None:
        for _ in range(10):
            journal.record("exec", ["opskit"], big, duration=0, exit_code=0)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = journal.read()
    assert len(entries) == 40 and all(len(e["hosts"]) == 50 for e in entries)


def test_damaged_line_is_reported_not_fatal(tmp_path, monkeypatch) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"command": "exec", "hosts": []}\nnot json\n')
    monkeypatch.setenv("OPSKIT_JOURNAL", str(path))
    entries = journal.read()
    assert entries[1]["command"] == "<unreadable line 2>"


def test_record_masks_secrets_in_details_and_error_lines(tmp_path, monkeypatch) -> None:
    path = tmp_path / "j.jsonl"
    monkeypatch.setenv("OPSKIT_JOURNAL", str(path))
    journal.record("exec", ["opskit", "exec", "--", "PGPASSWORD=hunter2 psql"],
                   {"a": {"status": "failed", "error": "psql --password=hunter2 exited 2"}},
                   duration=0.1, exit_code=2,
                   details={"command": "REDISCLI_AUTH=hunter2 redis-cli", "token": "hunter2"})
    text = path.read_text()
    assert "hunter2" not in text
    entry = json.loads(text)
    assert entry["argv"][-1] == "PGPASSWORD=*** psql"
    assert entry["outcomes"]["a"]["error"] == "psql --password=*** exited 2"
    assert entry["details"] == {"command": "REDISCLI_AUTH=*** redis-cli", "token": "***"}
