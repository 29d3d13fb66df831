"""Append-only JSONL audit of every mutating action, written ahead of the change.

A run (one invocation, one run id) writes: a ``started`` record before its first change (who,
where, masked argv, targets, plan, pid) -- and if that cannot be written the run does not
start; a ``step`` record as each step ends (a runbook step, a snapshot deletion); and an ``end``
record with the outcome. A run killed with SIGKILL leaves ``started`` without ``end``, which
``runs()`` reports as interrupted. Each record carries time, user, command line, hosts,
per-host outcome, duration and the run id (``opskit journal show RUN``).
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

import psutil

from opskit import redact
from opskit.errors import EXIT_INTERRUPTED, ConfigError


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
    phase: str = "end",
) -> dict[str, Any]:
    """Append one entry; ``outcomes`` maps host name to {status, exit_status, error}.

    ``phase``: ``end`` (a run's outcome), ``step`` (one step of it, as it ended).
    """
    entry = {
        "phase": phase,
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
    return _append(entry)


def start(command: str, argv: Sequence[str], *, targets: Sequence[str],
          plan: Any = None) -> dict[str, Any]:
    """The write-ahead record of a run, before its first change: raises ConfigError (exit 1)
    when it cannot be written, so that nothing is changed without a trace."""
    entry = {
        "phase": "started",
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "user": getpass.getuser(),
        "operator_host": socket.gethostname(),
        "pid": os.getpid(),
        "command": command,
        "argv": redact_argv(argv),
        "hosts": list(targets),
        "dry_run": False,
        **current_run(),
    }
    if plan is not None:
        entry["plan"] = redact.mask_data(plan)
    return _append(entry, sync=True)


def _append(entry: dict[str, Any], *, sync: bool = False) -> dict[str, Any]:
    """One line, appended whole; ``sync``: on disk before returning (the write-ahead record
    must survive the operator's machine crashing right after the change begins)."""
    path = journal_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, default=str) + "\n"
        # O_APPEND plus a lock: concurrent opskit runs (cron + operator) never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(line)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
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


# What ``runs`` says of a run, from its records.
OK, FAILED, DRY_RUN, RUNNING, INTERRUPTED = "ok", "failed", "dry run", "running", "interrupted"


def runs(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per run, oldest first: its command, who, when, hosts, steps and status.

    A run with a ``started`` record and no ``end`` is ``running`` while its process lives on
    this operator host, else ``interrupted`` (killed, or its machine died). Records from
    before the write-ahead journal (no phase) are runs of their own.
    """
    by_id: dict[str, dict[str, Any]] = {}
    for n, e in enumerate(entries):
        rid = e.get("run_id") or f"line-{n + 1}"
        run = by_id.setdefault(rid, {"run_id": rid, "command": e.get("command", "?"),
                                     "time": e.get("time", "?"), "user": e.get("user", "?"),
                                     "operator_host": e.get("operator_host", "?"),
                                     "via": e.get("via", "opskit"), "argv": e.get("argv", []),
                                     "hosts": [], "steps": 0, "started": None, "end": None})
        # Before run ids, each record stood alone: a step record then is not a run without end.
        phase = e.get("phase", "end" if not e.get("run_id") else
                      "step" if str(e.get("command", "")).endswith(" step") else "end")
        if phase == "started":
            run.update(started=e, command=e.get("command", "?"), time=e.get("time", "?"),
                       argv=e.get("argv", []))
        elif phase == "step":
            run["steps"] += 1
        else:
            run["end"] = e
            run["command"] = e.get("command", run["command"])
        for h in e.get("hosts", []):
            if h not in run["hosts"] and h != "-":
                run["hosts"].append(h)
    return [_summary(r) for r in by_id.values()]


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    started, end = run.pop("started"), run.pop("end")
    if end is not None:
        run["exit_code"] = end.get("exit_code")
        code = end.get("exit_code")
        run["status"] = (DRY_RUN if end.get("dry_run") else OK if code == 0 else
                         INTERRUPTED if code == EXIT_INTERRUPTED else FAILED)
        run["duration"] = end.get("duration")
    else:
        run["exit_code"] = None
        run["status"] = RUNNING if started and _alive(started) else INTERRUPTED
        run["duration"] = None
    return run


def _alive(started: dict[str, Any]) -> bool:
    """Is the run's process still running here? (Same host, same pid, started no later than
    the record: a reused pid is a younger process.)"""
    if started.get("operator_host") != socket.gethostname() or not started.get("pid"):
        return False
    try:
        proc = psutil.Process(int(started["pid"]))
        when = datetime.fromisoformat(started["time"]).timestamp()
        return proc.create_time() <= when + 1 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError, KeyError):
        return False
