"""One host's side of an operation: run steps over one reused connection.

Every step goes through :meth:`Session.run` so that output is captured for the host's result,
the command timeout applies, an interrupt stops the operation between steps, and the
environment is exported with quoted values (Fabric's own ``env=`` does not quote).
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from fabric import Connection
from invoke import Context
from invoke.exceptions import CommandTimedOut as InvokeTimedOut
from invoke.exceptions import UnexpectedExit

from opskit.inventory import Host
from opskit.transport import process
from opskit.transport.errors import CommandFailed, CommandTimedOut, Interrupted
from opskit.transport.process import HostProcess

TAIL_CHARS = 4000
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class StepOutput:
    command: str
    stdout: str
    stderr: str
    exit_status: int


@dataclass
class Session:
    host: Host
    conn: Connection | Context
    command_timeout: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    last_exit_status: int | None = None
    # Optional live streams (e.g. prefixing writers for `exec --stream`).
    out_stream: IO[str] | None = None
    err_stream: IO[str] | None = None
    # While set, steps run even after Ctrl-C: recovery (e.g. a rollback) must not be cut short.
    finishing: bool = False

    @property
    def is_root(self) -> bool:
        if isinstance(self.conn, Connection):
            return self.conn.user == "root"
        return os.geteuid() == 0

    @property
    def user(self) -> str:
        if isinstance(self.conn, Connection):
            return str(self.conn.user)
        return getpass.getuser()

    def run(
        self,
        command: str,
        *,
        sudo: bool = False,
        check: bool = True,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> StepOutput:
        """Run one shell command on the host. The caller has quoted every value in it."""
        self._check_stop()
        if env:
            bad = [k for k in env if not _ENV_NAME.match(k)]
            if bad:
                raise ValueError(f"not an environment variable name: {bad[0]!r}")
            exports = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in sorted(env.items()))
            command = f"export {exports}; {command}"
        kwargs: dict[str, Any] = {
            "hide": True,
            "warn": True,
            "in_stream": False,
            "timeout": timeout if timeout is not None else self.command_timeout,
        }
        if self.out_stream is not None:
            kwargs.update(hide=False, out_stream=self.out_stream, err_stream=self.err_stream)
        try:
            if sudo and not self.is_root:
                result = self.conn.sudo(command, **kwargs)
            else:
                result = self.conn.run(command, **kwargs)
        except InvokeTimedOut as exc:
            self._capture(exc.result.stdout, exc.result.stderr, None)
            raise CommandTimedOut(f"timed out after {exc.timeout:g}s") from None
        except UnexpectedExit as exc:  # only raised with warn=False; kept for sudo prompts
            result = exc.result
        self._capture(result.stdout, result.stderr, result.exited)
        out = StepOutput(command, result.stdout, result.stderr, result.exited)
        if check and result.exited != 0:
            raise CommandFailed(f"exit status {result.exited}", result.exited, result.stderr)
        return out

    def run_argv(self, argv: Sequence[str], **kwargs: Any) -> StepOutput:
        """Run a program with arguments; every argument is shell-quoted."""
        return self.run(shlex.join(str(a) for a in argv), **kwargs)

    def run_input(self, command: str, data: bytes, *, check: bool = True,
                  timeout: float | None = None) -> StepOutput:
        """Run one shell command with ``data`` on its stdin (e.g. an artifact to unpack)."""
        self._check_stop()
        try:
            out, err, status = process.run_with_input(
                self.conn, command, data,
                timeout if timeout is not None else self.command_timeout)
        except (TimeoutError, subprocess.TimeoutExpired) as exc:
            self._capture("", "", None)
            raise CommandTimedOut(f"timed out: {exc}") from None
        self._capture(out, err, status)
        result = StepOutput(command, out, err, status)
        if check and status != 0:
            raise CommandFailed(f"exit status {status}", status, err)
        return result

    def put(self, local: str, remote: str) -> None:
        """Upload a file over the host's connection (SFTP), or copy it for a local host."""
        self._check_stop()
        if isinstance(self.conn, Connection):
            self.conn.put(local, remote)
        else:
            shutil.copyfile(local, remote)

    def start(self, argv: Sequence[str]) -> HostProcess:
        """Start a program (every argument quoted) to talk to over stdin/stdout."""
        self._check_stop()
        return process.start(self.conn, shlex.join(str(a) for a in argv))

    def _check_stop(self) -> None:
        if self.stop.is_set() and not self.finishing:
            raise Interrupted("interrupted before this step")

    @contextmanager
    def recovering(self) -> Iterator[None]:
        """Run recovery steps to their end even if Ctrl-C was pressed meanwhile."""
        self.finishing = True
        try:
            yield
        finally:
            self.finishing = False

    def _capture(self, stdout: str, stderr: str, exit_status: int | None) -> None:
        self.stdout.append(stdout)
        self.stderr.append(stderr)
        self.last_exit_status = exit_status

    def stdout_tail(self) -> str:
        return "".join(self.stdout)[-TAIL_CHARS:]

    def stderr_tail(self) -> str:
        return "".join(self.stderr)[-TAIL_CHARS:]
