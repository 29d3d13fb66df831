"""``pg failover``: the primary is down (or must go now) -- promote the best standby, safely.

Order: preflight -> hold PgBouncer clients (KILL) -> fence the old primary (stop it) ->
promote -> other standbys follow -> re-point PgBouncer (rewrite, RELOAD, RESUME) -> verify a
write through PgBouncer on the new primary and its new timeline -> final status.

Promote -> follow -> re-point -> RESUME is one critical section (``runner.interrupts``): a
Ctrl-C or SIGTERM there lets it finish, then the run stops and says what state it left and
the command that continues it (``pg failover --continue RUN_ID``, ``pg/failover_continue.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opskit.errors import SafetyError, StepError
from opskit.pg import bouncer, checks, state, steps
from opskit.pg.config import Cluster
from opskit.runner import interrupts
from opskit.runner.hostpool import HostPool
from opskit.runner.runbook import Runbook, Step
from opskit.transport.errors import CommandFailed
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


@dataclass
class Progress:
    """What the steps did so far: the recovery in ``finally`` and the hint depend on it."""

    old_stopped: bool
    old_down: bool = False  # the preflight found its postgres not running
    held: bool = False
    promoted: bool = False
    followed: bool = False
    repointed: bool = False
    verified: bool = False


def state_left(p: Progress, target: str, old: str | None, standbys: list[str],
               bouncers: list[str]) -> str:
    """One paragraph: what the failover did and did not do, where PgBouncer points, whether
    clients can write (after an interrupt; also what a second Ctrl-C would leave)."""
    old_name = old or "the old primary"
    said = [f"{target} was promoted and is the primary" if p.promoted
            else f"{target} was not promoted"]
    if old:
        said.append(f"{old} is stopped" if p.old_stopped
                    else f"{old} was down already (not fenced)" if p.old_down
                    else f"{old} was not stopped")
    if standbys:
        s = "s" if len(standbys) == 1 else ""
        said.append(f"{', '.join(standbys)} follow{s} {target}" if p.followed
                    else f"{', '.join(standbys)} still follow{s} {old_name}")
    held = "PAUSED (KILLed: clients wait)" if p.held else "RESUMEd"
    said.append(f"PgBouncer {', '.join(bouncers) or '-'} points at "
                f"{target if p.repointed else old_name} and is {held}")
    if p.promoted and p.repointed and not p.held:
        said.append("clients can write through PgBouncer"
                    + ("" if p.verified else " (the verify step did not run)"))
    else:
        said.append("clients cannot write through PgBouncer")
    return "; ".join(said)


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
    bnames = [b.name for b in cluster.bouncers]
    dbs = bouncer.database_names(cluster)
    # A dry run shows the unreachable old primary in the plan instead of refusing.
    if old is not None and not old_reachable and not opts.yes and not rb.dry_run:
        raise SafetyError(f"old primary {old.name} is unreachable: it cannot be stopped, only "
                          "fenced at PgBouncer", hint="re-run with --yes to proceed anyway")
    p = Progress(old_stopped=old is None, old_down=d.old is not None and d.old.role == state.DOWN)
    rb.remember(target=target.name, old_primary=old.name if old else None,
                timeline=d.timeline, standbys=[n.name for n in standbys])

    def left() -> str:
        return state_left(p, target.name, old.name if old else None,
                          [n.name for n in standbys], bnames)

    def hold(st: Step) -> None:
        bouncer.each(cluster, pool, lambda s, b: bouncer.hold(s, b, kill=True))
        p.held = True
        st.detail = f"databases {dbs} held"

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

    def promote(st: Step) -> None:
        # Asked again under the lease, right before: did anything promote meanwhile?
        why = checks.changed_before_promote(state.gather(cluster, pool, with_repmgr=False),
                                            target.name, d.target.timeline if d.target else None)
        if why:
            raise SafetyError(f"not promoting {target.name}, the cluster changed since the "
                              "preflight: " + "; ".join(why),
                              hint="nothing was promoted; `opskit pg status` shows the cluster")
        steps.promote(pool.get(target.host), target)
        p.promoted = True
        st.detail = f"{target.name} is out of recovery"

    def follow(st: Step) -> None:
        bad = steps.follow_all(pool, cluster, standbys, target)
        p.followed = True
        if bad:
            st.status, st.detail = "warning", f"{bad} (run `opskit pg rejoin` for them)"

    def repoint(st: Step) -> None:
        st.detail = bouncer.repoint_then_resume(cluster, pool, target, p)

    def verify(st: Step) -> None:
        wrote = bouncer.each(cluster, pool,
                             lambda s, b: steps.write_through(s, b, cluster, target))
        after = state.probe_node(pool.get(target.host), target)
        if d.timeline is not None and (after.timeline or 0) <= d.timeline:
            raise CommandFailed(f"{target.name} is on timeline {after.timeline}, expected "
                                f"above {d.timeline}")
        st.detail = "; ".join(wrote.values()) + f"; timeline {d.timeline} -> {after.timeline}"
        p.verified = True

    if old is None:
        fence_does = "no old primary identified: fenced at PgBouncer only"
    elif old_reachable:
        fence_does = f"pg_ctl -D {old.data_directory} stop -m fast (immediate if that fails)"
    else:
        fence_does = "UNREACHABLE: cannot be stopped (needs --yes); fenced at PgBouncer only"
    interrupted = False
    try:
        rb.step("hold clients at PgBouncer (KILL: no connection reaches the old primary)",
                *bnames, does=f"KILL {dbs} on the admin console", run=hold)
        rb.step(f"fence the old primary: stop postgres on {old.name if old else '?'}",
                *([old.name] if old else []), does=fence_does, run=fence)
        with rb.critical("promote -> standbys follow -> re-point PgBouncer -> RESUME",
                         leaves=left):
            rb.step(f"promote {target.name} (repmgr standby promote)", target.name,
                    does=f"repmgr -f {target.repmgr_conf} standby promote; wait until out "
                         "of recovery", run=promote)
            if standbys:
                rb.step(f"make the other standbys follow {target.name} (repmgr standby "
                        "follow)", *[n.name for n in standbys],
                        does="repmgr standby follow; wait until streaming from the new "
                             "primary", run=follow)
            rb.step(f"re-point PgBouncer at {target.name} ({target.address}:{target.port}), "
                    "RELOAD, RESUME", *bnames,
                    does=f"[databases] {dbs} -> host={target.address} port={target.port}; "
                         f"RELOAD; RESUME {dbs}", run=repoint)
        rb.step("verify: a write through PgBouncer lands on the new primary, new timeline",
                *bnames, target.name,
                does=f"txid_current() through PgBouncer answered by {target.name}; timeline "
                     f"above {d.timeline}", run=verify)
    except CommandFailed as exc:
        raise StepError(f"failover stopped: {exc}",
                        hint=_after_failure(p.promoted, p.repointed, p.old_stopped)) from None
    except (KeyboardInterrupt, interrupts.Stopped):
        interrupted = True  # said below, once the recovery has run
    finally:
        # Let held clients go, except when that could send them to a live old primary while a
        # new one exists (promoted, not re-pointed, old primary not known to be stopped).
        # Only after a failure (a dry run holds nothing), so never in the plan.
        def release(st: Step) -> None:
            bouncer.each(cluster, pool, bouncer.release, strict=False)
            p.held = False

        if interrupts.aborted():
            pass  # left as the second Ctrl-C said it would be
        elif p.held and (not p.promoted or p.old_stopped):
            try:
                with rb.critical("RESUME PgBouncer", leaves=left):
                    rb.step("RESUME PgBouncer (after the failure)", *bnames,
                            does=f"RESUME {dbs}", run=release)
            except (KeyboardInterrupt, interrupts.Stopped):
                interrupted = True
        elif p.held:
            rb.env.note("PgBouncer left PAUSED/KILLed on purpose: the old primary may be alive "
                        "and a new one was promoted. Re-point by hand, then RESUME.")
    if interrupted:
        raise interrupts.Stopped(f"pg failover interrupted: {left()}.",
                                 hint=rb.continue_command())
    if rb.dry_run:  # the keys of the dry run's document as before: nothing was stopped
        return {"target": target.name, "old_primary": old.name if old else None}
    return {"target": target.name, "old_primary": old.name if old else None,
            "old_primary_stopped": p.old_stopped, "forced": bool(d.refusals)}


def _after_failure(promoted: bool, repointed: bool, old_stopped: bool) -> str:
    if not promoted:
        return "nothing was promoted; `opskit pg status` shows the cluster as it is"
    if not repointed:
        return ("the new primary is up but PgBouncer still points at the old one: "
                "`opskit pg status`, then fix the ini and RELOAD")
    return "see `opskit pg status`; the journal has every step"
