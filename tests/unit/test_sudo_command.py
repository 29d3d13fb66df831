"""How a step run as another user is built (transport/session.py ``elevated``) and how a sudo
that refuses is told from a command that fails -- pure, or over a fake connection."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
from typing import Any

import pytest
from fabric import Connection
from hypothesis import given, settings
from hypothesis import strategies as st
from invoke.runners import Result

from opskit.inventory import Host
from opskit.pg import tools
from opskit.transport.errors import CommandFailed, SudoRefused
from opskit.transport.session import Session, elevated, sudo_probe, sudo_refusal

HOSTILE = "echo it's; touch /tmp/x; $(id -u) `id` \"$HOME\" && false || true > /etc/y\n# \\"


def test_no_op_for_the_login_user_itself() -> None:
    assert elevated("id -u && w", login_user="root") == "id -u && w"
    assert elevated("id -u", login_user="postgres", as_user="postgres") == "id -u"


def test_non_root_gets_one_sudo_n_and_the_whole_command_as_one_word() -> None:
    cmd = "export OPSKIT_HOST=app1; id -u && touch /root/x"
    line = elevated(cmd, login_user="ops")
    assert line == "sudo -n -- sh -c 'export OPSKIT_HOST=app1; id -u && touch /root/x'"
    assert shlex.split(line) == ["sudo", "-n", "--", "sh", "-c", cmd]


def test_another_target_user() -> None:
    assert shlex.split(elevated("psql -c 'select 1'", login_user="ops", as_user="postgres")) \
        == ["sudo", "-n", "-u", "postgres", "--", "sh", "-c", "psql -c 'select 1'"]


def test_root_switches_with_runuser() -> None:
    assert shlex.split(elevated("pg_ctl status", login_user="root", as_user="postgres")) \
        == ["runuser", "-u", "postgres", "--", "sh", "-c", "pg_ctl status"]


def test_probe_is_a_no_op_under_the_same_sudo() -> None:
    assert shlex.split(sudo_probe()) == ["sudo", "-n", "--", "sh", "-c", ":"]
    assert shlex.split(sudo_probe("postgres")) == ["sudo", "-n", "-u", "postgres", "--", "sh",
                                                   "-c", ":"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=80))
def test_any_command_is_exactly_one_word_after_sh_c(cmd: str) -> None:
    assert shlex.split(elevated(cmd, login_user="ops"))[-1] == cmd
    assert len(shlex.split(elevated(cmd, login_user="ops"))) == 6


def test_a_real_shell_passes_a_hostile_command_whole(tmp_path: pathlib.Path) -> None:
    """sh parses the line; a stand-in sudo records its argv and runs nothing: nothing of the
    command (its ``;``, ``$(...)``, quotes) is acted on outside ``sh -c``."""
    fake = tmp_path / "bin" / "sudo"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env python3\nimport json, os, sys\n'
                    'open(os.environ["ARGV_OUT"], "w").write(json.dumps(sys.argv[1:]))\n')
    fake.chmod(0o755)
    out = tmp_path / "argv.json"
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "ARGV_OUT": str(out)}
    cmd = f"echo it's; touch {tmp_path}/leak; $(touch {tmp_path}/leak2) `touch {tmp_path}/l3`"
    subprocess.run(["sh", "-c", elevated(cmd, login_user="ops")], env=env, check=True,
                   cwd=tmp_path)
    assert json.loads(out.read_text()) == ["-n", "--", "sh", "-c", cmd]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["argv.json", "bin"]


def test_refusal_message_is_one_line_with_a_hint() -> None:
    exc = sudo_refusal("db1", "dev", "root", 1, "sudo: a password is required\n")
    assert str(exc) == "sudo refused to run as root on db1: sudo: a password is required"
    assert "\n" not in str(exc)
    assert exc.hint and "NOPASSWD" in exc.hint and "dev" in exc.hint
    missing = sudo_refusal("db1", "ops", "root", 127, "bash: sudo: command not found\n")
    assert str(missing) == "no sudo on db1 to run as root: bash: sudo: command not found"
    assert missing.hint and "apt-get install sudo" in missing.hint


class FakeConn(Connection):  # type: ignore[misc]
    """A Connection that never connects: it answers ``run`` from a script of results."""

    def __init__(self, user: str, answers: list[tuple[int, str]]) -> None:
        super().__init__("127.0.0.1", user=user)
        self.answers = answers
        self.commands: list[str] = []

    def run(self, command: str, **kwargs: Any) -> Result:
        self.commands.append(command)
        status, err = self.answers.pop(0) if self.answers else (0, "")
        return Result(stdout="", stderr=err, exited=status, command=command)


def _session(user: str, answers: list[tuple[int, str]] | None = None) -> tuple[Session, FakeConn]:
    conn = FakeConn(user, list(answers or []))
    return Session(Host("db1", vars={"ansible_host": "127.0.0.1"}), conn), conn


def test_session_wraps_the_environment_too() -> None:
    s, conn = _session("ops")
    s.run("echo $OPSKIT_HOST && id -u", sudo=True, env={"OPSKIT_HOST": "db1"})
    assert shlex.split(conn.commands[0]) == [
        "sudo", "-n", "--", "sh", "-c", "export OPSKIT_HOST=db1; echo $OPSKIT_HOST && id -u"]


def test_session_as_root_runs_plain_and_never_probes() -> None:
    s, conn = _session("root", [(1, "")])
    out = s.run("false", sudo=True, check=False)
    assert conn.commands == ["false"] and out.exit_status == 1


def test_session_as_user_from_root_uses_runuser() -> None:
    s, conn = _session("root")
    tools.run_as(s, "postgres", ["psql", "-c", "select 1"], check=False)
    assert shlex.split(conn.commands[0]) == ["runuser", "-u", "postgres", "--", "sh", "-c",
                                             "psql -c 'select 1'"]


@pytest.mark.parametrize("check", [True, False])
def test_a_refusing_sudo_raises_whatever_check_says(check: bool) -> None:
    s, conn = _session("dev", [(1, "sudo: a password is required\n"),
                               (1, "sudo: a password is required\n")])
    with pytest.raises(SudoRefused) as err:
        s.run("id -u", sudo=True, check=check)
    assert conn.commands[1] == sudo_probe()
    assert err.value.hint and "passwordless" in err.value.hint


def test_a_failing_command_under_a_working_sudo_is_the_commands_failure() -> None:
    s, conn = _session("ops", [(1, "grep: nothing\n"), (0, "")])
    assert s.run("grep x /nonexistent", sudo=True, check=False).exit_status == 1
    s2, _ = _session("ops", [(1, "grep: nothing\n"), (0, "")])
    with pytest.raises(CommandFailed) as err:
        s2.run("grep x /nonexistent", sudo=True)
    assert not isinstance(err.value, SudoRefused)


def test_other_exit_statuses_are_not_probed() -> None:
    s, conn = _session("ops", [(2, "")])
    s.run("exit 2", sudo=True, check=False)
    assert len(conn.commands) == 1


def test_probe_targets_the_same_user() -> None:
    s, conn = _session("ops", [(1, ""), (1, "sudo: a password is required")])
    with pytest.raises(SudoRefused, match="as postgres on db1"):
        tools.run_as(s, "postgres", ["pg_ctl", "status"])
    assert conn.commands[1] == sudo_probe("postgres")


def test_hostile_command_stays_one_word_through_the_session() -> None:
    s, conn = _session("ops")
    s.run(HOSTILE, sudo=True)
    assert shlex.split(conn.commands[0])[-1] == HOSTILE
