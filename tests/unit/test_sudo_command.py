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

from opskit.commands.options import read_sudo_password_file
from opskit.errors import UsageError
from opskit.inventory import Host
from opskit.pg import tools
from opskit.redact import mask_argv
from opskit.transport.errors import CommandFailed, SudoRefused
from opskit.transport.session import (
    Session,
    SudoPassword,
    elevated,
    password_probe,
    sudo_probe,
    sudo_refusal,
)

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


# ---------------------------------------------------------------- the sudo password

PASSWORD = "s3cret it's \"$HOME\";x"

# A stand-in sudo with the real one's stdin behaviour: -n refuses when a password is needed;
# -S reads the password one byte at a time up to the newline (as sudo's tgetpass does),
# retries on a wrong one until EOF or 3 tries, then runs the command with the rest of stdin.
FAKE_SUDO = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["SUDO_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
cut = args.index("--")
opts, cmd = args[:cut], args[cut + 1:]
if os.environ["FAKE_MODE"] == "password":
    if "-n" in opts:
        sys.exit("sudo: a password is required")
    tries = 0
    while True:
        line, c = b"", b""
        while True:
            c = os.read(0, 1)
            if not c or c == b"\n":
                break
            line += c
        if line and line.decode() == os.environ["FAKE_PW"]:
            break
        if not c and not line:  # EOF: "no password was provided", not one more try
            sys.exit(f"sudo: {tries} incorrect password attempt")
        tries += 1
        print("Sorry, try again.", file=sys.stderr)
        if not c or tries == 3:
            sys.exit(f"sudo: {tries} incorrect password attempt")
os.execvp(cmd[0], cmd)
'''


class LoginSession(Session):
    """A local session (invoke Context: real processes) that believes it logged in as dev,
    so that steps go through the stand-in sudo on PATH."""

    is_root = False  # type: ignore[assignment]
    user = "dev"  # type: ignore[assignment]


@pytest.fixture
def fake_sudo(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    fake = tmp_path / "bin" / "sudo"
    fake.parent.mkdir()
    fake.write_text(FAKE_SUDO)
    fake.chmod(0o755)
    log = tmp_path / "sudo.log"
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("SUDO_LOG", str(log))
    monkeypatch.setenv("FAKE_PW", PASSWORD)
    monkeypatch.setenv("FAKE_MODE", "password")
    return log


def _calls(log: pathlib.Path) -> list[list[str]]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def _login(password: str | None = PASSWORD) -> Session:
    from invoke import Context

    pw = SudoPassword(password, "test") if password is not None else None
    return LoginSession(Host("db1", vars={"ansible_connection": "local"}), Context(),
                        sudo_password=pw)


def test_password_flags_put_nothing_secret_in_the_command_line() -> None:
    line = elevated("id -u", login_user="dev", as_user="postgres", password=True)
    assert shlex.split(line) == ["sudo", "-S", "-k", "-p", "", "-u", "postgres", "--", "sh",
                                 "-c", "id -u"]
    assert "-n" in shlex.split(password_probe())[:3]
    assert "-S" in shlex.split(password_probe("postgres"))


def test_a_password_never_shows_in_repr_or_str() -> None:
    pw = SudoPassword(PASSWORD, "file /x")
    assert PASSWORD not in repr(pw) and PASSWORD not in str(pw) and "file /x" in repr(pw)
    assert PASSWORD not in repr(_login())
    for bad in ("", "a\nb", "a\rb", "a\0b"):
        with pytest.raises(ValueError):
            SudoPassword(bad, "test")


def test_the_password_reaches_sudo_on_stdin_and_the_step_gets_none_of_it(
        fake_sudo: pathlib.Path) -> None:
    s = _login()
    out = s.run("id -u >/dev/null; cat; echo done", sudo=True)
    assert out.stdout == "done\n"  # cat read EOF: the password line was sudo's alone
    calls = _calls(fake_sudo)
    assert all(PASSWORD not in " ".join(c) for c in calls)
    assert calls[-1] == ["-S", "-k", "-p", "", "--", "sh", "-c",
                         "id -u >/dev/null; cat; echo done"]
    # The probe ran once (sudo -n first, then the password on a no-op); later steps reuse it.
    s.run("true", sudo=True)
    s.run("true", sudo=True)
    assert sum(c[-1] == ":" for c in _calls(fake_sudo)) == 2
    assert len(_calls(fake_sudo)) == 5


def test_run_input_gives_the_step_the_payload_byte_for_byte(fake_sudo: pathlib.Path) -> None:
    payload = b"first line\n\x00\xff\r\n" + PASSWORD.encode() + b"\nno newline at the end"
    out = _login().run_input("od -An -v -tx1 | tr -d ' \\n'", payload, as_user="postgres")
    assert out.stdout == payload.hex()
    assert _calls(fake_sudo)[-1][:6] == ["-S", "-k", "-p", "", "-u", "postgres"]


def test_a_wrong_password_is_one_refusal_after_one_try(fake_sudo: pathlib.Path) -> None:
    s = _login("not it")
    with pytest.raises(SudoRefused) as err:
        s.run_input("cat", b"line 1\nline 2\nline 3\n", sudo=True)
    assert str(err.value) == ("sudo on db1 rejected the sudo password of dev (to run as root): "
                              "sudo: 1 incorrect password attempt")
    assert err.value.hint and "--sudo-pass-file" in err.value.hint
    # Only the probe ran (its stdin: the password line, then EOF): the payload was never
    # offered to sudo as a second and third try, and the step never started.
    assert [c[-1] for c in _calls(fake_sudo)] == [":", ":"]


def test_without_a_password_the_refusal_names_the_options(fake_sudo: pathlib.Path) -> None:
    with pytest.raises(SudoRefused) as err:
        _login(None).run("true", sudo=True)
    assert str(err.value) == "sudo refused to run as root on db1: sudo: a password is required"
    assert err.value.hint and "--ask-sudo-pass" in err.value.hint \
        and "--sudo-pass-file" in err.value.hint


def test_a_nopasswd_sudo_gets_no_password_line(fake_sudo: pathlib.Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "nopasswd")
    out = _login().run_input("cat; echo done", b"payload\n", sudo=True)
    assert out.stdout == "payload\ndone\n"  # no password line before it
    assert _calls(fake_sudo)[-1][:2] == ["-n", "--"]


def test_a_failing_step_under_a_password_sudo_is_the_steps_failure(
        fake_sudo: pathlib.Path) -> None:
    out = _login().run("exit 1", sudo=True, check=False)
    assert out.exit_status == 1  # re-probed with the password: sudo works, the step failed


# ---------------------------------------------------------------- where the password comes from


def _pass_file(tmp_path: pathlib.Path, content: bytes, mode: int = 0o600) -> pathlib.Path:
    f = tmp_path / "sudo-pass"
    f.write_bytes(content)
    f.chmod(mode)
    return f


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610])
def test_a_pass_file_others_may_touch_is_refused_with_the_chmod_hint(
        tmp_path: pathlib.Path, mode: int) -> None:
    f = _pass_file(tmp_path, PASSWORD.encode() + b"\n", mode)
    with pytest.raises(UsageError) as err:
        read_sudo_password_file(str(f))
    assert err.value.message == (f"the sudo password file {f} is open to others (mode "
                                 f"{mode:04o}): refusing to use it")
    assert err.value.hint and err.value.hint.startswith(f"chmod 600 {f}")


@pytest.mark.parametrize(("content", "value"), [
    (b"pw\n", "pw"), (b"pw", "pw"), (PASSWORD.encode() + b"\n", PASSWORD),
    (b" spaced pw \n", " spaced pw "), ("pässwörd\n".encode(), "pässwörd"),
])
def test_one_trailing_newline_is_stripped(tmp_path: pathlib.Path, content: bytes,
                                          value: str) -> None:
    pw = read_sudo_password_file(str(_pass_file(tmp_path, content, 0o400)))
    assert pw.line() == (value + "\n").encode()


@pytest.mark.parametrize(("content", "says"), [
    (b"", "is empty"), (b"\n", "is empty"), (b"pw\n\n", "more than one line"),
    (b"pw\nsecond\n", "more than one line"), (b"pw\r\n", "more than one line"),
    (b"p\0w", "more than one line"), (b"\xff\xfe\n", "not UTF-8"),
    (b"x" * 5000, "larger than"),
])
def test_a_pass_file_that_is_not_one_password_line_is_refused_without_quoting_it(
        tmp_path: pathlib.Path, content: bytes, says: str) -> None:
    with pytest.raises(UsageError) as err:
        read_sudo_password_file(str(_pass_file(tmp_path, content)))
    assert says in err.value.message and "\n" not in err.value.message
    for part in (b"pw", b"second", b"xxxx"):
        if part in content:
            assert part.decode() not in err.value.message.replace(str(tmp_path), "")


def test_a_missing_file_or_a_directory_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(UsageError, match="cannot read the sudo password file .*: No such file"):
        read_sudo_password_file(str(tmp_path / "nope"))
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(UsageError, match="is not a regular file"):
        read_sudo_password_file(str(tmp_path / "d"))


def test_a_file_of_another_user_is_refused(tmp_path: pathlib.Path) -> None:
    f = _pass_file(tmp_path, b"pw\n")
    os.chown(f, 4242, 4242)  # tests run as root (make test): chown works
    with pytest.raises(UsageError, match="belongs to uid 4242"):
        read_sudo_password_file(str(f))


def _resolve(args: list[str], monkeypatch: pytest.MonkeyPatch,
             env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    """Run a command line in-process (no host is contacted: `inventory` lists the file)."""
    import io
    from contextlib import redirect_stderr

    from opskit import cli
    from opskit.commands.options import AppContext

    for name in ("OPSKIT_SUDO_PASS_FILE", "OPSKIT_SUDO_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    app = AppContext(argv=args)
    err = io.StringIO()
    with redirect_stderr(err):
        code = cli._run(app, args)
    return code, app.sudo_password, err.getvalue()


@pytest.fixture
def inv(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1, ansible_port: 1}\n")
    return path


def test_the_file_is_read_before_or_after_the_command_name(
        tmp_path: pathlib.Path, inv: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _pass_file(tmp_path, b"pw\n")
    for args in (["-i", str(inv), "--sudo-pass-file", str(f), "inventory"],
                 ["-i", str(inv), "inventory", "--sudo-pass-file", str(f)]):
        code, pw, _ = _resolve(args, monkeypatch)
        assert code == 0 and pw is not None and pw.source == f"file {f}"
        assert pw.line() == b"pw\n"


def test_the_environment_names_a_file_and_an_option_beats_it(
        tmp_path: pathlib.Path, inv: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _pass_file(tmp_path, b"from env\n")
    g = tmp_path / "other"
    g.write_bytes(b"from option\n")
    g.chmod(0o600)
    code, pw, _ = _resolve(["-i", str(inv), "inventory"], monkeypatch,
                           {"OPSKIT_SUDO_PASS_FILE": str(f)})
    assert code == 0 and pw is not None and pw.line() == b"from env\n"
    code, pw, _ = _resolve(["-i", str(inv), "--sudo-pass-file", str(g), "inventory"],
                           monkeypatch, {"OPSKIT_SUDO_PASS_FILE": str(f)})
    assert code == 0 and pw is not None and pw.line() == b"from option\n"


def test_a_bad_file_is_a_one_line_error_exit_1(
        tmp_path: pathlib.Path, inv: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _pass_file(tmp_path, PASSWORD.encode() + b"\n", 0o644)
    code, pw, said = _resolve(["-i", str(inv), "exec", "--sudo-pass-file", str(f), "--yes",
                               "--", "true"], monkeypatch)
    assert code == 1 and pw is None
    assert said.splitlines() == [
        f"error: the sudo password file {f} is open to others (mode 0644): refusing to use it",
        f"hint: chmod 600 {f} (only its owner may read it, as ssh wants of a private key)"]


def test_ask_without_a_tty_is_refused(inv: pathlib.Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Under pytest stdin is not a terminal.
    for args in (["-i", str(inv), "-K", "inventory"],
                 ["-i", str(inv), "exec", "--ask-sudo-pass", "--yes", "--", "true"]):
        code, pw, said = _resolve(args, monkeypatch)
        assert code == 1 and pw is None
        assert said.splitlines()[0] == ("error: --ask-sudo-pass needs a terminal to ask on "
                                        "(stdin is not a TTY)")
        assert "--sudo-pass-file" in said.splitlines()[1]


def test_ask_and_a_file_together_are_refused(tmp_path: pathlib.Path, inv: pathlib.Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    f = _pass_file(tmp_path, b"pw\n")
    code, _, said = _resolve(["-i", str(inv), "-K", "inventory", "--sudo-pass-file", str(f)],
                             monkeypatch)
    assert code == 1 and said.startswith("error: --ask-sudo-pass and --sudo-pass-file both")


def test_a_password_in_the_environment_is_refused_not_ignored(
        inv: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, pw, said = _resolve(["-i", str(inv), "inventory"], monkeypatch,
                              {"OPSKIT_SUDO_PASSWORD": PASSWORD})
    assert code == 1 and pw is None and PASSWORD not in said
    assert said.startswith("error: OPSKIT_SUDO_PASSWORD is not read")


def test_asked_once_on_a_terminal(inv: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        asked.append(prompt)
        return PASSWORD

    monkeypatch.setattr("opskit.commands.options.getpass.getpass", fake_getpass)
    monkeypatch.setattr("opskit.output.sys.stdin", _Tty())
    code, pw, _ = _resolve(["-i", str(inv), "-K", "inventory", "--ask-sudo-pass"], monkeypatch)
    assert code == 0 and asked == ["sudo password: "]
    assert pw is not None and pw.source == "the prompt"


class _Tty:
    def isatty(self) -> bool:
        return True


def test_the_journal_argv_keeps_the_word_after_ask_sudo_pass() -> None:
    assert mask_argv(["-K", "--ask-sudo-pass", "exec", "--sudo-pass-file", "/f", "--", "id"]) \
        == ["-K", "--ask-sudo-pass", "exec", "--sudo-pass-file", "/f", "--", "id"]


def test_a_rejected_password_is_not_tried_again_for_another_user(
        fake_sudo: pathlib.Path) -> None:
    s = _login("not it")
    with pytest.raises(SudoRefused):
        s.run("true", sudo=True)
    with pytest.raises(SudoRefused) as err:
        s.run("true", as_user="postgres")
    assert err.value.password_rejected
    assert len(_calls(fake_sudo)) == 2  # the first probe's sudo -n and sudo -S only
