"""The lab's AWS: one moto server process per lab on 127.0.0.1:(lab port + 3000).

Launched like the sshds (``setsid -f sh -c 'echo $$ > PIDFILE; exec python -m moto.server'``):
an orphan in its own session, never our child, so no zombie or fd is left in the caller,
and the pid the script records is the server's (sh execs it). The server's environment
carries ``OPSKIT_LAB_AWS=<state_dir>``, so ``down`` can prove a pid is this lab's server
(and find one whose pid was lost) before it signals anything.

The server keeps everything in memory: a restarted server is empty, and
``aws_resources.provision`` then creates the lab's instances again.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shlex
import subprocess
import sys
import time

from opskit.errors import LabError
from opskit.lab import net, procs
from opskit.lab.state import AwsServerRecord
from opskit.runner import wait

HOST = "127.0.0.1"
PORT_OFFSET = 3000  # lab port 2222 -> 5222, the test lab's 2322 -> 5322
MARKER_ENV = "OPSKIT_LAB_AWS"
READY_TIMEOUT = 20.0  # a cold start (imports) takes ~1 s; 2 busy cores make it slower


def aws_port(lab_port: int) -> int:
    port = lab_port + PORT_OFFSET
    if port > 65535:
        raise LabError(
            f"the lab's moto server would need port {port} (lab port + {PORT_OFFSET})",
            hint=f"use a lab port up to {65535 - PORT_OFFSET}, e.g. --port 2222",
        )
    return port


def endpoint_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def aws_dir(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / "aws"


def log_path(state_dir: pathlib.Path) -> pathlib.Path:
    return aws_dir(state_dir) / "moto_server.log"


def _pid_path(state_dir: pathlib.Path) -> pathlib.Path:
    return aws_dir(state_dir) / "moto_server.pid"


def is_lab_server(pid: int | None, state_dir: pathlib.Path, port: int | None = None) -> bool:
    """True if ``pid`` is a live moto server of this state dir (and on ``port``, if given)."""
    if not procs.alive(pid):
        return False
    assert pid is not None
    line = f" {procs.cmdline(pid)} "
    if " moto.server " not in line and "moto_server " not in line:
        return False
    if port is not None and f" -p {port} " not in line:
        return False
    return _environ(pid).get(MARKER_ENV) == str(state_dir)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = pathlib.Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def find(state_dir: pathlib.Path, rec: AwsServerRecord | None) -> list[int]:
    """Live moto servers of this state dir: the recorded one, plus any whose pid was lost."""
    found = [rec.pid] if rec and rec.pid and is_lab_server(rec.pid, state_dir) else []
    for pid in procs.pids():
        if pid not in found and "moto" in procs.cmdline(pid):
            if is_lab_server(pid, state_dir):
                found.append(pid)
    return found


def check_installed() -> None:
    missing = [m for m in ("moto", "flask") if importlib.util.find_spec(m) is None]
    if missing:
        raise LabError(
            f"the lab's AWS needs the moto server ({', '.join(missing)} not installed)",
            hint="pip install 'moto[server]>=5' (part of the test extra: pip install -e '.[test]')",
        )


def ensure_started(
    state_dir: pathlib.Path, port: int, old: AwsServerRecord | None
) -> AwsServerRecord:
    """Keep this lab's server on ``port``, or launch one (without waiting; see wait_ready).

    A server of this state dir on another port (the lab's port changed) is stopped first.
    """
    running = find(state_dir, old)
    keep = [pid for pid in running if is_lab_server(pid, state_dir, port)][:1]
    stale = [pid for pid in running if pid not in keep]
    if stale:
        procs.terminate(stale)
    if keep:
        started = old.started_at if old and old.pid == keep[0] else None
        return AwsServerRecord(pid=keep[0], port=port, started_at=started)
    check_installed()
    _launch(state_dir, port)
    return AwsServerRecord(pid=None, port=port)


def _launch(state_dir: pathlib.Path, port: int) -> None:
    adir = aws_dir(state_dir)
    adir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _pid_path(state_dir).unlink(missing_ok=True)
    q = shlex.quote
    # `python -m moto.server` of *this* interpreter: the venv's moto, whatever PATH says.
    server = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    script = f"echo $$ > {q(str(_pid_path(state_dir)))}\nexec {shlex.join(server)}"
    env = {**os.environ, MARKER_ENV: str(state_dir)}
    with open(log_path(state_dir), "ab") as log:
        starter = subprocess.Popen(  # returns at once: `setsid -f` forks and exits
            ["setsid", "-f", "sh", "-ec", script, "opskit-lab-moto"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
            start_new_session=True,
            env=env,
        )
    if starter.wait(timeout=10) != 0:
        raise LabError("could not launch the lab's moto server", hint=_log_hint(state_dir))


def wait_ready(
    state_dir: pathlib.Path, rec: AwsServerRecord, timeout: float = READY_TIMEOUT
) -> None:
    """Wait until the server answers HTTP; fill in rec.pid/started_at. Fails fast if it dies."""
    def probe() -> tuple[bool, str]:
        if rec.pid is None:
            pid = procs.read_pid_file(_pid_path(state_dir))
            if pid is not None and is_lab_server(pid, state_dir, rec.port):
                rec.pid, rec.started_at = pid, time.time()
        if rec.pid is None:
            return False, "no pid file yet"
        if not procs.alive(rec.pid):
            raise LabError("the lab's moto server exited at start", hint=_log_hint(state_dir))
        return answering(rec.port), "not answering"

    try:
        wait.until(probe, what="the moto server", timeout=timeout, interval=0.05)
    except wait.WaitTimedOut:
        raise LabError(
            f"the lab's moto server did not answer on port {rec.port} within {timeout:.0f} s",
            hint=_log_hint(state_dir),
        ) from None


def answering(port: int, timeout: float = 1.0) -> bool:
    """True if a moto server answers on 127.0.0.1:port (its /moto-api/ page)."""
    return net.http_status(f"{endpoint_url(port)}/moto-api/", timeout) == 200


def stop(state_dir: pathlib.Path, pids: list[int]) -> tuple[list[str], list[int]]:
    """Stop the given (already verified) servers; (lines, pids that would not die)."""
    left = procs.terminate(pids)
    lines = [f"stopped moto server (pid {pid})" for pid in pids if pid not in left]
    if not left:
        for path in (_pid_path(state_dir), log_path(state_dir)):
            path.unlink(missing_ok=True)
        try:
            aws_dir(state_dir).rmdir()
        except OSError:
            pass
    return lines, left


def _log_hint(state_dir: pathlib.Path) -> str:
    path = log_path(state_dir)
    try:
        tail = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        tail = []
    last = f": {tail[-1].strip()}" if tail else ""
    return f"see {path}{last} (port in use by another lab? try `opskit lab down` or --port)"
