"""``pg rejoin NODE``: bring a former primary back as a standby of the current primary.

repmgr's ``node rejoin`` writes the standby configuration and starts the server; with
``--force-rewind`` it first runs pg_rewind when the node's history forked from the new
primary's (it wrote WAL the new primary never saw). repmgr's own ``--dry-run`` runs first:
if it says no, nothing is touched.
"""

from __future__ import annotations

from typing import Any

from opskit.errors import SafetyError, StepError
from opskit.pg import state, steps, tools
from opskit.pg.config import Cluster, PgNode
from opskit.runner.hostpool import HostPool
from opskit.runner.runbook import Runbook, Step
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session


def _rejoin_args(primary: PgNode) -> list[str]:
    return ["node", "rejoin", "-d", primary.conninfo(), "--force-rewind", "--verbose"]


def rejoin_node(s: Session, node: PgNode, primary: PgNode, ps: Session) -> str:
    """CHECKPOINT on ``primary`` (session ``ps``), a dry run, then the rejoin; waits until
    the node streams from ``primary``.

    pg_rewind reads the primary's timeline from its control file, which a promotion updates
    only at its next checkpoint (spread out, so seconds to minutes later). Before that,
    pg_rewind sees one timeline, says no rewind is needed, and a node with WAL past the fork
    never streams (repmgr then gives up after node_rejoin_timeout). Seen in the lab when the
    rejoin ran within a second of a failover.
    """
    tools.psql(ps, primary, "CHECKPOINT")
    out = tools.repmgr(s, node, *_rejoin_args(primary), "--dry-run")
    rewind = "pg_rewind" in out and "would" in out
    tools.repmgr(s, node, *_rejoin_args(primary))
    steps.wait_streaming(s, node, primary)
    return f"streaming from {primary.name}" + (" (after pg_rewind)" if rewind else "")


def run(cluster: Cluster, pool: HostPool, rb: Runbook, name: str) -> dict[str, Any]:
    node = cluster.node(name)

    def ask(st: Step) -> tuple[state.NodeState, PgNode, bool]:
        cs = state.gather(cluster, pool, with_repmgr=False)
        me = cs.node(node.name)
        others = [p for p in cs.primaries if p.name != node.name]
        if len(others) != 1:
            raise SafetyError(f"need exactly one other live primary to rejoin {name} to, "
                              f"found {len(others)}", hint="`opskit pg status`")
        primary = cluster.node(others[0].name)
        if me.role == state.UNREACHABLE:
            raise SafetyError(f"{name} is unreachable: {me.error}")
        if me.role == state.STANDBY and me.upstream and me.upstream.startswith(
                primary.address + ":"):
            st.detail = f"{name} already streams from {primary.name}: nothing to do"
            return me, primary, True
        st.detail = f"{name} is {me.role}; current primary {primary.name}"
        return me, primary, False

    me, primary, done = rb.check("preflight: ask every node",
                                 *[n.name for n in cluster.nodes], run=ask)
    if done:
        return {"node": name, "primary": primary.name, "changed": False}
    s = pool.get(node.host)

    def repmgr_dry_run(st: Step) -> None:
        # Read-only; the rejoin step asks again after its CHECKPOINT, and decides.
        out = tools.repmgr(s, node, *_rejoin_args(primary), "--dry-run", check=False)
        if "ERROR" in out:
            st.status, st.detail = "warning", tools.repmgr_error(out)
        else:
            st.detail = "repmgr: prerequisites OK"

    def stop(st: Step) -> None:
        st.detail = steps.stop(s, node)

    def rejoin(st: Step) -> None:
        st.detail = rejoin_node(s, node, primary, pool.get(primary.host))

    try:
        if me.up:
            rb.step(f"stop postgres on {name} (rejoin needs it stopped)", name,
                    does="pg_ctl stop -m fast (immediate if that fails)", run=stop)
        else:  # repmgr checks a stopped node only
            rb.check(f"repmgr node rejoin --dry-run on {name}", name, run=repmgr_dry_run)
        rb.step(f"rejoin {name} as a standby of {primary.name} (repmgr node rejoin)", name,
                does=f"CHECKPOINT on {primary.name}; repmgr node rejoin --force-rewind (dry "
                     "run first); wait until streaming", run=rejoin)
    except CommandFailed as exc:
        raise StepError(f"rejoin stopped: {exc}", hint="`opskit pg status`; the journal has "
                        "every step") from None
    return {"node": name, "primary": primary.name, "changed": not rb.dry_run}
