"""``pg switchover --to NODE``: a planned change of primary with the old one alive.

PgBouncer PAUSE (running transactions finish, new ones wait) -> stop the old primary cleanly
(its walsenders ship every WAL record, the shutdown checkpoint last) -> check the target
received it all (else start the old primary again: nothing lost, nothing changed) -> promote
the target -> re-point PgBouncer and RELOAD -> RESUME, always, also when a step failed ->
verify a write -> the old primary rejoins as its standby -> the other standbys follow.
Clients wait from the PAUSE to the RESUME only: the rejoin (a CHECKPOINT, maybe pg_rewind) and
the follow come after, on a cluster whose old primary stays stopped until it is a standby.

repmgr's own ``standby switchover --siblings-follow`` does the same steps but drives the old
primary over its own SSH between the db hosts as the postgres user; opskit already holds a
session to every node, so it runs repmgr's primitives itself and journals each step.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from opskit.errors import SafetyError, StepError
from opskit.pg import bouncer, checks, lsn, state, steps, tools
from opskit.pg.config import Cluster, PgNode
from opskit.pg.rejoin import rejoin_node
from opskit.runner import interrupts, wait
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
    restarted: bool = False  # the undo: the old primary runs again
    rejoined: bool = False
    followed: bool = False
    repointed: bool = False


def state_left(p: _Progress, old: str, target: str, siblings: list[str],
               resumed: bool) -> str:
    """One paragraph after an interrupt or a failure: what was done, where PgBouncer points,
    whether clients can write (``resumed``: the always-step RESUMEs PgBouncer after it)."""
    held = "RESUMEd" if resumed or not p.paused else "PAUSED (clients wait)"
    if not p.promoted:
        first = (f"nothing was switched: {old} runs as the primary again" if p.restarted
                 else f"nothing was switched, but {old} is STOPPED" if p.stopped
                 else f"nothing was switched: {old} is still the primary")
        ok = resumed and (p.restarted or not p.stopped)
        return (f"{first}; PgBouncer points at {old} and is {held}; clients "
                f"{'can' if ok else 'cannot'} write")
    said = [f"{target} is the primary",
            f"PgBouncer points at {target if p.repointed else old} and is {held}"]
    ok = p.repointed and (resumed or not p.paused)
    said.append(f"clients {'can' if ok else 'cannot'} write")
    said.append(f"{old} rejoined as its standby" if p.rejoined
                else f"{old} is stopped, not yet rejoined")
    if siblings:
        said.append(f"{', '.join(siblings)} {'follow' if p.followed else 'do not yet follow'}"
                    f" {target}")
    return "; ".join(said)


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
    snames = [n.name for n in siblings]

    def left() -> str:
        return state_left(p, old.name, target.name, snames, resumed=False)

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
        p.rejoined = True

    def follow(st: Step) -> None:
        steps.follow_all(pool, cluster, siblings, target)
        p.followed = True

    def repoint(st: Step) -> None:
        changed = bouncer.each(cluster, pool, lambda s, b: bouncer.repoint(s, b, target))
        p.repointed = True
        st.detail = "; ".join(f"{k}: {v}" for k, v in changed.items())

    def start_old(st: Step) -> None:
        tools.pg_ctl(pool.get(old.host), old, "start", "-l",
                     f"{old.data_directory}/opskit-start.log")
        steps.wait_role(pool.get(old.host), old, primary=True)
        p.restarted = True

    def resume(st: Step) -> None:
        # Also after a PAUSE that failed half-way: RESUME of a running database is no error.
        res = bouncer.each(cluster, pool, bouncer.release, strict=False)
        bad = [f"{k}: {v}" for k, v in res.items() if isinstance(v, Exception) or v]
        if bad:
            st.status, st.detail = "warning", "; ".join(map(str, bad))

    def verify(st: Step) -> None:
        st.detail = steps.verify_writes(cluster, pool, target, None)

    def undo() -> None:
        rb.step(f"undo: start the old primary {old.name} again", old.name,
                does=f"pg_ctl start; wait until {old.name} is a running primary",
                run=start_old)

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
            # RESUME (the always-step) ends it: clients are let go once the target takes
            # writes; the rejoin and the follow come after, without holding them.
            with rb.critical("promote -> re-point PgBouncer -> RESUME", leaves=left):
                rb.step(f"promote {target.name} (repmgr standby promote)", target.name,
                        does=f"repmgr -f {target.repmgr_conf} standby promote; wait until "
                             "out of recovery", run=promote)
                rb.step(f"re-point PgBouncer at {target.name}, RELOAD", *bnames,
                        does=f"[databases] {dbs} -> host={target.address} "
                             f"port={target.port}; RELOAD", run=repoint)
        except (KeyboardInterrupt, interrupts.Stopped):
            if p.stopped and not p.promoted and not interrupts.aborted():
                with suppress(CommandFailed, interrupts.Stopped), \
                        rb.critical("the undo", leaves=left):
                    undo()
            # Raised inside the always-block: PgBouncer is RESUMEd before it is reported.
            raise interrupts.Stopped(
                "pg switchover interrupted: "
                + state_left(p, old.name, target.name, snames,
                             resumed=not interrupts.aborted()) + ".",
                hint=f"`opskit pg status`; run `opskit pg switchover --to {target.name}` "
                     "again from a healthy cluster" if not p.promoted else
                     _after_promote(old.name, snames)) from None
        except CommandFailed as exc:
            if p.stopped and not p.promoted:  # only after a failure: not in the plan
                with rb.critical("the undo", leaves=left):
                    undo()
            raise StepError(f"switchover stopped: {exc}",
                            hint="PgBouncer was resumed; `opskit pg status` shows the cluster"
                            if p.paused else "nothing was changed") from None

    def after() -> str:  # clients write from here on, whatever stops the rest
        return state_left(p, old.name, target.name, snames, resumed=True)

    try:
        rb.step("verify: a write through PgBouncer lands on the new primary",
                *bnames, target.name,
                does=f"txid_current() through PgBouncer answered by {target.name}",
                run=verify)
        # Each a critical section: pg_rewind or a standby's restart is not to be cut half-way.
        with rb.critical(f"{old.name} rejoins", leaves=after):
            rb.step(f"{old.name} rejoins as a standby of {target.name}", old.name,
                    does=f"CHECKPOINT on {target.name}; repmgr node rejoin "
                         "--force-rewind (dry run first); wait until streaming",
                    run=rejoin_old)
        if siblings:
            with rb.critical("the other standbys follow", leaves=after):
                rb.step(f"other standbys follow {target.name}", *snames,
                        does="repmgr standby follow; wait until streaming from the new "
                             "primary", run=follow)
    except CommandFailed as exc:
        raise StepError(f"switchover stopped after the switch: {exc}",
                        hint=f"{after()}. {_after_promote(old.name, snames)}") from None
    except (KeyboardInterrupt, interrupts.Stopped):
        raise interrupts.Stopped(f"pg switchover interrupted: {after()}.",
                                 hint=_after_promote(old.name, snames)) from None
    return {"target": target.name, "old_primary": old.name}


def _after_promote(old: str, siblings: list[str]) -> str:
    """The way on once the target is the primary and clients write to it."""
    return ("`opskit pg status`; `opskit pg rejoin NODE` for " + ", ".join([old, *siblings])
            + " if it does not stream from the new primary")
