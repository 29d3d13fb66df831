"""``pg failover --continue RUN_ID``: finish a failover that was interrupted (or failed).

The journal says what that run decided (its ``"pg failover decision"`` record: the target and
the old primary); the cluster, gathered again, says what is done. The remaining steps are
then taken in the failover's own order and code (``pg/failover_steps.py``), each only if still
needed: hold clients and fence the old primary if it is still a primary, promote the target if
it is still a standby, re-point PgBouncer and RESUME (always: both are idempotent), verify a
write, make the standbys that do not stream from the target follow.
A state that contradicts the journal (another node is primary, the target is down, the old
primary answers as primary next to a promoted target) is refused before anything changes.
A run stopped before its preflight decided anything is simply a failover from the start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opskit import journal
from opskit.errors import SafetyError, UsageError
from opskit.pg import failover, failover_steps, state
from opskit.pg.config import Cluster, PgNode
from opskit.runner.hostpool import HostPool
from opskit.runner.runbook import Runbook, Step

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
    target_timeline: int | None = None  # the target's, now (the re-check before a promote)


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
    return _Plan(target, old, bool(others), t.role == state.STANDBY, follow, t.timeline)


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
    # The progress of this run, in the failover's terms (for the paragraph it ends with).
    p = failover_steps.Progress(old_stopped=not plan.old_alive, promoted=not plan.promote)
    timeline = facts.get("timeline")
    failover_steps.take(cluster, pool, rb, failover_steps.Remaining(
        target, old,
        fence="pg_ctl stop -m fast (immediate if that fails)"
        if plan.old_alive and old is not None else None,
        promote=plan.promote, follow=plan.follow, target_timeline=plan.target_timeline,
        timeline=timeline if isinstance(timeline, int) else None, progress=p),
        what="pg failover --continue")
    return {"target": target.name, "old_primary": old.name if old else None,
            "continues": run_id}
