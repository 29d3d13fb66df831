"""A long-running command on a host that we talk to over stdin/stdout (e.g. the freeze guard).

``Session.run`` is for steps that run to completion; this is for a dialogue: start, read a
line, act locally, write a line, wait. Over SSH it is a raw channel on the host's one
connection; for a local host, a subprocess.
"""

from __future__ import annotations

import select
import subprocess
import time
from typing import Protocol

from fabric import Connection

from opskit.transport.errors import ProcessTimeout


class HostProcess(Protocol):
    def readline(self, timeout: float) -> str: ...
    def write(self, text: str) -> None: ...
    def close_stdin(self) -> None: ...
    def wait(self, timeout: float) -> int | None: ...
    def kill(self) -> None: ...


class ChannelProcess:
    def __init__(self, conn: Connection, command: str) -> None:
        transport = conn.client.get_transport()
        assert transport is not None, "connection is not open"
        self.chan = transport.open_session()
        self.chan.exec_command(command)
        self._buf = b""

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProcessTimeout(f"no answer within {timeout:g}s")
            self.chan.settimeout(left)
            try:
                data = self.chan.recv(4096)
            except TimeoutError:
                continue
            if not data:
                rest, self._buf = self._buf, b""
                return rest.decode(errors="replace")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace")

    def write(self, text: str) -> None:
        self.chan.sendall(text.encode())

    def close_stdin(self) -> None:
        self.chan.shutdown_write()

    def wait(self, timeout: float) -> int | None:
        # paramiko sets status_event when the exit status arrives: no polling.
        if not self.chan.status_event.wait(timeout):
            return None
        return self.chan.recv_exit_status()

    def kill(self) -> None:
        self.chan.close()


class LocalProcess:
    def __init__(self, command: str) -> None:
        self.proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise ProcessTimeout(f"no answer within {timeout:g}s")
        return self.proc.stdout.readline().rstrip("\n")

    def write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.kill()


def start(conn: object, command: str) -> HostProcess:
    """Start ``command`` (already quoted) on the host behind ``conn``."""
    if isinstance(conn, Connection):
        return ChannelProcess(conn, command)
    return LocalProcess(command)


def run_with_input(conn: object, command: str, data: bytes,
                   timeout: float | None) -> tuple[str, str, int]:
    """Run ``command`` (already quoted) with ``data`` on its stdin; (stdout, stderr, status).

    Streams bytes (an artifact) without SFTP: no sftp-server to start on the host, and the
    receiving script can check and unpack in the same round trip.
    """
    if not isinstance(conn, Connection):
        proc = subprocess.run(["sh", "-c", command], input=data, capture_output=True,
                              timeout=timeout)
        return (proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"),
                proc.returncode)
    transport = conn.client.get_transport()
    assert transport is not None, "connection is not open"
    chan = transport.open_session()
    try:
        chan.settimeout(timeout)
        chan.exec_command(command)
        try:
            chan.sendall(data)
        except OSError:
            pass  # the command exited without reading it all: its status says why
        chan.shutdown_write()
        # Read stdout to EOF while stderr collects in paramiko's buffer (small for our steps).
        out = chan.makefile("rb").read()
        err = chan.makefile_stderr("rb").read()
        return (out.decode(errors="replace"), err.decode(errors="replace"),
                chan.recv_exit_status())
    finally:
        chan.close()
