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

from opskit.pg import remote
from opskit.pg.config import BouncerNode, PgNode
from opskit.remote import script
from opskit.session import Session, StepFailed


def hold(s: Session, b: BouncerNode, *, kill: bool) -> None:
    for db in b.databases:
        remote.admin(s, b, f"{'KILL' if kill else 'PAUSE'} {db}", timeout=60)


def release(s: Session, b: BouncerNode) -> list[str]:
    """RESUME every database (one already running is not an error); what failed."""
    failed = []
    for db in b.databases:
        try:
            remote.admin(s, b, f"RESUME {db}")
        except StepFailed as exc:
            if "not paused" not in str(exc).lower():
                failed.append(f"{db}: {exc}")
    return failed


def repoint(s: Session, b: BouncerNode, target: PgNode) -> dict[str, list[str]]:
    """Point the databases at ``target`` in the ini, then RELOAD; the {db: [old, new]} map."""
    argv = ["python3", "-I", "-S", "-c", script("pgbouncer_repoint"), b.ini, target.address,
            str(target.port), *b.databases]
    out = s.run(shlex.join(argv), check=False, sudo=True)
    try:
        doc = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise StepFailed(f"could not rewrite {b.ini}: {out.stderr.strip()[-200:]}",
                         out.exit_status, out.stderr) from None
    if doc.get("missing"):
        raise StepFailed(f"{b.ini} has no [databases] entry for {', '.join(doc['missing'])}")
    remote.admin(s, b, "RELOAD")
    return doc["changed"]

