"""`--sudo` and the runbooks' sudo steps against real sudo, logged in as the lab's non-root users.

Every lab host has ``ops`` (passwordless sudo) and ``dev`` (sudo only with dev's password, in
the lab's state dir), see docs/lab.md; ``lab-ops.yml`` and ``lab-dev.yml`` beside the lab's
inventory reach the hosts as ops and dev. The sudo password (``-K`` typed on a pty,
``--sudo-pass-file``) is looked for where it must never be: ``ps`` while the command runs, the
journal, the output. What a command did is checked on the host itself (in its namespace), not
only from opskit's output. /root is the machine's own (lab hosts share it), so the files a test
makes there carry a unique name and are removed after it.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from helpers import from_the_start

import opskit.lab as labmod
from opskit.lab import LabStatus, pg_service

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]



def opskit(inv: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          stdin=subprocess.DEVNULL, env=dict(os.environ))


def exec_json(inv: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = opskit(inv, "exec", "--json", "--yes", *args)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON (rc {proc.returncode}): {proc.stdout!r} "
                             f"{proc.stderr!r}") from None


def on_host(lab: LabStatus, name: str, script: str) -> subprocess.CompletedProcess[str]:
    """``sh -c script`` as root inside the lab host (its namespace), not through opskit."""
    return labmod.run_in_host(name, ["sh", "-c", script], state_dir=lab.state_dir, timeout=30)


@pytest.fixture
def ops_inv(lab: LabStatus) -> Path:
    path = labmod.ops_inventory_path(lab.inventory_path)
    assert yaml.safe_load(path.read_text())["all"]["vars"]["ansible_user"] == labmod.OPS_USER
    return path


@pytest.fixture
def dev_inv(lab: LabStatus) -> Path:
    """The lab inventory reaching the hosts as ``dev``, whose sudo wants a password."""
    path = labmod.dev_inventory_path(lab.inventory_path)
    assert yaml.safe_load(path.read_text())["all"]["vars"]["ansible_user"] == labmod.DEV_USER
    return path


@pytest.fixture
def root_file(lab: LabStatus) -> Iterator[str]:
    """A path under /root nobody has made yet; removed after the test."""
    path = f"/root/opskit-sudo-test-{uuid.uuid4().hex[:12]}"
    yield path
    on_host(lab, "app1", f"rm -f {path}")


@pytest.fixture
def trap_dir(lab: LabStatus) -> Iterator[str]:
    """A world-writable dir private to app1 (/srv is per host): whatever a command leaks
    outside its elevated shell could write here as ops, and would show."""
    path = f"/srv/opskit-sudo-trap-{uuid.uuid4().hex[:8]}"
    assert on_host(lab, "app1", f"mkdir -m 1777 {path}").returncode == 0
    yield path
    on_host(lab, "app1", f"rm -rf {path}")


def owners(lab: LabStatus, directory: str) -> dict[str, str]:
    out = on_host(lab, "app1", f"cd {directory} && stat -c '%n %U' -- * 2>/dev/null || true")
    return dict(line.rsplit(" ", 1) for line in out.stdout.splitlines() if line.strip())


# ---------------------------------------------------------------- exec --sudo


def test_sudo_runs_the_whole_command_as_root(lab: LabStatus, ops_inv: Path,
                                             root_file: str) -> None:
    proc = opskit(ops_inv, "exec", "--sudo", "-l", "app1", "--yes", "--",
                  f"id -u && touch {root_file}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "  0\n" in proc.stdout
    made = on_host(lab, "app1", f"stat -c %u {root_file}")
    assert made.returncode == 0 and made.stdout.strip() == "0"


def test_without_sudo_the_command_runs_as_ops_and_fails(lab: LabStatus, ops_inv: Path,
                                                        root_file: str) -> None:
    code, doc = exec_json(ops_inv, "-l", "app1", "--", f"id -un && touch {root_file}")
    assert code == 2
    (host,) = doc["hosts"]
    assert host["status"] == "failed" and host["stdout"].strip() == labmod.OPS_USER
    assert "Permission denied" in host["stderr"]
    assert on_host(lab, "app1", f"test -e {root_file}").returncode == 1


def test_every_part_of_a_compound_command_runs_elevated(ops_inv: Path) -> None:
    code, doc = exec_json(ops_inv, "--sudo", "-l", "app1:db1", "--",
                          "export X=1; id -u; true && id -u; false || id -u; "
                          "(id -u); echo $(id -u) | cat; "
                          'echo "$OPSKIT_HOST:$X:$(id -un):$SUDO_USER"')
    assert code == 0, doc
    lines = {h["host"]: h["stdout"].splitlines() for h in doc["hosts"]}
    for name in ("app1", "db1"):
        assert lines[name] == ["0"] * 5 + [f"{name}:1:root:ops"]


def test_root_login_is_not_wrapped(lab: LabStatus) -> None:
    # As root, --sudo is a no-op: no sudo ran, so sudo set no SUDO_USER.
    code, doc = exec_json(lab.inventory_path, "--sudo", "-l", "app1", "--",
                          'echo "$(id -u):${SUDO_USER:-none}"')
    assert code == 0 and doc["hosts"][0]["stdout"].strip() == "0:none"


def test_quotes_and_dollars_arrive_intact(ops_inv: Path) -> None:
    cmd = "printf '%s|' \"it's\" '$HOME' \"a  b\" '\\n' '\"q\"' '`x`'; echo"
    code, doc = exec_json(ops_inv, "--sudo", "-l", "app1", "--", cmd)
    assert code == 0, doc
    assert doc["hosts"][0]["stdout"] == "it's|$HOME|a  b|\\n|\"q\"|`x`|\n"


def test_a_hostile_command_stays_one_word_under_sh_c(lab: LabStatus, ops_inv: Path,
                                                     trap_dir: str) -> None:
    # Naively wrapped as sudo sh -c '<cmd>', the first ' would end sh -c's word and
    # `touch` would run in ops's login shell; quoted whole, it is only text for echo.
    cmd = f"echo \"'; touch {trap_dir}/out-as-$(id -u); echo '\""
    code, doc = exec_json(ops_inv, "--sudo", "-l", "app1", "--", cmd)
    assert code == 0, doc
    assert doc["hosts"][0]["stdout"] == f"'; touch {trap_dir}/out-as-0; echo '\n"
    assert owners(lab, trap_dir) == {}
    # Everything a command of ; $(...) ` and quotes does happens in the root shell.
    cmd = (f"cd {trap_dir}; touch 'a;b' \"c'd\"; echo $(touch e) `touch f`; "
           "id -u > g; (touch h) && touch i || touch never")
    code, doc = exec_json(ops_inv, "--sudo", "-l", "app1", "--", cmd)
    assert code == 0, doc
    assert owners(lab, trap_dir) == {n: "root" for n in ("a;b", "c'd", "e", "f", "g", "h", "i")}
    assert on_host(lab, "app1", f"cat {trap_dir}/g").stdout == "0\n"


def test_a_sudo_that_wants_a_password_fails_fast_with_a_hint(lab: LabStatus, dev_inv: Path,
                                                            root_file: str) -> None:
    started = time.monotonic()
    code, doc = exec_json(dev_inv, "--sudo", "-l", "app1:db1", "--", f"touch {root_file}")
    assert time.monotonic() - started < 30  # never waits on a prompt
    assert code == 2
    for host in doc["hosts"]:
        assert host["status"] == "failed"
        assert host["error"] == (f"sudo refused to run as root on {host['host']}: "
                                 "sudo: a password is required")
        assert "NOPASSWD" in host["hint"] and "\n" not in host["error"]
    assert on_host(lab, "app1", f"test -e {root_file}").returncode == 1
    table = opskit(dev_inv, "exec", "--sudo", "-l", "app1", "--yes", "--", "true")
    assert table.returncode == 2 and "hint: opskit runs sudo -n" in table.stdout + table.stderr


def test_a_failing_command_under_sudo_is_not_called_a_refusal(ops_inv: Path) -> None:
    code, doc = exec_json(ops_inv, "--sudo", "-l", "app1", "--", "echo no >&2; exit 1")
    assert code == 2
    assert doc["hosts"][0]["error"] == "exit status 1" and doc["hosts"][0]["hint"] is None


# ---------------------------------------------------------------- runbooks as ops


def _query(lab: LabStatus, name: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(host=lab.host(name).address, port=5432, dbname="app", user="repmgr",
                         connect_timeout=3, autocommit=True) as c:
        return c.execute(sql).fetchall()  # type: ignore[arg-type]


def _bouncer_target(lab: LabStatus) -> str:
    with psycopg.connect(host=lab.host("lb1").address, port=6432, dbname="pgbouncer",
                         user="pgbouncer", autocommit=True, connect_timeout=3) as c:
        c.prepare_threshold = None
        rows = c.execute("SHOW DATABASES").fetchall()
    return next(str(r[1]) for r in rows if r[0] == "app")


def _initial(lab: LabStatus) -> bool:
    try:
        return (_query(lab, "db1", "select pg_is_in_recovery()")[0][0] is False
                and all(_query(lab, n, "select status from pg_stat_wal_receiver")
                        == [("streaming",)] for n in ("db2", "db3"))
                and _bouncer_target(lab) == lab.host("db1").address)
    except (psycopg.Error, IndexError, StopIteration):
        return False


@pytest.fixture
def cluster(lab: LabStatus) -> Iterator[LabStatus]:
    """db1 primary, db2 and db3 streaming from it, PgBouncer on db1: before and after."""
    yield from from_the_start(lab, lambda: _initial(lab),
                              lambda: pg_service.reset_cluster(lab.state_dir), "db1 -> db2, db3")


def test_pg_status_as_ops_goes_through_sudo_to_postgres(cluster: LabStatus,
                                                        ops_inv: Path) -> None:
    proc = opskit(ops_inv, "pg", "status", "-l", "db", "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, doc["warnings"]
    roles = {n["name"]: n["role"] for n in doc["nodes"]}
    assert roles == {"db1": "primary", "db2": "standby", "db3": "standby"}
    assert doc["pgbouncer"][0]["targets"]["app"] == f"{cluster.host('db1').address}:5432"


def test_pg_status_as_dev_names_the_refusing_sudo(cluster: LabStatus, dev_inv: Path) -> None:
    proc = opskit(dev_inv, "pg", "status", "-l", "db", "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode != 0
    errors = {n["name"]: n["error"] for n in doc["nodes"]}
    assert errors["db1"] == "sudo refused to run as postgres on db1: sudo: a password is required"


def test_pg_switchover_as_ops(cluster: LabStatus, ops_inv: Path) -> None:
    # Every step that acts goes through sudo: pg_ctl/repmgr/psql as postgres
    # (sudo -n -u postgres), the PgBouncer ini rewrite as root (sudo -n).
    proc = opskit(ops_inv, "pg", "switchover", "-l", "db", "--to", "db2", "--yes", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert _query(cluster, "db2", "select pg_is_in_recovery()")[0][0] is False
    assert _bouncer_target(cluster) == cluster.host("db2").address
    ini = on_host(cluster, "lb1", "stat -c %U /etc/opskit-lab/pgbouncer/pgbouncer.ini")
    assert ini.stdout.strip() != labmod.OPS_USER


# ---------------------------------------------------------------- dev: a sudo password


@pytest.fixture
def dev_password(lab: LabStatus) -> str:
    path = labmod.dev_password_path(Path(lab.state_dir))
    assert path.stat().st_mode & 0o777 == 0o600
    return path.read_text().removesuffix("\n")


class PsWatch:
    """``ps -eo args`` on a lab host, again and again while a command runs (lab hosts share the
    machine's pid namespace: the operator's opskit shows there too)."""

    def __init__(self, lab: LabStatus, host: str) -> None:
        self.lab, self.host, self.samples = lab, host, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(on_host(self.lab, self.host, "ps -eo args").stdout)

    def __enter__(self) -> PsWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def run_on_pty(argv: list[str], password: str, timeout: float = 120) -> tuple[int, str, int]:
    """Run opskit on a pseudo-terminal, type ``password`` at its sudo prompt: exit code, what
    the terminal showed, how many times it asked."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin/stdout/stderr are the terminal
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "opskit", *argv])
    out, asked = b"", 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if out.count(b"sudo password:") > asked:
            asked += 1
            os.write(fd, password.encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return (os.waitstatus_to_exitcode(status), out.decode(errors="replace").replace("\r\n", "\n"),
            asked)


def assert_nowhere(password: str, *texts: str) -> None:
    """Neither the password nor its random part (the lab's mixes in fixed words) shows."""
    secret = password.split()[0]
    assert len(secret) >= 12
    for text in texts:
        assert password not in text and secret not in text


def journal_text() -> str:
    path = Path(os.environ["OPSKIT_JOURNAL"])
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("how", ["file", "prompt"])
def test_exec_sudo_as_dev_with_its_password(lab: LabStatus, dev_inv: Path, dev_password: str,
                                            root_file: str, how: str) -> None:
    # `cat` shows what the step's stdin held after sudo read its line: nothing.
    cmd = f"sleep 1; touch {root_file}; id -u; cat; echo done"
    args = ["-i", str(dev_inv), "exec", "--sudo", "-l", "app1", "--yes", "--", cmd]
    with PsWatch(lab, "app1") as ps:
        if how == "file":
            proc = opskit(dev_inv, *args[2:3], "--sudo-pass-file",
                          str(labmod.dev_password_path(Path(lab.state_dir))), *args[3:])
            code, shown, asked = proc.returncode, proc.stdout + proc.stderr, 0
        else:
            code, shown, asked = run_on_pty([*args[:3], "-K", *args[3:]], dev_password)
            assert asked == 1, shown
    assert code == 0, shown
    assert "0\n" in shown and "done" in shown
    assert on_host(lab, "app1", f"stat -c %u {root_file}").stdout.strip() == "0"
    # ps caught the step under sudo -S (so it looked while it ran), never the password.
    assert any("sudo -S -k -p  -- sh -c export OPSKIT_HOST=app1; sleep 1;" in x
               for x in ps.samples), ps.samples[-1:]
    assert_nowhere(dev_password, shown, journal_text(), *ps.samples)


@pytest.mark.parametrize("how", ["file", "prompt"])
def test_a_pg_runbook_as_dev_takes_the_lease_through_sudo_with_its_password(
        cluster: LabStatus, dev_inv: Path, dev_password: str, how: str) -> None:
    # --to the primary itself: the runbook takes the cluster lease on the lock hosts (the
    # lease program as root, its record on stdin after the password line) and gathers the
    # state as postgres, then its preflight refuses (exit 4): nothing changes. Without the
    # password, the lease itself is refused by sudo.
    args = ["-i", str(dev_inv), "pg", "switchover", "-l", "db1:db2:db3", "--to", "db1",
            "--yes"]
    with PsWatch(cluster, "db1") as ps:
        if how == "file":
            proc = opskit(dev_inv, *args[2:4], "--sudo-pass-file",
                          str(labmod.dev_password_path(Path(cluster.state_dir))), *args[4:])
            code, shown = proc.returncode, proc.stdout + proc.stderr
        else:
            code, shown, asked = run_on_pty([*args[:2], "-K", *args[2:]], dev_password)
            assert asked == 1, shown
    # Past the lease (taken, then released) to the preflight's refusal.
    assert code == 4 and "cannot lock" not in shown, shown
    assert "refusing to switch over" in shown and "db1" in shown
    assert_nowhere(dev_password, shown, journal_text(), *ps.samples)
    without = opskit(dev_inv, *args[2:])
    said = without.stdout + without.stderr
    assert "cannot lock the PostgreSQL cluster" in said and "a password is required" in said
    assert "refusing to switch over" not in said
    assert _query(cluster, "db1", "select pg_is_in_recovery()")[0][0] is False


def test_a_wrong_sudo_password_is_one_line_and_fast(lab: LabStatus, dev_inv: Path,
                                                    tmp_path: Path, root_file: str) -> None:
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not-dev's-password\n")
    wrong.chmod(0o600)
    started = time.monotonic()
    code, doc = exec_json(dev_inv, "--sudo", "--sudo-pass-file", str(wrong), "-l", "app1:db1",
                          "--", f"touch {root_file}")
    took = time.monotonic() - started
    assert code == 2
    for host in doc["hosts"]:
        assert host["status"] == "failed"
        assert host["error"] == (f"sudo on {host['host']} rejected the sudo password of dev "
                                 "(to run as root): sudo: 1 incorrect password attempt")
        assert "--sudo-pass-file" in host["hint"]
    # One try (PAM's delay after a failure, about 1-2 s), not three and no wait on a prompt.
    assert took < 8, took
    assert on_host(lab, "app1", f"test -e {root_file}").returncode == 1
    assert "not-dev's-password" not in json.dumps(doc) + journal_text()


def test_the_payload_after_the_password_line_arrives_byte_for_byte(lab: LabStatus,
                                                                   dev_password: str) -> None:
    """run_input as dev through sudo -S: sudo reads the password line, the step all the rest
    (a line that looks like the password included)."""
    from opskit.inventory import load
    from opskit.transport.connection import ConnectOptions, connect
    from opskit.transport.session import Session, SudoPassword

    host = load(str(labmod.dev_inventory_path(lab.inventory_path))).select("app1")[0]
    conn = connect(host, ConnectOptions())
    try:
        s = Session(host, conn, sudo_password=SudoPassword(dev_password, "test"))
        payload = b"\n\x00\xff\r\n" + dev_password.encode() + b"\nend without newline"
        out = s.run_input("id -u; od -An -v -tx1 | tr -d ' \\n'", payload, sudo=True)
        assert out.stdout == "0\n" + payload.hex()
        out = s.run_input("id -un; wc -c", payload, as_user="postgres")
        assert out.stdout.split() == ["postgres", str(len(payload))]
    finally:
        conn.close()
