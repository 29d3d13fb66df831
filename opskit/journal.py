"""Append-only JSONL audit of every mutating action.

One line per command run (and per runbook step): time, user, command line, hosts, per-host
outcome, duration, and the run id of the invocation it belongs to -- so a failover's step
records and its final record can be read together (``opskit journal --run ID``).
Secrets never reach it: argv, details and error lines go through ``opskit.redact`` (values
whose name looks secret, URL passwords), and host output is not recorded (only status, exit
status and the error line).
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from opskit import redact
from opskit.errors import ConfigError


class FleetOutcome(Protocol):
    """What a fleet run reports (``opskit.runner.fleet.FleetResult``); a Protocol so that this
    utility does not depend on the runner layer."""

    results: Sequence[Any]
    duration: float
    exit_code: int

DEFAULT_PATH = "~/.local/state/opskit/journal.jsonl"
MASK = redact.MASK

# One invocation of a mutating command at a time per process (the CLI, or one Fabric task):
# its run id and front end, set by ``begin_run`` and stamped on every record until the next.
_run: dict[str, str] = {}


def begin_run(via: str = "opskit") -> str:
    """Start a new invocation: a fresh run id (time-ordered, unique) for its records."""
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
    _run.update(run_id=run_id, via=via)
    return run_id


def current_run() -> dict[str, str]:
    """``{'run_id', 'via'}`` of the invocation being journaled (a new one if none began)."""
    if not _run:
        begin_run()
    return dict(_run)


def journal_path() -> Path:
    return Path(os.environ.get("OPSKIT_JOURNAL") or DEFAULT_PATH).expanduser()


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with secret values masked (``opskit.redact.mask_argv``, the one masker)."""
    return redact.mask_argv(argv)


def record(
    command: str,
    argv: Sequence[str],
    outcomes: dict[str, dict[str, Any]],
    *,
    duration: float,
    exit_code: int,
    details: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Append one entry; ``outcomes`` maps host name to {status, exit_status, error}."""
    entry = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "user": getpass.getuser(),
        "operator_host": socket.gethostname(),
        "command": command,
        "argv": redact_argv(argv),
        "hosts": list(outcomes),
        # Error lines and details can carry a command's text (exec's PGPASSWORD=...).
        "outcomes": redact.mask_data(outcomes),
        "exit_code": exit_code,
        "duration": round(duration, 3),
        "dry_run": dry_run,
        **current_run(),
    }
    if details:
        entry["details"] = redact.mask_data(details)
    path = journal_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, default=str) + "\n"
        # O_APPEND plus a lock: concurrent opskit runs (cron + operator) never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(line)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the journal {path}: {exc.strerror}",
            hint="set OPSKIT_JOURNAL to a writable file",
        ) from exc
    return entry


def record_fleet(
    command: str,
    argv: Sequence[str],
    result: FleetOutcome,
    *,
    details: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Journal one fleet operation: every host's status, exit status and error line."""
    outcomes = {
        r.host: {"status": r.status, "exit_status": r.exit_status, "error": r.error}
        for r in result.results
    }
    return record(
        command,
        ["opskit", *argv],
        outcomes,
        duration=result.duration,
        exit_code=result.exit_code,
        details=details,
        dry_run=dry_run,
    )


def read(last: int | None = None) -> list[dict[str, Any]]:
    """Entries, oldest first; a damaged line is reported, not fatal."""
    path = journal_path()
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = []
    with path.open() as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                entries.append({"time": "?", "command": f"<unreadable line {n}>", "hosts": []})
    return entries[-last:] if last else entries
