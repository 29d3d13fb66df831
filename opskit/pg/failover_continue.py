"""``pg failover --continue RUN_ID``: finish a failover that was interrupted (or failed).

The journal says what that run decided (its ``"pg failover decision"`` record: the target and
the old primary); the cluster, gathered again, says what is done. The remaining steps are
then taken, each only if still needed: hold clients and fence the old primary if it is still a
primary, promote the target if it is still a standby, make the standbys that do not stream
from it follow, re-point PgBouncer and RESUME (always: both are idempotent), verify a write.
A state that contradicts the journal (another node is primary, the target is down, the old
primary answers as primary next to a promoted target) is refused before anything changes.
A run stopped before its preflight decided anything is simply a failover from the start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opskit import journal
from opskit.errors import SafetyError, StepError, UsageError
from opskit.pg import bouncer, failover, state, steps
from opskit.pg.config import Cluster, PgNode
from opskit.runner import interrupts
from opskit.runner.hostpool import HostPool
from opskit.runner.runbook import Runbook, Step
from opskit.transport.errors import CommandFailed

DECISION = "pg failover decision"


def decision_of(run_id: str) -> dict[str, Any] | None:
    """What run ``run_id`` decided (None: it stopped before deciding); UsageError if the
    journal has no pg failover of that id."""
    records = [e for e in journal.read() if e.get("run_id") == run_id]
    if not any(str(e.get("command", "")).startswith("pg failover") for e in records):
        raise UsageError(f"no pg failover with run id {run_id} in the journal "
                         f"{journal.journal_path()}",
                         hint="`opskit journal --last 20` lists runs with their ids")
    found = [e.get("details") or {} for e in records if e.get("command") == DECISION]
    return found[-1] if found else None


@dataclass
class _Plan:
    target: PgNode
    old: PgNode | None
    old_alive: bool  # the old primary still answers as primary: fence it first
    promote: bool  # the target is still a standby
    follow: list[PgNode]  # standbys not streaming from the target


def _decide(cluster: Cluster, cs: state.ClusterState, facts: dict[str, Any]) -> _Plan:
    target = cluster.node(str(facts["target"]))
    old = cluster.node(str(facts["old_primary"])) if facts.get("old_primary") else None
    t = cs.node(target.name)
    if not t.up:
        raise SafetyError(f"cannot continue: the target {target.name} is {t.role} "
                          f"({t.error or 'no answer'})", hint="`opskit pg status`")
    others = [n.name for n in cs.primaries if n.name != target.name]
    strangers = [n for n in others if old is None or n != old.name]
    if strangers:
        raise SafetyError(f"cannot continue: {', '.join(strangers)} answers as primary, but "
                          f"the run chose {target.name} (old primary "
                          f"{old.name if old else '?'})",
                          hint="the cluster changed since: `opskit pg status`")
    if others and t.role == state.PRIMARY:
        raise SafetyError(f"cannot continue: two primaries, {target.name} and {others[0]}",
                          hint=f"stop {others[0]} (it is the old primary), then "
                               f"`opskit pg rejoin {others[0]}`; `opskit pg status`")
    unreachable = [b.name for b in cs.bouncers if not b.reachable]
    if unreachable:
        raise SafetyError(f"cannot continue: PgBouncer {', '.join(unreachable)} unreachable")
    follow = [cluster.node(n.name) for n in cs.nodes
              if n.role == state.STANDBY and n.name != target.name
              and (old is None or n.name != old.name)
              and (n.upstream or "").rsplit(":", 1)[0] != target.address]
    return _Plan(target, old, bool(others), t.role == state.STANDBY, follow)


def run(cluster: Cluster, pool: HostPool, rb: Runbook, run_id: str,
        opts: failover.FailoverOptions) -> dict[str, Any]:
    facts = decision_of(run_id)
    if facts is None:
        rb.env.line(f"run {run_id} stopped before its preflight decided anything: nothing "
                    "was changed, so this is a failover from the start")
        return failover.run(cluster, pool, rb, opts)
    # First, so that this run too can be continued whenever it is interrupted.
    rb.remember(**{**facts, "continues": run_id})

    def ask(st: Step) -> _Plan:
        cs = state.gather(cluster, pool, with_repmgr=False)
        plan = _decide(cluster, cs, facts)
        st.detail = (f"run {run_id} chose {plan.target.name}: "
                     + ("still a standby" if plan.promote else "already primary")
                     + (f"; {plan.old.name} still primary" if plan.old_alive and plan.old
                        else "")
                     + f"; to follow: {', '.join(n.name for n in plan.follow) or 'none'}")
        return plan

    plan = rb.check(f"preflight: what run {run_id} left undone",
                    *[n.name for n in cluster.nodes], *[b.name for b in cluster.bouncers],
                    run=ask)
    target, old = plan.target, plan.old
    bnames = [b.name for b in cluster.bouncers]
    dbs = bouncer.database_names(cluster)
    # The progress of this run, in the failover's terms (for the paragraph on an interrupt).
    p = failover.Progress(old_stopped=not plan.old_alive, promoted=not plan.promote,
                           followed=not plan.follow)

    def left() -> str:
        return failover.state_left(p, target.name, old.name if old else None,
                                   [n.name for n in plan.follow], bnames)

    def hold(st: Step) -> None:
        bouncer.each(cluster, pool, lambda s, b: bouncer.hold(s, b, kill=True))
        p.held = True

    def fence(st: Step) -> None:
        assert old is not None
        st.detail = steps.stop(pool.get(old.host), old)
        p.old_stopped = True

    def promote(st: Step) -> None:
        steps.promote(pool.get(target.host), target)
        p.promoted = True

    def follow(st: Step) -> None:
        bad = steps.follow_all(pool, cluster, plan.follow, target)
        p.followed = True
        if bad:
            st.status, st.detail = "warning", f"{bad} (run `opskit pg rejoin` for them)"

    def repoint(st: Step) -> None:
        st.detail = bouncer.repoint_then_resume(cluster, pool, target, p)

    def verify(st: Step) -> None:
        wrote = bouncer.each(cluster, pool,
                             lambda s, b: steps.write_through(s, b, cluster, target))
        p.verified = True
        st.detail = "; ".join(wrote.values())

    try:
        if plan.old_alive and old is not None:
            rb.step("hold clients at PgBouncer (KILL)", *bnames,
                    does=f"KILL {dbs} on the admin console", run=hold)
            rb.step(f"fence the old primary: stop postgres on {old.name}", old.name,
                    does="pg_ctl stop -m fast (immediate if that fails)", run=fence)
        with rb.critical("promote -> standbys follow -> re-point PgBouncer -> RESUME",
                         leaves=left):
            if plan.promote:
                rb.step(f"promote {target.name} (repmgr standby promote)", target.name,
                        does="repmgr standby promote; wait until out of recovery",
                        run=promote)
            if plan.follow:
                rb.step(f"make {', '.join(n.name for n in plan.follow)} follow {target.name}",
                        *[n.name for n in plan.follow],
                        does="repmgr standby follow; wait until streaming", run=follow)
            rb.step(f"re-point PgBouncer at {target.name}, RELOAD, RESUME", *bnames,
                    does=f"[databases] {dbs} -> host={target.address} port={target.port}; "
                         f"RELOAD; RESUME {dbs}", run=repoint)
        rb.step("verify: a write through PgBouncer lands on the new primary",
                *bnames, target.name,
                does=f"txid_current() through PgBouncer answered by {target.name}",
                run=verify)
    except CommandFailed as exc:
        raise StepError(f"continuing the failover stopped: {exc}",
                        hint="`opskit pg status`; the journal has every step") from None
    except (KeyboardInterrupt, interrupts.Stopped):
        raise interrupts.Stopped(f"pg failover --continue interrupted: {left()}.",
                                 hint=rb.continue_command()) from None
    return {"target": target.name, "old_primary": old.name if old else None,
            "continues": run_id}
