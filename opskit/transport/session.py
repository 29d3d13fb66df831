"""One host's side of an operation: run steps over one reused connection.

Every step goes through :meth:`Session.run` so that output is captured for the host's result,
the command timeout applies, an interrupt stops the operation between steps, and the
environment is exported with quoted values (Fabric's own ``env=`` does not quote). A step run
as another user (``sudo=True``, ``as_user=``) is wrapped here, whole: see :func:`elevated`.
With a sudo password (``--ask-sudo-pass``, ``--sudo-pass-file``) it goes to sudo on the step's
stdin, never in a command line: see :class:`SudoPassword` and :meth:`Session._needs_password`.
"""

from __future__ import annotations

import getpass
import json
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
from opskit.secretfile import Secret
from opskit.transport import process
from opskit.transport.errors import CommandFailed, CommandTimedOut, Interrupted, SudoRefused
from opskit.transport.process import HostProcess
from opskit.transport.quick_runner import StdinBytes

TAIL_CHARS = 4000
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Exit statuses that may be sudo's own refusal (1) or a missing sudo (127, from the shell);
# only then is sudo asked again, with a no-op, to tell its refusal from the command's failure.
_SUDO_MAYBE_REFUSED = (1, 127)
_PROBE_TIMEOUT = 15.0
# The last stdout line of the password probe: which sudo this login gets for a target user.
_NOPASSWD, _PASSWORD = "opskit-sudo:nopasswd", "opskit-sudo:password"


class SudoPassword(Secret):
    """The login's sudo password for one run: given to sudo on stdin, shown nowhere (its repr
    and str name only where it came from), never joined into a command line. ``line()`` is
    what ``sudo -S`` reads: sudo reads up to the newline, one byte at a time, and leaves the
    rest of stdin to the step."""

    __slots__ = ()

    @classmethod
    def of(cls, secret: Secret) -> SudoPassword:
        return cls(secret._value, secret.source)


def elevated(command: str, *, login_user: str, as_user: str = "root",
             password: bool = False) -> str:
    """Shell text that runs ``command`` (shell text) as ``as_user`` when logged in as
    ``login_user``: the whole command as one quoted word of ``sh -c``.

    Invoke's ``Connection.sudo`` puts sudo before the first word only, so ``export X=1; cmd``
    or ``a && b`` ran ``cmd`` / ``b`` unprivileged; here every part of it, its exported
    environment included, runs as ``as_user``. ``-n``: sudo never prompts, a sudo that wants
    a password fails at once. Root switches with ``runuser`` (no sudoers needed).

    ``password``: the caller puts the password line first on the step's stdin: ``-S`` reads
    it from there (never argv), ``-p ''`` prints no prompt into the output, ``-k`` ignores a
    cached sudo timestamp so that sudo always reads the line (else the step would get it).
    """
    if as_user == login_user:
        return command
    if login_user == "root":
        return shlex.join(["runuser", "-u", as_user, "--", "sh", "-c", command])
    return shlex.join([*_sudo(as_user, password=password), "sh", "-c", command])


def sudo_probe(as_user: str = "root") -> str:
    """The no-op that shows whether sudo lets this login run a shell as ``as_user``."""
    return shlex.join([*_sudo(as_user), "sh", "-c", ":"])


def password_probe(as_user: str = "root") -> str:
    """With the password line on stdin: which sudo to use for ``as_user``, in one round trip.
    ``sudo -n -k`` first: a NOPASSWD rule needs no password (and must not get the line, or
    the step would read it); else the password is tried once on a no-op -- stdin ends after
    it, so a wrong one fails after one try (sudo's second read meets EOF), not three."""
    nopass = shlex.join(["sudo", "-n", "-k", *_target(as_user), "--", "sh", "-c", ":"])
    with_pw = shlex.join([*_sudo(as_user, password=True), "sh", "-c", ":"])
    return (f"if {nopass} 2>/dev/null; then echo {_NOPASSWD}; "
            f"else {with_pw} && echo {_PASSWORD}; fi")


def _target(as_user: str) -> list[str]:
    return [] if as_user == "root" else ["-u", as_user]


def _sudo(as_user: str, *, password: bool = False) -> list[str]:
    flags = ["-S", "-k", "-p", ""] if password else ["-n"]
    return ["sudo", *flags, *_target(as_user), "--"]


def sudo_refusal(host: str, login_user: str, as_user: str, exit_status: int,
                 stderr: str) -> SudoRefused:
    """The one-line error for a sudo that would not run (wants a password, not installed)."""
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    said = lines[-1] if lines else f"exit status {exit_status}"
    if exit_status == 127:
        return SudoRefused(f"no sudo on {host} to run as {as_user}: {said}", exit_status, stderr,
                           hint=f"install sudo on {host} (apt-get install sudo), or log in as "
                           "root (ansible_user: root)")
    if "incorrect password attempt" in said:
        return SudoRefused(f"sudo on {host} rejected the sudo password of {login_user} "
                           f"(to run as {as_user}): {said}", exit_status, stderr,
                           hint="check the password given with --ask-sudo-pass (-K), "
                           "--sudo-pass-file or OPSKIT_SUDO_PASS_FILE; sudo was given it once "
                           "(no retries), so the account is not locked by repeated tries",
                           password_rejected=True)
    hint = (f"opskit runs sudo -n (never a prompt) unless given the password: pass "
            f"--ask-sudo-pass (-K) or --sudo-pass-file FILE, give {login_user} passwordless "
            f"sudo to {as_user} on {host} (NOPASSWD in sudoers), or log in as root")
    return SudoRefused(f"sudo refused to run as {as_user} on {host}: {said}", exit_status,
                       stderr, hint=hint)


@dataclass
class StepOutput:
    command: str
    stdout: str
    stderr: str
    exit_status: int

    def answer(self) -> dict[str, Any] | None:
        """An on-host program's answer: the last stdout line that is a JSON object (past any
        login noise), or None."""
        lines = [x for x in self.stdout.splitlines() if x.startswith("{")]
        try:
            found = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            return None
        return found if isinstance(found, dict) else None

    def reason(self) -> str:
        """Why a program gave no answer: its last stderr line, else its exit status."""
        return (self.stderr.strip().splitlines() or [f"exit status {self.exit_status}"])[-1]


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
    # The login's sudo password, if the operator gave one; per target user, whether sudo
    # wants it here (found by one probe, see _needs_password).
    sudo_password: SudoPassword | None = None
    _sudo_modes: dict[str, bool] = field(default_factory=dict, repr=False)
    # A password sudo rejected here: not tried again for another target user of this host
    # (each try is a failed attempt in its auth log, and lockouts count them).
    _sudo_rejected: SudoRefused | None = field(default=None, repr=False)
    _sudo_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
        shell, target, via_sudo, feed = self._as(command, sudo, as_user)
        kwargs: dict[str, Any] = {
            "hide": True,
            "warn": True,
            # The password line for sudo -S, then EOF; else no stdin at all.
            "in_stream": StdinBytes(feed) if feed else False,
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

    def _as(self, command: str, sudo: bool,
            as_user: str | None) -> tuple[str, str, bool, bytes]:
        """The shell text that runs ``command`` as root (``sudo``) or ``as_user``, whom it
        runs as, whether sudo is in the way (so that its refusal must be told apart), and
        what must come first on its stdin (the password line for ``sudo -S``, or nothing)."""
        login = "root" if self.is_root else self.user
        target = as_user or ("root" if sudo else login)
        if target == login or login == "root":
            return elevated(command, login_user=login, as_user=target), target, False, b""
        pw = self.sudo_password
        if pw is None or not self._needs_password(target):
            return elevated(command, login_user=login, as_user=target), target, True, b""
        return (elevated(command, login_user=login, as_user=target, password=True), target,
                True, pw.line())

    def _needs_password(self, as_user: str) -> bool:
        """Whether sudo wants the password to run as ``as_user`` here: probed once per target
        user and session (a wrong password is a SudoRefused at this probe, before any step
        ran -- and before a step's own stdin could be read by sudo as a second try)."""
        with self._sudo_lock:
            if as_user not in self._sudo_modes:
                self._sudo_modes[as_user] = self._probe_password(as_user)
            return self._sudo_modes[as_user]

    def _probe_password(self, as_user: str) -> bool:
        assert self.sudo_password is not None
        if self._sudo_rejected is not None:
            raise self._sudo_rejected
        try:
            out, err, status = process.run_with_input(
                self.conn, password_probe(as_user), self.sudo_password.line(), _PROBE_TIMEOUT)
        except (TimeoutError, subprocess.TimeoutExpired) as exc:
            raise CommandTimedOut(f"sudo probe timed out: {exc}") from None
        said = out.strip().splitlines()[-1:] or [""]
        if status == 0 and said[0] in (_NOPASSWD, _PASSWORD):
            return said[0] == _PASSWORD
        refusal = sudo_refusal(self.host.name, self.user, as_user, status, err)
        if refusal.password_rejected:
            self._sudo_rejected = refusal
        raise refusal

    def _check_sudo(self, as_user: str) -> None:
        """After a sudo step failed: raise SudoRefused if sudo itself refuses (a no-op under
        the same sudo fails too), so its refusal is not mistaken for the command's failure."""
        if self.sudo_password is not None:
            self._probe_password(as_user)  # raises if sudo refuses now
            return
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
        ``sudo`` / ``as_user`` wrap it as in :meth:`run` (a password line goes before
        ``data``: sudo reads exactly that line, the command gets ``data`` byte for byte)."""
        self._check_stop()
        command, target, via_sudo, feed = self._as(command, sudo, as_user)
        try:
            out, err, status = process.run_with_input(
                self.conn, command, feed + data,
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
