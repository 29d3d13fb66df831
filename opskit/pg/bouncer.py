"""PgBouncer during a failover: hold clients, re-point, let them go.

``hold`` uses the admin console's ``KILL db`` (close every client and server connection of the
database at once; new clients wait until RESUME) when the primary is gone, or ``PAUSE db``
(wait for running transactions to finish, then hold new ones) for a planned switchover. Either
way no client reaches the old primary through PgBouncer after it. ``repoint`` rewrites the
database's ``host=``/``port=`` in pgbouncer.ini and RELOADs; ``release`` RESUMEs.
"""

from __future__ import annotations

import json
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


def repoint(s: Session, b: BouncerNode, target: PgNode) -> dict[str, list[str]]:
    """Point the databases at ``target`` in the ini, then RELOAD; the {db: [old, new]} map.

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
    tools.admin(s, b, "RELOAD")
    return doc["changed"]



class Repointing(Protocol):
    """What a runbook's progress record says about PgBouncer (failover, --continue)."""

    repointed: bool
    held: bool


def repoint_then_resume(cluster: Cluster, pool: HostPool, target: PgNode,
                        progress: Repointing) -> str:
    """The step both a failover and its --continue end with: every PgBouncer at ``target``
    (ini rewritten, RELOAD), then RESUME; ``progress`` says how far it got if it fails."""
    changed = each(cluster, pool, lambda s, b: repoint(s, b, target))
    progress.repointed = True
    each(cluster, pool, release)
    progress.held = False
    return "; ".join(f"{k}: {v}" for k, v in changed.items())
