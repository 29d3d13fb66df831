"""Hostile or sloppy input (issue 15): the CLI as a user runs it, in a subprocess.

Every case: the exit code of bad input (1), exactly one ``error:`` line and one ``hint:`` line
on stderr, no traceback, and nothing changed -- no journal entry, the inventory file as it
was. No lab: the inventories here have local hosts or hosts that are never contacted (the
refusal comes first). The secret cases check each sink once: journal, --json, human output,
inventory views, error lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opskit import redact

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
all:
  children:
    app:
      hosts:
        app1: {ansible_connection: local}
      vars:
        deploy: {root: /srv/app, reload: command, health_timeout: %(health)s}
        snapshot: {mount: /data, freeze_timeout: %(freeze)s}
"""

PG = """\
all:
  children:
    db:
      hosts:
        db1: {ansible_host: 127.0.0.1}
        db2: {ansible_host: %(db2_host)s}
      vars:
        postgres: {data_directory: /var/lib/postgresql/15/main, pgbouncer: lb,
                   port: %(port)s, app_user: %(app_user)s}
    lb:
      hosts:
        lb1:
          ansible_host: 127.0.0.1
          pgbouncer: {ini: /etc/pgbouncer/pgbouncer.ini, databases: %(dbs)s}
"""

BOMB = "\n".join(
    [f'l0: &l0 [{", ".join(["x"] * 9)}]']
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    + ["all:", "  vars:", "    boom: *l8", ""])


def cli(tmp_path: Path, inventory: str | None, *args: str,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPSKIT_JOURNAL": str(tmp_path / "journal.jsonl")}
    env.pop("OPSKIT_INVENTORY", None)
    argv = [sys.executable, "-m", "opskit"]
    if inventory is not None:
        (tmp_path / "inv.yml").write_text(inventory)
        argv += ["-i", str(tmp_path / "inv.yml")]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)


def base(health: str = "10", freeze: str = "30") -> str:
    return BASE % {"health": health, "freeze": freeze}


def pg(db2_host: str = "127.0.0.2", port: str = "5432", app_user: str = "app",
       dbs: str = "[app]") -> str:
    return PG % {"db2_host": db2_host, "port": port, "app_user": app_user, "dbs": dbs}


def assert_refused(tmp_path: Path, proc: subprocess.CompletedProcess[str], inventory: str | None,
                   *expect: str) -> str:
    """Exit 1, one error line and one hint, no traceback, nothing journaled or rewritten."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(lines) == 2, lines
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), lines
    assert "Traceback" not in proc.stderr + proc.stdout
    for text in expect:
        assert text in lines[0], (text, lines[0])
    assert not (tmp_path / "journal.jsonl").exists()
    if inventory is not None:
        assert (tmp_path / "inv.yml").read_text() == inventory
    return lines[0]


CASES: list[tuple[str, str | None, list[str], list[str]]] = [
    # options: timeouts are positive finite seconds
    ("connect-timeout 0", base(), ["--connect-timeout", "0", "exec", "--yes", "--", "true"],
     ["--connect-timeout", "positive"]),
    ("connect-timeout -1", base(), ["--connect-timeout", "-1", "exec", "--yes", "--", "true"],
     ["--connect-timeout"]),
    ("connect-timeout nan", base(), ["--connect-timeout", "nan", "exec", "--yes", "--", "true"],
     ["--connect-timeout"]),
    ("connect-timeout inf", base(), ["exec", "--connect-timeout", "inf", "--yes", "--", "true"],
     ["--connect-timeout"]),
    ("connect-timeout abc", base(), ["--connect-timeout", "abc", "exec", "--yes", "--", "true"],
     ["not a number"]),
    ("exec --timeout 0", base(), ["exec", "--timeout", "0", "--yes", "--", "true"],
     ["--timeout"]),
    ("exec --timeout -1", base(), ["exec", "--timeout", "-1", "--yes", "--", "true"],
     ["--timeout"]),
    ("exec --timeout nan", base(), ["exec", "--timeout", "nan", "--yes", "--", "true"],
     ["--timeout"]),
    ("freeze-timeout 0", base(), ["snapshot", "create", "--freeze-timeout", "0", "--yes"],
     ["--freeze-timeout"]),
    ("freeze-timeout inf", base(), ["snapshot", "create", "--freeze-timeout", "inf", "--yes"],
     ["--freeze-timeout"]),
    ("forks 0", base(), ["-f", "0", "exec", "--yes", "--", "true"], ["--forks"]),
    ("empty command", base(), ["exec", "--yes", "--", " "], ["empty"]),
    # inventory: ranges, aliases, duplicate keys
    ("range of 10**8", "all:\n  hosts:\n    app[1:100000000]:\n", ["inventory"],
     ["100,000,000", "limit of 100,000"]),
    ("ranges multiplied", "all:\n  hosts:\n    r[1:1000][1:1000]:\n", ["inventory"],
     ["1,000,000"]),
    ("zero stride", "all:\n  hosts:\n    app[1:9:0]:\n", ["inventory"], ["stride"]),
    ("self-referencing alias", "all:\n  vars: &v\n    x: *v\n", ["inventory"],
     ["inv.yml line", "alias loop"]),
    ("billion laughs", BOMB, ["inventory"], ["alias bomb"]),
    ("duplicate host key",
     "all:\n  hosts:\n    app1: {ansible_host: 10.0.0.1}\n    app1: {ansible_host: 10.0.0.2}\n",
     ["inventory"], ["inv.yml line 4", "duplicate key 'app1'", "line 3"]),
    ("duplicate group key", "all:\n  children:\n    a:\n    a:\n", ["inventory"],
     ["duplicate key 'a'"]),
    ("bad ansible_port", "all:\n  hosts:\n    app1: {ansible_port: abc}\n", ["inventory"],
     ["ansible_port"]),
    ("top level a list", "- app1\n", ["inventory"], ["mapping"]),
    # settings of the wrong type
    ("health_timeout abc", base(health="abc"), ["-l", "app1", "deploy", "--dry-run"],
     ["inv.yml line 7, group 'app'", "deploy.health_timeout", "'abc'"]),
    ("health_timeout bool", base(health="true"), ["-l", "app1", "deploy", "--dry-run"],
     ["group 'app'", "deploy.health_timeout", "True"]),
    ("freeze_timeout abc", base(freeze="abc"), ["-l", "app1", "snapshot", "create", "--dry-run"],
     ["inv.yml line 8, group 'app'", "snapshot.freeze_timeout", "'abc'"]),
    ("freeze_timeout negative", base(freeze="-5"),
     ["-l", "app1", "snapshot", "create", "--dry-run"], ["snapshot.freeze_timeout"]),
    # PostgreSQL / PgBouncer values that would be written into pgbouncer.ini
    ("host with a newline", pg(db2_host='"127.0.0.2\\n[pgbouncer]\\nauth_type = trust"'),
     ["pg", "switchover", "-l", "db", "--to", "db2", "--yes"], ["host db2", "ansible_host"]),
    ("host with a space", pg(db2_host='"db2 auth_type=trust"'),
     ["pg", "failover", "-l", "db", "--yes"], ["host db2", "ansible_host"]),
    ("port out of range", pg(port="70000"), ["pg", "failover", "-l", "db", "--yes"],
     ["postgres.port", "1-65535"]),
    ("app_user with a newline", pg(app_user='"app\\nx"'),
     ["pg", "failover", "-l", "db", "--yes"], ["postgres.app_user", "plain name"]),
    ("bouncer database with a newline", pg(dbs='["app\\n[pgbouncer]"]'),
     ["pg", "failover", "-l", "db", "--yes"], ["host 'lb1'", "pgbouncer.databases"]),
    # --limit and the inventory itself
    ("limit range of 10**8", base(), ["-l", "x[1:100000000]", "exec", "--yes", "--", "true"],
     ["limit of 100,000"]),
    ("connect-timeout empty", base(), ["--connect-timeout", "", "exec", "--yes", "--", "true"],
     ["not a number"]),
    ("limit matches nothing", base(), ["-l", "nosuch", "exec", "--yes", "--", "true"],
     ["nosuch"]),
    ("no inventory", None, ["exec", "--yes", "--", "true"], ["no inventory"]),
]


@pytest.mark.parametrize(("inventory", "args", "expect"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line(tmp_path: Path, inventory: str | None,
                                          args: list[str], expect: list[str]) -> None:
    proc = cli(tmp_path, inventory, *args, timeout=30)
    assert_refused(tmp_path, proc, inventory, *expect)


def test_sub_second_connect_timeout_is_accepted(tmp_path: Path) -> None:
    proc = cli(tmp_path, base(), "--connect-timeout", "0.5", "exec", "--yes", "--", "true")
    assert proc.returncode == 0, proc.stderr


def test_fabric_does_not_truncate_a_sub_second_connect_timeout() -> None:
    from opskit.transport.connection import QuickConnection

    conn = QuickConnection("127.0.0.1", connect_timeout=0.5)
    assert conn.connect_timeout == 0.5


def test_a_merge_key_is_not_a_duplicate(tmp_path: Path) -> None:
    inv = ("all:\n  children:\n    g1:\n      vars: &a {x: 1, y: 1}\n    g2:\n      vars:\n"
           "        <<: *a\n        y: 2\n      hosts:\n        h1:\n")
    proc = cli(tmp_path, inv, "inventory", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hosts"]["h1"]["vars"] == {"x": 1, "y": 2}


def test_a_range_of_100000_hosts_loads(tmp_path: Path) -> None:
    from opskit import inventory

    path = tmp_path / "big.yml"
    path.write_text("all:\n  children:\n    app:\n      hosts:\n        app[1:100000]:\n")
    inv = inventory.load(path)
    assert len(inv.hosts) == 100_000 and len(inv.members("app")) == 100_000


# ------------------------------------------------------------------ secrets, one test a sink

SECRET_INV = """\
all:
  hosts:
    app1:
      ansible_connection: local
      api_token: tok-123
      aws: {access_key_id: AKIAEXAMPLE, secret_access_key: s3cr3t-aws}
      postgres: {password: pg-pass}
"""
SECRETS = ("hunter2", "tok-123", "s3cr3t-aws", "pg-pass", "redis-pw", "opt-pw")


def no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


def test_journal_masks_the_exec_command_text_in_argv_and_details(tmp_path: Path) -> None:
    command = "PGPASSWORD=hunter2 REDISCLI_AUTH=redis-pw true --password=opt-pw"
    proc = cli(tmp_path, SECRET_INV, "exec", "--yes", "--", command)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "journal.jsonl").read_text()
    started, entry = (json.loads(x) for x in text.splitlines())
    no_secret(text)
    assert started["phase"] == "started" and entry["phase"] == "end"
    assert "PGPASSWORD=***" in json.dumps(started["argv"])
    assert "PGPASSWORD=*** REDISCLI_AUTH=***" in json.dumps(started["plan"])
    assert "PGPASSWORD=***" in json.dumps(entry["argv"])
    assert "PGPASSWORD=*** REDISCLI_AUTH=***" in json.dumps(entry.get("details", {}))


def test_json_output_masks_secrets(tmp_path: Path) -> None:
    proc = cli(tmp_path, SECRET_INV, "exec", "--dry-run", "--json", "--",
               "PGPASSWORD=hunter2 psql")
    assert proc.returncode == 0, proc.stderr
    no_secret(proc.stdout)
    assert "PGPASSWORD=***" in proc.stdout


def test_human_output_masks_secrets(tmp_path: Path) -> None:
    proc = cli(tmp_path, SECRET_INV, "exec", "--dry-run", "--", "mysql --password hunter2")
    assert proc.returncode == 0, proc.stderr
    no_secret(proc.stdout + proc.stderr)
    assert "--password ***" in proc.stdout


def test_inventory_json_masks_secret_vars(tmp_path: Path) -> None:
    proc = cli(tmp_path, SECRET_INV, "inventory", "--json")
    assert proc.returncode == 0, proc.stderr
    no_secret(proc.stdout)
    host = json.loads(proc.stdout)["hosts"]["app1"]["vars"]
    assert host["aws"] == {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "***"}
    assert host["api_token"] == "***" and host["postgres"]["password"] == "***"


def test_inventory_vars_table_masks_secret_vars(tmp_path: Path) -> None:
    proc = cli(tmp_path, SECRET_INV, "inventory", "--vars")
    assert proc.returncode == 0, proc.stderr
    no_secret(proc.stdout)
    assert "'secret_access_key': '***'" in proc.stdout and "api_token=***" in proc.stdout


def test_error_lines_mask_secrets(tmp_path: Path) -> None:
    proc = cli(tmp_path, SECRET_INV, "-l", "PGPASSWORD=hunter2", "exec", "--yes", "--", "true")
    assert proc.returncode == 1
    no_secret(proc.stderr)
    assert "PGPASSWORD=***" in proc.stderr


def test_the_one_masker() -> None:
    assert redact.mask_text("PGPASSWORD=hunter2 psql -h db1") == "PGPASSWORD=*** psql -h db1"
    assert redact.mask_text("x --password=opt-pw --db-token tok") == \
        "x --password=*** --db-token ***"
    assert redact.mask_text("postgres://app:hunter2@db1/app") == "postgres://app:***@db1/app"
    assert redact.mask_text("{'secret_access_key': 's'}") == "{'secret_access_key': '***'}"
    # Where a key is, and which key it is, are not secrets.
    assert redact.mask_text("ansible_ssh_private_key_file=/k") == \
        "ansible_ssh_private_key_file=/k"
    assert redact.mask_data({"key": "memory_percent", "aws": {"access_key_id": "A"}}) == \
        {"key": "memory_percent", "aws": {"access_key_id": "A"}}
    assert redact.mask_argv(["--db-password", "hunter2", "--", "REDISCLI_AUTH=x redis-cli"]) \
        == ["--db-password", "***", "--", "REDISCLI_AUTH=*** redis-cli"]
