"""Commands run on the db and PgBouncer hosts, as the database's OS user.

Everything goes over opskit's SSH session to the host (no database port needs to be open to
the operator): ``psql`` on the local socket, ``repmgr`` with the node's repmgr.conf,
``pg_ctl`` on the data directory. Every argument is shell-quoted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opskit.pg.config import BouncerNode, PgNode
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session, StepOutput


def run_as(s: Session, user: str, argv: Sequence[str], **kwargs: Any) -> StepOutput:
    """``argv`` run as ``user`` (the session switches: runuser as root, else ``sudo -n``)."""
    return s.run_argv(argv, as_user=user, **kwargs)


def _rows(stdout: str) -> list[list[str]]:
    return [line.split("\t") for line in stdout.splitlines() if line.strip()]


def psql(s: Session, node: PgNode, sql: str, *, db: str | None = None,
         timeout: float = 15.0, check: bool = True) -> list[list[str]]:
    """Rows of ``sql`` (tab-separated fields) from the node's server, over its local socket."""
    argv = [node.bin("psql"), "-X", "-A", "-t", "-q", "-F", "\t", "-v", "ON_ERROR_STOP=1",
            "-h", node.socket_dir, "-p", str(node.port), "-d", db or node.repmgr_db,
            "-U", node.repmgr_user, "-c", sql]
    out = run_as(s, node.os_user, argv, check=False, timeout=timeout)
    if out.exit_status != 0 and check:
        raise CommandFailed(_last_line(out.stderr) or f"psql exit status {out.exit_status}",
                         out.exit_status, out.stderr)
    return _rows(out.stdout)


def repmgr(s: Session, node: PgNode, *args: str, timeout: float = 120.0,
           check: bool = True) -> str:
    """Run ``repmgr -f CONF ARGS`` on the node; its stdout (stderr carries repmgr's log)."""
    argv = [node.bin("repmgr"), "-f", node.repmgr_conf, *args]
    out = run_as(s, node.os_user, argv, check=False, timeout=timeout)
    if out.exit_status != 0 and check:
        raise CommandFailed(f"repmgr {' '.join(args[:2])} failed: "
                         f"{repmgr_error(out.stderr + out.stdout)}", out.exit_status,
                         out.stderr)
    return out.stdout + out.stderr


def pg_ctl(s: Session, node: PgNode, action: str, *extra: str, timeout: float = 60.0,
           check: bool = True) -> int:
    argv = [node.bin("pg_ctl"), "-D", node.data_directory, "-w", "-t", str(int(timeout)),
            *extra, action]
    out = run_as(s, node.os_user, argv, check=False, timeout=timeout + 10)
    if out.exit_status != 0 and check:
        raise CommandFailed(f"pg_ctl {action} failed: {_last_line(out.stderr or out.stdout)}",
                         out.exit_status, out.stderr)
    return out.exit_status


def is_running(s: Session, node: PgNode) -> bool:
    """pg_ctl status: 0 when a postmaster runs on the data directory."""
    argv = [node.bin("pg_ctl"), "-D", node.data_directory, "status"]
    return run_as(s, node.os_user, argv, check=False, timeout=15).exit_status == 0


class AdminFailed(CommandFailed):
    """A PgBouncer admin console command failed; ``rows``: what a SHOW before it returned."""

    def __init__(self, message: str, exit_status: int | None, stderr: str,
                 rows: list[dict[str, str]]) -> None:
        super().__init__(message, exit_status, stderr)
        self.rows = rows


def admin(s: Session, b: BouncerNode, *commands: str, timeout: float = 15.0,
          check: bool = True) -> list[dict[str, str]]:
    """PgBouncer admin console commands (SHOW DATABASES, PAUSE db, RELOAD, ...), in order in
    one session (one psql: each costs a round trip and a process start; the first that fails
    ends it); the rows of the SHOW among them (one at most) by column name (columns move
    between PgBouncer versions). A failure raises :class:`AdminFailed`."""
    argv = [b.psql, "-X", "-A", "-q", "-P", "footer=off", "-F", "\t", "-v", "ON_ERROR_STOP=1",
            "-h", b.host.address, "-p", str(b.port), "-U", b.admin_user, "-d", "pgbouncer",
            *(arg for c in commands for arg in ("-c", c))]
    out = run_as(s, b.os_user, argv, check=False, timeout=timeout)
    rows = _rows(out.stdout)
    header, *data = rows or [[]]
    shown = [dict(zip(header, r, strict=False)) for r in data]
    if out.exit_status != 0 and check:
        what = " + ".join(c.split()[0] for c in commands)
        raise AdminFailed(f"PgBouncer {what} failed: "
                          f"{_last_line(out.stderr) or out.exit_status}", out.exit_status,
                          out.stderr, shown)
    return shown


def through_bouncer(s: Session, b: BouncerNode, db: str, user: str, sql: str, *,
                    timeout: float = 15.0) -> list[list[str]]:
    """Run ``sql`` as an application client would: through PgBouncer's listener."""
    argv = [b.psql, "-X", "-A", "-t", "-q", "-F", "\t", "-v", "ON_ERROR_STOP=1",
            "-h", b.host.address, "-p", str(b.port), "-U", user, "-d", db, "-c", sql]
    out = run_as(s, b.os_user, argv, check=False, timeout=timeout)
    if out.exit_status != 0:
        raise CommandFailed(f"through PgBouncer {b.name}:{b.port}/{db}: "
                         f"{_last_line(out.stderr) or out.exit_status}", out.exit_status,
                         out.stderr)
    return _rows(out.stdout)


def _last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def repmgr_error(text: str) -> str:
    """repmgr logs several lines; the ERROR one (and its DETAIL) says what went wrong."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    for i, line in enumerate(lines):
        if line.startswith("ERROR"):
            detail = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith(
                ("DETAIL", "HINT")) else ""
            return f"{line} {detail}".strip()
    return lines[-1] if lines else "no output"
