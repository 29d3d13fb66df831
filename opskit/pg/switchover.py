"""``pg switchover --to NODE``: a planned change of primary with the old one alive.

PgBouncer PAUSE (running transactions finish, new ones wait) -> stop the old primary cleanly
(its walsenders ship every WAL record, the shutdown checkpoint last) -> check the target
received it all (else start the old primary again: nothing lost, nothing changed) -> promote
the target -> the old primary rejoins as its standby -> the other standbys follow -> re-point
PgBouncer and RELOAD -> RESUME, always, also when a step failed.

repmgr's own ``standby switchover --siblings-follow`` does the same steps but drives the old
primary over its own SSH between the db hosts as the postgres user; opskit already holds a
session to every node, so it runs repmgr's primitives itself and journals each step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opskit.errors import SafetyError, StepError
from opskit.pg import bouncer, checks, lsn, state, steps, tools
from opskit.pg.config import Cluster, PgNode
from opskit.pg.rejoin import rejoin_node
from opskit.runner import wait
from opskit.runner.hostpool import HostPool
from opskit.runner.runbook import Runbook, Step
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session


def checkpoint_lsn(s: Session, node: PgNode) -> int:
    """The old primary's last checkpoint (its shutdown checkpoint, once stopped)."""
    out = tools.run_as(s, node.os_user, [node.bin("pg_controldata"), node.data_directory],
                       env={"LC_ALL": "C"})
    for line in out.stdout.splitlines():
        if line.startswith("Latest checkpoint location:"):
            value = lsn.parse(line.split(":", 1)[1].strip())
            if value is not None:
                return value
    raise CommandFailed(f"no checkpoint location in pg_controldata of {node.name}")


def wait_received(s: Session, node: PgNode, upto: int, timeout: float = 10.0) -> int:
    def probe() -> tuple[bool, int | None]:
        rows = tools.psql(s, node, "select pg_last_wal_receive_lsn()", check=False)
        got = lsn.parse(rows[0][0]) if rows and rows[0] and rows[0][0] else None
        return got is not None and got > upto, got

    try:
        got = wait.until(probe, what=f"{node.name} to receive WAL past the old primary's "
                         f"shutdown checkpoint {lsn.fmt(upto)}", timeout=timeout, interval=0.1)
    except wait.WaitTimedOut as exc:
        raise CommandFailed(f"{node.name} received WAL up to {lsn.fmt(exc.seen)}, not past "
                            f"the old primary's shutdown checkpoint {lsn.fmt(upto)}") from None
    assert got is not None
    return got


@dataclass
class _Progress:
    """What the steps did so far: the undo and the hint depend on it."""

    paused: bool = False
    stopped: bool = False
    promoted: bool = False


def run(cluster: Cluster, pool: HostPool, rb: Runbook, to: str) -> dict[str, Any]:
    target = cluster.node(to)

    def ask(st: Step) -> tuple[state.ClusterState, list[str]]:
        cs = state.gather(cluster, pool, with_repmgr=False)
        prims = cs.primaries
        refusals = []
        if len(prims) != 1:
            refusals.append(f"{len(prims)} primaries answer "
                            f"({', '.join(p.name for p in prims) or 'none'}): a switchover "
                            "needs exactly one live primary (use `pg failover` if it is down)")
        timeline = checks.expected_timeline(cs)
        refusals += checks.candidate_problems(cs.node(target.name), timeline,
                                              cluster.max_lag_bytes)
        unreachable = [b.name for b in cs.bouncers if not b.reachable]
        if unreachable:
            refusals.append(f"PgBouncer {', '.join(unreachable)} unreachable")
        st.detail = f"primary {prims[0].name if len(prims) == 1 else '?'} -> {target.name}"
        return cs, refusals

    cs, refusals = rb.check("preflight: ask every node and PgBouncer",
                            *[n.name for n in cluster.nodes],
                            *[b.name for b in cluster.bouncers], run=ask)
    if refusals:
        raise SafetyError("refusing to switch over: " + "; ".join(refusals),
                          hint="`opskit pg status` shows every node")
    old = cluster.node(cs.primaries[0].name)
    siblings = [cluster.node(n.name) for n in cs.nodes
                if n.role == state.STANDBY and n.name != target.name]
    bnames = [b.name for b in cluster.bouncers]
    dbs = bouncer.database_names(cluster)
    p = _Progress()

    def pause(st: Step) -> None:
        bouncer.each(cluster, pool, lambda s, b: bouncer.hold(s, b, kill=False))
        p.paused = True

    def stop_old(st: Step) -> None:
        st.detail = steps.stop(pool.get(old.host), old)
        p.stopped = True

    def check_received(st: Step) -> None:
        ckpt = checkpoint_lsn(pool.get(old.host), old)
        got = wait_received(pool.get(target.host), target, ckpt)
        st.detail = f"shutdown checkpoint {lsn.fmt(ckpt)}, received up to {lsn.fmt(got)}"

    def promote(st: Step) -> None:
        steps.promote(pool.get(target.host), target)
        p.promoted = True

    def rejoin_old(st: Step) -> None:
        st.detail = rejoin_node(pool.get(old.host), old, target, pool.get(target.host))

    def follow(st: Step) -> None:
        bad = steps.follow_all(pool, cluster, siblings, target)
        if bad:
            st.status, st.detail = "warning", bad

    def repoint(st: Step) -> None:
        changed = bouncer.each(cluster, pool, lambda s, b: bouncer.repoint(s, b, target))
        st.detail = "; ".join(f"{k}: {v}" for k, v in changed.items())

    def start_old(st: Step) -> None:
        tools.pg_ctl(pool.get(old.host), old, "start", "-l",
                     f"{old.data_directory}/opskit-start.log")
        steps.wait_role(pool.get(old.host), old, primary=True)

    def resume(st: Step) -> None:
        # Also after a PAUSE that failed half-way: RESUME of a running database is no error.
        res = bouncer.each(cluster, pool, bouncer.release, strict=False)
        bad = [f"{k}: {v}" for k, v in res.items() if isinstance(v, Exception) or v]
        if bad:
            st.status, st.detail = "warning", "; ".join(map(str, bad))

    def verify(st: Step) -> None:
        wrote = bouncer.each(cluster, pool,
                             lambda s, b: steps.write_through(s, b, cluster, target))
        st.detail = "; ".join(wrote.values())

    with rb.always(f"RESUME PgBouncer ({dbs}) -- always", *bnames,
                   does=f"RESUME {dbs}, also when a step failed", run=resume):
        try:
            rb.step(f"PAUSE PgBouncer ({dbs})", *bnames,
                    does=f"PAUSE {dbs}: transactions finish, new ones wait", run=pause)
            rb.step(f"stop the old primary {old.name} cleanly", old.name,
                    does="pg_ctl stop -m fast (immediate if that fails); its shutdown "
                         "checkpoint is the last WAL",
                    run=stop_old)
            rb.step(f"check {target.name} received every WAL record", target.name,
                    does="receive LSN past the shutdown checkpoint, else restart the old "
                         "primary", run=check_received)
            rb.step(f"promote {target.name} (repmgr standby promote)", target.name,
                    does=f"repmgr -f {target.repmgr_conf} standby promote; wait until out "
                         "of recovery", run=promote)
            rb.step(f"{old.name} rejoins as a standby of {target.name}", old.name,
                    does=f"CHECKPOINT on {target.name}; repmgr node rejoin --force-rewind "
                         "(dry run first); wait until streaming", run=rejoin_old)
            if siblings:
                rb.step(f"other standbys follow {target.name}", *[n.name for n in siblings],
                        does="repmgr standby follow; wait until streaming from the new "
                             "primary", run=follow)
            rb.step(f"re-point PgBouncer at {target.name}, RELOAD", *bnames,
                    does=f"[databases] {dbs} -> host={target.address} port={target.port}; "
                         "RELOAD", run=repoint)
        except CommandFailed as exc:
            if p.stopped and not p.promoted:  # only after a failure: not in the plan
                rb.step(f"undo: start the old primary {old.name} again", old.name,
                        does=f"pg_ctl start; wait until {old.name} is a running primary",
                        run=start_old)
            raise StepError(f"switchover stopped: {exc}",
                            hint="PgBouncer was resumed; `opskit pg status` shows the cluster"
                            if p.paused else "nothing was changed") from None
    rb.step("verify: a write through PgBouncer lands on the new primary",
            *bnames, target.name,
            does=f"txid_current() through PgBouncer answered by {target.name}", run=verify)
    return {"target": target.name, "old_primary": old.name}
