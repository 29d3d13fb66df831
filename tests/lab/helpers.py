"""What the lab tests share: waiting for a condition, stopping a host's sshd, running the
`opskit` CLI as a user does (a real process, --json parsed, runbook steps explained),
redis-cli against a lab Redis instance (AUTH and TLS as its group wants), and a moto server
of a test module's own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import opskit.lab as labmod
from opskit.lab import LabStatus

ROOT = Path(__file__).resolve().parents[2]


def redis_cli(lab: LabStatus, name: str, *args: str, port: int = 6379,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """redis-cli from this machine against host ``name``'s instance on ``port``: group main
    (6379) with REDISCLI_AUTH from the lab's state dir (``env`` replaces that environment),
    group tls (6380) with the host's client certificate (redis_service.machine_cli)."""
    from opskit.lab import redis_service

    return subprocess.run(redis_service.machine_cli(lab.host(name), *args, port=port),
                          capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL,
                          env=redis_service.machine_env(lab.state_dir, port) if env is None
                          else env)  # fmt: skip


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``predicate`` until it is truthy or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            return value
        time.sleep(0.05)
    return value


def stop_sshd(lab: LabStatus, name: str) -> None:
    """SIGTERM the host's sshd and wait (up to 5 s) until it is gone: the host is unreachable."""
    pid = labmod.host_pid(name, state_dir=lab.state_dir)
    assert pid
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5)


def run_opskit(inv: Path, *args: str, journal: Path | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``opskit -i INV ARGS`` in a subprocess, no stdin (``journal``: OPSKIT_JOURNAL)."""
    env = dict(os.environ)
    if journal is not None:
        env["OPSKIT_JOURNAL"] = str(journal)
    return subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL)


def run_json(inv: Path, *args: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    """:func:`run_opskit` with ``--json``: the exit code and the parsed document."""
    proc = run_opskit(inv, *args, "--json", **kw)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON (rc {proc.returncode}): {proc.stdout!r} "
                             f"{proc.stderr!r}") from None


def explain(doc: dict[str, Any]) -> str:
    """A failed runbook's error and steps, for assertion messages."""
    steps = "\n".join(f"  {s['n']}. {s['title']}: {s['status']} {s['detail'][:400]}"
                      for s in doc.get("steps", []))
    return f"{doc.get('error')} ({doc.get('hint')})\n{steps}"


def from_the_start(lab: LabStatus, is_initial: Callable[[], Any], reset: Callable[[], None],
                   what: str) -> Iterator[LabStatus]:
    """The body of a fixture that runs a test from a lab service's starting topology (db1
    primary, redis1 master, ...): ``reset`` before the test when ``is_initial`` says it is not
    there, and again after the test when the test changed it. Use as ``yield from``."""
    if not is_initial():
        reset()
    assert wait_for(is_initial), f"{what}: the reset did not restore the starting topology"
    yield lab
    if not is_initial():
        reset()


# Fake credentials and no config files: boto3 must never reach a real account or wait for an
# instance role off EC2.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_moto() -> Iterator[str]:
    """A moto server on 127.0.0.1 of the caller's own (the lab's serves its ELB), with
    AWS_ENV set meanwhile: its endpoint URL."""
    import pytest
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for key, value in AWS_ENV.items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(key, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


def drop_lease(state_dir: Path, host: str, scope: str) -> None:
    """Remove a lease file on a lab host by hand: for a test that cut opskit's own connections
    (its lease could not be released, and would block the next test until its ttl)."""
    import opskit.lab as labmod

    labmod.run_in_host(host, ["rm", "-f", f"/var/lib/opskit/locks/{scope}.lease"],
                       state_dir=state_dir, timeout=10)


class Writer:
    """An application writing through a PgBouncer in a thread until stopped: one insert of a
    new id into ``table`` per new connection (as after a pool reset), every 10 ms. ``acked``
    are the ids whose insert returned (committed, acknowledged); a failed or cut one may or
    may not have committed, so only ``acked`` is checked against the data."""

    def __init__(self, address: str, table: str, port: int = 6432) -> None:
        self.address, self.table, self.port = address, table, port
        self.acked: list[int] = []
        self.failed = 0
        self.started_at = 0.0  # the attempt under way started then (0.0: none under way)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psycopg

        n = 0
        while not self._stop.is_set():
            n += 1
            self.started_at = time.monotonic()
            try:
                with psycopg.connect(host=self.address, port=self.port, dbname="app",
                                     user="app", connect_timeout=3, autocommit=True) as c:
                    c.execute(f"insert into {self.table} values (%s)", (n,), prepare=False)
                self.acked.append(n)
            except psycopg.Error:
                self.failed += 1
            self.started_at = 0.0
            time.sleep(0.01)

    def waiting_since(self, t: float) -> bool:
        """An attempt started after ``t`` has not ended yet (PgBouncer holds it)."""
        return self.started_at > t

    def stop(self) -> list[int]:
        """Stop and join; the acknowledged ids."""
        self._stop.set()
        self._thread.join(timeout=150)  # PgBouncer's query_wait_timeout is 120 s
        assert not self._thread.is_alive(), "the writer is stuck"
        return self.acked


class ExecWatch:
    """Every program started on some lab hosts while the block runs, each with its whole argv
    (``.lines``: strace's execve lines). strace follows the hosts' sshds (``-f``: every session
    and the shells, sudo and tools under it), so a short-lived process cannot slip between two
    looks the way it can past a ``ps`` sampler on a busy machine. Environments are not shown
    (``/* N vars */``): the environment is where a secret may go, argv is where it must not."""

    def __init__(self, lab: LabStatus, hosts: list[str], log: Path) -> None:
        now = labmod.status(state_dir=lab.state_dir)
        self.pids = [now.host(h).pid for h in hosts]
        self.log = log
        self.lines: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ExecWatch:
        argv = ["strace", "-f", "-qq", "-s", "65536", "-e", "trace=execve", "-o", str(self.log)]
        for pid in self.pids:
            argv += ["-p", str(pid)]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tracer = str(self._proc.pid)
        assert wait_for(lambda: all(_tracer(pid) == tracer for pid in self.pids), timeout=10), \
            "strace did not attach to the hosts' sshds"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)  # strace detaches and exits
        self._proc.wait(timeout=30)
        self.lines = [ln for ln in self.log.read_text(errors="replace").splitlines()
                      if "execve(" in ln]


def _tracer(pid: int | None) -> str | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((ln.split()[1] for ln in status.splitlines() if ln.startswith("TracerPid:")),
                None)
