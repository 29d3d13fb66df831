"""``pg failover``: the primary is down (or must go now) -- promote the best standby, safely.

Order: preflight -> hold PgBouncer clients (KILL) -> fence the old primary (stop it) ->
promote -> re-point PgBouncer (rewrite, RELOAD, RESUME) -> verify a write through PgBouncer on
the new primary and its new timeline -> the other standbys follow -> final status. Clients are
let go as soon as the new primary takes writes; the follow does not hold them.

The steps after the preflight are ``pg/failover_steps.py``, shared with ``pg failover
--continue RUN_ID`` (``pg/failover_continue.py``); so are the critical sections and the
paragraph an interrupt or a failure ends with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opskit.errors import SafetyError
from opskit.pg import checks, failover_steps, state, steps
from opskit.pg.config import Cluster
from opskit.runner import interrupts
from opskit.runner.hostpool import HostPool
from opskit.runner.runbook import Runbook, Step
from opskit.units import human_bytes


@dataclass
class FailoverOptions:
    to: str | None = None
    force: bool = False
    yes: bool = False


def _bouncer_targets(st: state.ClusterState) -> dict[str, str]:
    return {f"{b.name}/{db}": t for b in st.bouncers for db, t in b.targets.items()}


def _describe(n: state.NodeState) -> str:
    return (f"{n.name}: {n.role}, timeline {n.timeline}, replayed {human_bytes(n.lag_bytes)} "
            f"behind, replay {'PAUSED' if n.replay_paused else 'running'}")


def preflight(cluster: Cluster, pool: HostPool, rb: Runbook,
              opts: FailoverOptions) -> tuple[checks.Decision, state.ClusterState]:
    def ask(st: Step) -> tuple[checks.Decision, state.ClusterState]:
        cs = state.gather(cluster, pool, with_repmgr=False)
        d = checks.decide_failover(cs, opts.to, cluster.max_lag_bytes, _bouncer_targets(cs))
        old = f"{d.old.name} ({d.old.role})" if d.old else "unknown"
        parts = [f"old primary {old}", f"timeline {d.timeline}"]
        if d.target:
            parts.append(f"target {_describe(d.target)}")
        parts += d.notes
        unreachable_b = [b.name for b in cs.bouncers if not b.reachable]
        if unreachable_b:
            d.refusals.append(f"PgBouncer {', '.join(unreachable_b)} unreachable: clients "
                              "there could still reach the old primary")
        if d.refusals and opts.force:
            st.status = "warning"
            parts.append("FORCED past: " + "; ".join(d.refusals))
        st.detail = "; ".join(parts)
        return d, cs

    d, cs = rb.check("preflight: ask every node and PgBouncer",
                     *[n.name for n in cluster.nodes], *[b.name for b in cluster.bouncers],
                     run=ask)
    if d.target is None:
        raise SafetyError("no standby to promote: " + "; ".join(d.refusals or ["none found"]),
                          hint="`opskit pg status` shows every node")
    if d.refusals and not opts.force:
        raise SafetyError("refusing to fail over: " + "; ".join(d.refusals),
                          hint="fix the cause, choose another --to, or add --force "
                               "(journaled) if you accept the risk")
    return d, cs


def run(cluster: Cluster, pool: HostPool, rb: Runbook, opts: FailoverOptions) -> dict[str, Any]:
    try:
        d, cs = preflight(cluster, pool, rb, opts)
    except KeyboardInterrupt:
        raise interrupts.Stopped("interrupted in the preflight: nothing was changed",
                                 hint=rb.continue_command()) from None
    assert d.target is not None
    target = cluster.node(d.target.name)
    old = cluster.node(d.old.name) if d.old else None
    old_reachable = old is not None and pool.reachable(old.host)
    standbys = [cluster.node(n.name) for n in cs.nodes
                if n.role == state.STANDBY and n.name != target.name]
    # A dry run shows the unreachable old primary in the plan instead of refusing.
    if old is not None and not old_reachable and not opts.yes and not rb.dry_run:
        raise SafetyError(f"old primary {old.name} is unreachable: it cannot be stopped, only "
                          "fenced at PgBouncer", hint="re-run with --yes to proceed anyway")
    p = failover_steps.Progress(old_stopped=old is None,
                                old_down=d.old is not None and d.old.role == state.DOWN)
    rb.remember(target=target.name, old_primary=old.name if old else None,
                timeline=d.timeline, standbys=[n.name for n in standbys])

    def fence(st: Step) -> None:
        if old is None:
            st.status, st.detail = "warning", "no old primary identified"
        elif not old_reachable:
            err = pool.error(old.host)
            st.status = "warning"
            st.detail = (f"UNREACHABLE ({err.message if err else 'no session'}): not "
                         "stopped; fenced at PgBouncer only (--yes given)")
        else:
            st.detail = steps.stop(pool.get(old.host), old)
            p.old_stopped = True

    if old is None:
        fence_does = "no old primary identified: fenced at PgBouncer only"
    elif old_reachable:
        fence_does = f"pg_ctl -D {old.data_directory} stop -m fast (immediate if that fails)"
    else:
        fence_does = "UNREACHABLE: cannot be stopped (needs --yes); fenced at PgBouncer only"
    failover_steps.take(cluster, pool, rb, failover_steps.Remaining(
        target, old, fence=fence_does, promote=True, follow=standbys,
        target_timeline=d.target.timeline, timeline=d.timeline, fence_run=fence, progress=p),
        what="pg failover")
    if rb.dry_run:  # the keys of the dry run's document as before: nothing was stopped
        return {"target": target.name, "old_primary": old.name if old else None}
    return {"target": target.name, "old_primary": old.name if old else None,
            "old_primary_stopped": p.old_stopped, "forced": bool(d.refusals)}
