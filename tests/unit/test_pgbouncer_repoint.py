"""The remote helper that re-points PgBouncer's [databases] entries (run here on a tmp ini)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from opskit.onhost import script

INI = """; written by hand
[databases]
app = host=127.10.0.2 port=5432 dbname=app
reports = dbname=rep host='old.example' pool_size=5
other = host=10.0.0.1 dbname=o

[pgbouncer]
listen_port = 6432
"""


def repoint(ini: Path, *args: str) -> tuple[int, dict]:
    """Compute the new ini on "the host", then put it in place as opskit does."""
    done = subprocess.run([sys.executable, "-c", script("pgbouncer_repoint"), str(ini), *args],
                          capture_output=True, text=True)
    doc = json.loads(done.stdout)
    if done.returncode == 0:
        put = subprocess.run([sys.executable, "-c", script("replace_file"), str(ini),
                              doc["sha256"]], input=doc["text"].encode(), capture_output=True)
        assert put.returncode == 0, put.stderr
    return done.returncode, doc


def test_rewrites_host_and_port_of_the_named_entries_only(tmp_path: Path) -> None:
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(INI)
    ini.chmod(0o640)
    code, doc = repoint(ini, "127.10.0.6", "5433", "app", "reports")
    assert code == 0 and doc["missing"] == []
    text = ini.read_text()
    assert "app = host=127.10.0.6 port=5433 dbname=app\n" in text
    assert "reports = dbname=rep host=127.10.0.6 pool_size=5 port=5433\n" in text
    assert "other = host=10.0.0.1 dbname=o\n" in text  # not named: untouched
    assert text.startswith("; written by hand\n") and "listen_port = 6432" in text
    assert ini.stat().st_mode & 0o777 == 0o640
    assert doc["changed"]["app"] == ["host=127.10.0.2 port=5432 dbname=app",
                                     "host=127.10.0.6 port=5433 dbname=app"]


def test_a_missing_entry_changes_nothing(tmp_path: Path) -> None:
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(INI)
    code, doc = repoint(ini, "127.10.0.6", "5432", "app", "nosuch")
    assert code == 1 and doc["missing"] == ["nosuch"]
    assert ini.read_text() == INI
    assert not list(tmp_path.glob("*.opskit-tmp"))


def test_a_malformed_host_or_port_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(INI)
    for host, port in [("10.0.0.9\n[pgbouncer]\nauth_type = trust", "5432"),
                       ("db1 auth_type=trust", "5432"), ("db1", "0"), ("db1", "70000"),
                       ("db1", "5432\n")]:
        code, doc = repoint(ini, host, port, "app")
        assert code == 1 and "malformed" in doc["error"], (host, port)
    assert ini.read_text() == INI


def test_replace_file_ignores_a_symlink_at_the_old_temp_name(tmp_path: Path) -> None:
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(INI)
    ini.chmod(0o640)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "pgbouncer.ini.opskit-tmp").symlink_to(victim)
    code, _doc = repoint(ini, "127.10.0.6", "5433", "app")
    assert code == 0 and "host=127.10.0.6" in ini.read_text()
    assert victim.read_text() == "precious\n"
    assert ini.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "pgbouncer.ini", "pgbouncer.ini.opskit-tmp", "victim"]


def test_replace_file_refuses_a_changed_original_and_a_symlinked_target(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old\n")
    run = [sys.executable, "-c", script("replace_file"), str(target), "0" * 64]
    done = subprocess.run(run, input=b"new\n", capture_output=True)
    assert done.returncode == 1 and b"changed" in done.stderr
    assert target.read_text() == "old\n"
    link = tmp_path / "link"
    link.symlink_to(target)
    done = subprocess.run([sys.executable, "-c", script("replace_file"), str(link)],
                          input=b"new\n", capture_output=True)
    assert done.returncode == 1 and b"not a regular file" in done.stderr
    assert target.read_text() == "old\n" and link.is_symlink()
