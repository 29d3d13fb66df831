"""The CLI as a user runs it: a real `opskit` process, local hosts, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LOCAL_INVENTORY = """\
all:
  vars:
    ansible_connection: local
  children:
    app:
      hosts:
        app[1:3]:
    db:
      hosts:
        db1:
"""


@pytest.fixture()
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text(LOCAL_INVENTORY)
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "journal.jsonl"))
    monkeypatch.delenv("OPSKIT_INVENTORY", raising=False)
    return path


def opskit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opskit", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout, env=os.environ)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: "), proc.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr


def test_version_and_help() -> None:
    from opskit import __version__

    assert opskit("--version").stdout.strip().endswith(__version__)
    out = opskit("exec", "--help").stdout
    assert "--forks" in out and "Example" in out and "UNSAFE" in out


def test_exec_json_all_ok(inv: Path) -> None:
    proc = opskit("-i", str(inv), "exec", "--json", "--yes", "--", 'echo "$OPSKIT_HOST"')
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["summary"]["ok"] == 4 and doc["command"] == 'echo "$OPSKIT_HOST"'
    assert {h["host"]: h["stdout"].strip() for h in doc["hosts"]} == {
        n: n for n in ("app1", "app2", "app3", "db1")}


def test_exec_failure_on_one_host_exits_2_with_stderr(inv: Path) -> None:
    cmd = 'if [ "$OPSKIT_HOST" = app2 ]; then echo nope >&2; exit 5; fi; echo fine'
    proc = opskit("-i", str(inv), "exec", "-l", "app", "--yes", "--", cmd)
    assert proc.returncode == 2
    assert "app2 | failed | rc=5" in proc.stdout and "nope" in proc.stdout
    assert "3 hosts: 2 ok, 1 failed" in proc.stdout


def test_limit_after_or_before_command(inv: Path) -> None:
    a = opskit("-i", str(inv), "-l", "db", "exec", "--json", "--yes", "--", "true")
    b = opskit("-i", str(inv), "exec", "-l", "db", "--json", "--yes", "--", "true")
    assert [h["host"] for h in json.loads(a.stdout)["hosts"]] == ["db1"]
    assert [h["host"] for h in json.loads(b.stdout)["hosts"]] == ["db1"]


def test_exec_is_journaled(inv: Path, tmp_path: Path) -> None:
    opskit("-i", str(inv), "exec", "-l", "app1", "--yes", "--", "true")
    entry = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert entry["command"] == "exec" and entry["hosts"] == ["app1"]
    assert entry["outcomes"]["app1"]["status"] == "ok"
    shown = opskit("journal", "--json", "--last", "1")
    run = json.loads(shown.stdout)["runs"][0]
    assert run["hosts"] == ["app1"] and run["status"] == "ok" and run["command"] == "exec"


def test_dry_run_runs_nothing(inv: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proc = opskit("-i", str(inv), "exec", "--dry-run", "--", f"touch {marker}")
    assert proc.returncode == 0 and "would run" in proc.stdout and "app1" in proc.stdout
    assert not marker.exists()


def test_mutating_without_tty_needs_yes(inv: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proc = opskit("-i", str(inv), "exec", "--", f"touch {marker}")
    assert_one_line_error(proc, "--yes")
    assert not marker.exists()


def test_unknown_option_is_one_line_exit_1(inv: Path) -> None:
    assert_one_line_error(opskit("-i", str(inv), "exec", "--frobnicate", "--", "true"),
                          "--frobnicate")


def test_missing_inventory(tmp_path: Path) -> None:
    assert_one_line_error(opskit("-i", str(tmp_path / "nope.yml"), "inventory"), "nope.yml")
    assert_one_line_error(opskit("inventory"), "OPSKIT_INVENTORY")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("all:\n  hosts:\n    a: {ansible_host: x\n    b:\n")
    assert_one_line_error(opskit("-i", str(bad), "exec", "--yes", "--", "true"), "bad.yml", "line")


def test_limit_matching_nothing_names_close_matches(inv: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proc = opskit("-i", str(inv), "exec", "-l", "ap", "--yes", "--", f"touch {marker}")
    assert_one_line_error(proc, "app")
    assert not marker.exists()


def test_bad_host_range(tmp_path: Path) -> None:
    bad = tmp_path / "range.yml"
    bad.write_text("all:\n  hosts:\n    app[5:1]:\n")
    assert_one_line_error(opskit("-i", str(bad), "inventory"), "app[5:1]")


def test_bad_forks_value(inv: Path) -> None:
    assert_one_line_error(opskit("-i", str(inv), "-f", "0", "exec", "--yes", "--", "true"))


def test_verbose_shows_traceback(tmp_path: Path) -> None:
    proc = opskit("-v", "-i", str(tmp_path / "nope.yml"), "inventory")
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_ctrl_c_reports_partial_results_and_exits_130(inv: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "opskit", "-i", str(inv), "-f", "1", "exec", "--json", "--yes",
         "--", "sleep 1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )
    time.sleep(1.6)  # first host done, second running, two not started
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    statuses = [h["status"] for h in doc["hosts"]]
    assert doc["interrupted"] is True
    assert statuses[0] == "ok" and statuses[-1] == "skipped"


def test_completion_script() -> None:
    proc = opskit("completion", "bash")
    assert proc.returncode == 0 and "_OPSKIT_COMPLETE" in proc.stdout


def test_every_command_loads_lazily_under_its_own_name() -> None:
    from opskit.cli import COMMANDS, cli

    ctx = cli.make_context("opskit", ["--help"], resilient_parsing=True)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
    assert cli.get_command(ctx, "nope") is None


def test_exec_does_not_import_other_commands_libraries() -> None:
    # `opskit exec` must not pay for boto3, database drivers or the lab at start-up.
    code = ("import sys; from opskit.cli import cli; cli.get_command(None, 'exec'); "
            "print(' '.join(m for m in ('boto3', 'psycopg', 'redis', 'opskit.lab', "
            "'opskit.pg', 'opskit.commands.deploy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_an_explicit_inventory_beats_the_environment_at_every_level(
        inv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`opskit -i X inventory check` with OPSKIT_INVENTORY=Y set: X, though the subcommand
    reads its own -i default from the environment again."""
    other = tmp_path / "other.yml"
    other.write_text("all: {hosts: {solo: }}\n")
    monkeypatch.setenv("OPSKIT_INVENTORY", str(other))
    for argv in (["-i", str(inv), "inventory", "check"], ["inventory", "check", "-i", str(inv)],
                 ["-i", str(inv), "inventory", "--json"]):
        proc = opskit(*argv)
        assert proc.returncode == 0 and str(other) not in proc.stdout, (argv, proc)
        assert "4 hosts" in proc.stdout or "db1" in proc.stdout, (argv, proc.stdout)
    assert "1 hosts" in opskit("inventory", "check").stdout  # the environment alone
