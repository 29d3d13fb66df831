"""PgBouncer during a failover: hold clients, re-point, let them go.

``hold`` uses the admin console's ``KILL db`` (close every client and server connection of the
database at once; new clients wait until RESUME) when the primary is gone, or ``PAUSE db``
(wait for running transactions to finish, then hold new ones) for a planned switchover. Either
way no client reaches the old primary through PgBouncer after it. ``repoint`` rewrites the
database's ``host=``/``port=`` in pgbouncer.ini and RELOADs; ``release`` RESUMEs.

After a crash PgBouncer's logins to the dead primary failed, and it opens no server
connection for that pool until ``server_login_retry`` (default 15 s) after the last failed one;
neither RELOAD nor RESUME nor RECONNECT resets that (PgBouncer 1.18; a second KILL after the
RELOAD does, but drops the clients waiting). So a failover's RESUME runs with
``server_login_retry`` SET to 0 (it takes effect at once), and the configured value is SET back
once a write went through (``restore_login_retry``).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from typing import Any, Protocol

from opskit.errors import InventoryError
from opskit.onhost import script
from opskit.pg import tools
from opskit.pg.config import BouncerNode, Cluster, PgNode, is_host_address
from opskit.runner import remote_file
from opskit.runner.hostpool import HostPool
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session


def database_names(cluster: Cluster) -> str:
    """The [databases] entries opskit moves, on every PgBouncer host (for messages)."""
    return ", ".join(sorted({x for b in cluster.bouncers for x in b.databases}))


def each(cluster: Cluster, pool: HostPool, fn: Callable[[Session, BouncerNode], Any],
         strict: bool = True) -> dict[str, Any]:
    """``fn(session, bouncer)`` on every PgBouncer host at once (see HostPool.each)."""
    by_name = {b.name: b for b in cluster.bouncers}
    return pool.each([b.host for b in cluster.bouncers],
                     lambda s: fn(s, by_name[s.host.name]), strict=strict)


def hold(s: Session, b: BouncerNode, *, kill: bool) -> None:
    for db in b.databases:
        tools.admin(s, b, f"{'KILL' if kill else 'PAUSE'} {db}", timeout=60)


def release(s: Session, b: BouncerNode) -> list[str]:
    """RESUME every database (one already running is not an error); what failed."""
    failed = []
    for db in b.databases:
        try:
            tools.admin(s, b, f"RESUME {db}")
        except CommandFailed as exc:
            if "not paused" not in str(exc).lower():
                failed.append(f"{db}: {exc}")
    return failed


class Repointing(Protocol):
    """What a runbook's progress record says about PgBouncer (failover, --continue)."""

    repointed: bool
    held: bool
    # PgBouncer name -> its configured server_login_retry, while it runs with 0 instead.
    login_retry: dict[str, str]


LOGIN_RETRY = "server_login_retry"
# How PgBouncer shows a duration in SHOW CONFIG and takes it in SET (seconds, or a unit).
_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?:us|ms|s|min|h|d)?")


def _login_retry(rows: list[dict[str, str]]) -> str | None:
    """``server_login_retry`` in SHOW CONFIG's rows (None: not there or not a duration)."""
    value = next((r.get("value", "") for r in rows if r.get("key") == LOGIN_RETRY), None)
    # Checked: it is put back into a SET command later.
    return value if value is not None and _DURATION.fullmatch(value) else None


def _set_login_retry(value: str) -> str:
    if not _DURATION.fullmatch(value):
        raise ValueError(f"{LOGIN_RETRY} {value!r} is not a duration")
    return f"SET {LOGIN_RETRY} = '{value}'"


def reload_and_resume(s: Session, b: BouncerNode, progress: Repointing) -> str:
    """RELOAD (the re-pointed ini), read ``server_login_retry``, SET it to 0, RESUME: one
    psql session, so the RESUME follows the SET at once. The value read is recorded in
    ``progress`` (what to restore) also when a later command failed; a note if it could
    not be read."""
    # RELOAD first: it sets the retry back to the ini's value (also a 0 that an interrupted
    # run left behind), so what SHOW CONFIG says next is the configured value.
    commands = ["RELOAD", "SHOW CONFIG", _set_login_retry("0"),
                *(f"RESUME {db}" for db in b.databases)]
    try:
        rows = tools.admin(s, b, *commands)
        failed = None
    except tools.AdminFailed as exc:
        rows, failed = exc.rows, exc
    value = _login_retry(rows)
    m = _DURATION.fullmatch(value or "")
    if value is not None and m is not None and float(m["number"]) != 0:
        progress.login_retry[b.name] = value  # restoring it if the SET did not run is harmless
    # Clients flow once RESUMEd: a value that cannot be read is said, not a failed step.
    note = "" if value is not None else f"{b.name}: {LOGIN_RETRY} unreadable, left at 0"
    if failed is None:
        return note
    if value is not None and "not paused" in str(failed).lower():
        # A database already running (a --continue after a RESUME): RESUME them one by one.
        problems = release(s, b)
        if not problems:
            return note
        raise CommandFailed(f"{b.name}: RESUME failed: {'; '.join(problems)}")
    raise failed


def repoint(s: Session, b: BouncerNode, target: PgNode, *,
            reload: bool = True) -> dict[str, list[str]]:
    """Point the databases at ``target`` in the ini, then RELOAD (unless not ``reload``);
    the {db: [old, new]} map.

    The new ini is computed on the host (``onhost/pgbouncer_repoint.py``, nothing written)
    and put in place by ``onhost/replace_file.py`` only if the ini is still what was read.
    """
    # Checked at config load already (pg.config); again here, as this is what reaches the ini.
    if not is_host_address(target.address):
        raise InventoryError(f"host {target.name}: ansible_host {target.address!r} is not a "
                             "host name or an IP address", hint="nothing was written")
    if not 1 <= target.port <= 65535:
        raise InventoryError(f"host {target.name}: postgres.port must be 1-65535, got "
                             f"{target.port!r}", hint="nothing was written")
    argv = ["python3", "-I", "-S", "-c", script("pgbouncer_repoint"), b.ini, target.address,
            str(target.port), *b.databases]
    out = s.run(shlex.join(argv), check=False, sudo=True)
    try:
        doc = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise CommandFailed(f"could not rewrite {b.ini}: {out.stderr.strip()[-200:]}",
                         out.exit_status, out.stderr) from None
    if doc.get("error"):
        raise CommandFailed(f"{b.name}: {b.ini} not rewritten: {doc['error']}")
    if doc.get("missing"):
        raise CommandFailed(f"{b.ini} has no [databases] entry for {', '.join(doc['missing'])}")
    remote_file.replace(s, b.ini, doc["text"].encode(), expect_sha256=doc["sha256"])
    if reload:
        tools.admin(s, b, "RELOAD")
    return doc["changed"]


def repoint_then_resume(cluster: Cluster, pool: HostPool, target: PgNode,
                        progress: Repointing) -> str:
    """The step both a failover and its --continue end with: every PgBouncer at ``target``
    (ini rewritten, RELOAD), ``server_login_retry`` 0, then RESUME; ``progress`` says how far
    it got if it fails. ``restore_login_retry`` puts the retry back."""
    def one(s: Session, b: BouncerNode) -> tuple[dict[str, list[str]], str]:
        changed = repoint(s, b, target, reload=False)
        return changed, reload_and_resume(s, b, progress)

    # Each PgBouncer on its own, all at once: a slow one does not hold the others' RESUME.
    # Each RESUMEs only once its own ini points at the target, so none sends clients to the
    # old primary; one that failed stays held, and the runbook's recovery decides.
    done = each(cluster, pool, one)
    progress.repointed = True
    progress.held = False
    retry = ", ".join(f"{k} {v}" for k, v in sorted(progress.login_retry.items()))
    return "; ".join([*(f"{k}: {changed}" for k, (changed, _) in done.items()),
                      *([f"{LOGIN_RETRY} 0 (configured: {retry}) until a write went through"]
                        if retry else []),
                      *(note for _, note in done.values() if note)])


def restore_login_retry(cluster: Cluster, pool: HostPool, progress: Repointing) -> str:
    """SET ``server_login_retry`` back to the configured value on every PgBouncer that runs
    with 0 (strict: raises naming those it could not reach); what was done."""
    lowered = dict(progress.login_retry)
    if not lowered:
        return f"{LOGIN_RETRY} was not changed"
    by_name = {b.name: b for b in cluster.bouncers if b.name in lowered}

    def restore(s: Session) -> None:
        b = by_name[s.host.name]
        tools.admin(s, b, _set_login_retry(lowered[b.name]))
        del progress.login_retry[b.name]

    pool.each([b.host for b in by_name.values()], restore, strict=True)
    return f"{LOGIN_RETRY} back to " + ", ".join(f"{v} on {k}" for k, v in
                                                   sorted(lowered.items()))
