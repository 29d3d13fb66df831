"""What can go wrong talking to a host. Transport-level exceptions, without exit codes:
the runner turns them into per-host statuses and ``cli`` into ``opskit.errors`` ones."""

from __future__ import annotations


class ConnectFailed(Exception):
    """No SSH session to this host (refused, timed out, host key, auth...)."""

    def __init__(self, host: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{host}: {message}")
        self.host, self.message, self.hint = host, message, hint


class CommandFailed(Exception):
    """A command on a host exited non-zero (or a check of its result failed)."""

    def __init__(self, message: str, exit_status: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.exit_status = exit_status
        self.stderr = stderr


class CommandTimedOut(Exception):
    """A command on a host ran longer than the command timeout."""


class ProcessTimeout(Exception):
    """A program talked to over stdin/stdout did not answer in time."""


class Interrupted(Exception):
    """The operator pressed Ctrl-C; no further steps are started."""


class SudoRefused(CommandFailed):
    """sudo would not run a step (it wants a password, rejected the one given, or is not
    there): nothing ran."""

    def __init__(self, message: str, exit_status: int | None = None, stderr: str = "",
                 *, hint: str | None = None, password_rejected: bool = False) -> None:
        super().__init__(message, exit_status, stderr)
        self.hint = hint
        self.password_rejected = password_rejected
