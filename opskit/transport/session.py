"""One host's side of an operation: run steps over one reused connection.

Every step goes through :meth:`Session.run` so that output is captured for the host's result,
the command timeout applies, an interrupt stops the operation between steps, and the
environment is exported with quoted values (Fabric's own ``env=`` does not quote). A step run
as another user (``sudo=True``, ``as_user=``) is wrapped here, whole: see :func:`elevated`.
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
from opskit.transport.errors import CommandFailed, CommandTimedOut, Interrupted, SudoRefused
from opskit.transport.process import HostProcess

TAIL_CHARS = 4000
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Exit statuses that may be sudo's own refusal (1) or a missing sudo (127, from the shell);
# only then is sudo asked again, with a no-op, to tell its refusal from the command's failure.
_SUDO_MAYBE_REFUSED = (1, 127)
_PROBE_TIMEOUT = 15.0


def elevated(command: str, *, login_user: str, as_user: str = "root") -> str:
    """Shell text that runs ``command`` (shell text) as ``as_user`` when logged in as
    ``login_user``: the whole command as one quoted word of ``sh -c``.

    Invoke's ``Connection.sudo`` puts sudo before the first word only, so ``export X=1; cmd``
    or ``a && b`` ran ``cmd`` / ``b`` unprivileged; here every part of it, its exported
    environment included, runs as ``as_user``. ``-n``: sudo never prompts, a sudo that wants
    a password fails at once. Root switches with ``runuser`` (no sudoers needed).
    """
    if as_user == login_user:
        return command
    if login_user == "root":
        return shlex.join(["runuser", "-u", as_user, "--", "sh", "-c", command])
    return shlex.join([*_sudo(as_user), "sh", "-c", command])


def sudo_probe(as_user: str = "root") -> str:
    """The no-op that shows whether sudo lets this login run a shell as ``as_user``."""
    return shlex.join([*_sudo(as_user), "sh", "-c", ":"])


def _sudo(as_user: str) -> list[str]:
    return ["sudo", "-n", *([] if as_user == "root" else ["-u", as_user]), "--"]


def sudo_refusal(host: str, login_user: str, as_user: str, exit_status: int,
                 stderr: str) -> SudoRefused:
    """The one-line error for a sudo that would not run (wants a password, not installed)."""
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    said = lines[-1] if lines else f"exit status {exit_status}"
    if exit_status == 127:
        return SudoRefused(f"no sudo on {host} to run as {as_user}: {said}", exit_status, stderr,
                           hint=f"install sudo on {host} (apt-get install sudo), or log in as "
                           "root (ansible_user: root)")
    hint = (f"opskit runs sudo -n (never a prompt): give {login_user} passwordless sudo "
            f"to {as_user} on {host} (NOPASSWD in sudoers), or log in as root; "
            "sudo passwords are not supported yet")
    return SudoRefused(f"sudo refused to run as {as_user} on {host}: {said}", exit_status,
                       stderr, hint=hint)


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
    # Set when the operator left a critical section on purpose (the third Ctrl-C): then even
    # finishing steps stop, as the warning said.
    abandon: threading.Event = field(default_factory=threading.Event)

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
        as_user: str | None = None,
        check: bool = True,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> StepOutput:
        """Run one shell command on the host. The caller has quoted every value in it.

        ``sudo``: as root; ``as_user``: as that user (e.g. postgres). Either wraps the whole
        command, ``env`` included (:func:`elevated`); a no-op for the login user itself. A
        sudo that will not run (wants a password, not installed) raises :class:`SudoRefused`
        whatever ``check`` says: the command never ran.
        """
        self._check_stop()
        if env:
            bad = [k for k in env if not _ENV_NAME.match(k)]
            if bad:
                raise ValueError(f"not an environment variable name: {bad[0]!r}")
            exports = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in sorted(env.items()))
            command = f"export {exports}; {command}"
        shell, target, via_sudo = self._as(command, sudo, as_user)
        kwargs: dict[str, Any] = {
            "hide": True,
            "warn": True,
            "in_stream": False,
            "timeout": timeout if timeout is not None else self.command_timeout,
        }
        if self.out_stream is not None:
            kwargs.update(hide=False, out_stream=self.out_stream, err_stream=self.err_stream)
        try:
            result = self.conn.run(shell, **kwargs)
        except InvokeTimedOut as exc:
            self._capture(exc.result.stdout, exc.result.stderr, None)
            raise CommandTimedOut(f"timed out after {exc.timeout:g}s") from None
        except UnexpectedExit as exc:  # only raised with warn=False
            result = exc.result
        self._capture(result.stdout, result.stderr, result.exited)
        if via_sudo and result.exited in _SUDO_MAYBE_REFUSED:
            self._check_sudo(target)
        out = StepOutput(shell, result.stdout, result.stderr, result.exited)
        if check and result.exited != 0:
            raise CommandFailed(f"exit status {result.exited}", result.exited, result.stderr)
        return out

    def _as(self, command: str, sudo: bool, as_user: str | None) -> tuple[str, str, bool]:
        """The shell text that runs ``command`` as root (``sudo``) or ``as_user``, whom it
        runs as, and whether sudo is in the way (so that its refusal must be told apart)."""
        login = "root" if self.is_root else self.user
        target = as_user or ("root" if sudo else login)
        shell = elevated(command, login_user=login, as_user=target)
        return shell, target, shell != command and login != "root"

    def _check_sudo(self, as_user: str) -> None:
        """After a sudo step failed: raise SudoRefused if sudo itself refuses (a no-op under
        the same sudo fails too), so its refusal is not mistaken for the command's failure."""
        probe = self.conn.run(sudo_probe(as_user), hide=True, warn=True, in_stream=False,
                              timeout=_PROBE_TIMEOUT)
        if probe.exited != 0:
            raise sudo_refusal(self.host.name, self.user, as_user, probe.exited, probe.stderr)

    def run_argv(self, argv: Sequence[str], **kwargs: Any) -> StepOutput:
        """Run a program with arguments; every argument is shell-quoted."""
        return self.run(shlex.join(str(a) for a in argv), **kwargs)

    def run_input(self, command: str, data: bytes, *, sudo: bool = False,
                  as_user: str | None = None, check: bool = True,
                  timeout: float | None = None) -> StepOutput:
        """Run one shell command with ``data`` on its stdin (e.g. an artifact to unpack);
        ``sudo`` / ``as_user`` wrap it as in :meth:`run`."""
        self._check_stop()
        command, target, via_sudo = self._as(command, sudo, as_user)
        try:
            out, err, status = process.run_with_input(
                self.conn, command, data,
                timeout if timeout is not None else self.command_timeout)
        except (TimeoutError, subprocess.TimeoutExpired) as exc:
            self._capture("", "", None)
            raise CommandTimedOut(f"timed out: {exc}") from None
        self._capture(out, err, status)
        if via_sudo and status in _SUDO_MAYBE_REFUSED:
            self._check_sudo(target)
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

    def check_stop(self) -> None:
        """Raise :class:`Interrupted` when the run was interrupted (before a sequence that
        must then not begin)."""
        self._check_stop()

    def _check_stop(self) -> None:
        if self.abandon.is_set() or (self.stop.is_set() and not self.finishing):
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
