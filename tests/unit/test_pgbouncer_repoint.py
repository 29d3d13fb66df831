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
    done = subprocess.run([sys.executable, "-c", script("pgbouncer_repoint"), str(ini), *args],
                          capture_output=True, text=True)
    return done.returncode, json.loads(done.stdout)


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
