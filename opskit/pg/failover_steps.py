"""The steps of a failover, declared once for ``pg failover`` and its ``--continue``.

Order: hold clients at PgBouncer (KILL) -> fence the old primary -> promote -> re-point
PgBouncer, RELOAD, ``server_login_retry`` 0, RESUME -> verify a write through PgBouncer ->
``server_login_retry`` back to its configured value -> the other standbys follow. The retry at 0
lets PgBouncer log in to the new primary at once, although its logins to the crashed one
failed (``pg/bouncer.py``); it is restored also when a step fails or the run is interrupted.
Clients wait at PgBouncer only from the hold to the RESUME, i.e. as soon as the new primary
accepts writes they are let go: the standbys' ``repmgr standby follow`` (a second or more)
comes after, without holding them. Both are safe that way round: PgBouncer is re-pointed only
at the promoted target (out of recovery), with the old primary stopped (or, unreachable,
fenced at PgBouncer by the KILL, with ``--yes``); the other standbys are read-only whichever
primary they stream from.

Two critical sections (``runner.interrupts``): promote -> re-point -> RESUME (a promoted
target with clients held or sent to the old primary is worse than either end), and the
follow (``repmgr standby follow`` restarts each standby: not to be cut half-way). Between
and after them a Ctrl-C stops the run at once; either way it ends with one paragraph of the
state left (:func:`state_left`) and ``pg failover --continue RUN_ID``
(``pg/failover_continue.py``), which takes only the steps still needed, through this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from opskit.errors import SafetyError, StepError
from opskit.pg import bouncer, checks, state, steps
from opskit.pg.config import Cluster, PgNode
from opskit.runner import interrupts
from opskit.runner.hostpool import HostPool
from opskit.runner.runbook import Runbook, Step
from opskit.transport.errors import CommandFailed


@dataclass
class Progress:
    """What the steps did so far: the recovery in ``finally`` and the paragraph depend on it."""

    old_stopped: bool
    old_down: bool = False  # the preflight found its postgres not running
    held: bool = False
    promoted: bool = False
    repointed: bool = False
    verified: bool = False
    followed: bool = False
    not_followed: str = ""  # the standbys whose follow failed, and why
    # PgBouncer name -> configured server_login_retry, while it runs with 0 (bouncer.py).
    login_retry: dict[str, str] = field(default_factory=dict)


def state_left(p: Progress, target: str, old: str | None, standbys: list[str],
               bouncers: list[str]) -> str:
    """One paragraph: what the failover did and did not do, where PgBouncer points, whether
    clients can write (after an interrupt or a failure; also what a second Ctrl-C would
    leave)."""
    old_name = old or "the old primary"
    said = [f"{target} was promoted and is the primary" if p.promoted
            else f"{target} was not promoted"]
    if old:
        said.append(f"{old} is stopped" if p.old_stopped
                    else f"{old} was down already (not fenced)" if p.old_down
                    else f"{old} was not stopped")
    held = "PAUSED (KILLed: clients wait)" if p.held else "RESUMEd"
    said.append(f"PgBouncer {', '.join(bouncers) or '-'} points at "
                f"{target if p.repointed else old_name} and is {held}")
    if p.promoted and p.repointed and not p.held:
        said.append("clients can write through PgBouncer"
                    + ("" if p.verified else " (the verify step did not run)"))
    else:
        said.append("clients cannot write through PgBouncer")
    if p.login_retry:
        said.append(f"{bouncer.LOGIN_RETRY} is still 0 on "
                    + ", ".join(f"{k} (configured: {v})" for k, v in
                                sorted(p.login_retry.items()))
                    + f": SET {bouncer.LOGIN_RETRY} = <configured> on its admin console, or "
                      "RELOAD")
    if standbys:
        s = "s" if len(standbys) == 1 else ""
        if p.followed:
            said.append(f"{', '.join(standbys)} follow{s} {target}")
        elif p.not_followed:
            said.append(f"NOT every standby follows {target}: {p.not_followed}")
        else:
            said.append(f"{', '.join(standbys)} still follow{s} {old_name}")
    return "; ".join(said)


@dataclass
class Remaining:
    """What is left to do, as the preflight (of a failover, or of its --continue) found it."""

    target: PgNode
    old: PgNode | None
    # The fence step's ``does`` (what it will do to the old primary); None: no hold and no
    # fence (a --continue whose old primary no longer answers as primary).
    fence: str | None
    promote: bool  # the target is still a standby
    follow: list[PgNode]  # the standbys to make follow the target
    target_timeline: int | None  # the target's timeline in the preflight (the re-check)
    timeline: int | None  # the cluster's before the promote (the verify: it must go up)
    # The fence step's body for the old primary: returns its detail (None: stop it).
    fence_run: Callable[[Step], None] | None = None
    progress: Progress = field(default_factory=lambda: Progress(old_stopped=False))


def take(cluster: Cluster, pool: HostPool, rb: Runbook, r: Remaining, *, what: str) -> None:
    """Declare (and in a real run, take) the remaining steps; ``what`` names the run in its
    errors ("pg failover", "pg failover --continue"). Raises StepError (a step failed: exit
    2) or interrupts.Stopped (exit 130), each with the state left and the way on."""
    target, old, p = r.target, r.old, r.progress
    bnames = [b.name for b in cluster.bouncers]
    dbs = bouncer.database_names(cluster)
    fnames = [n.name for n in r.follow]

    def left() -> str:
        return state_left(p, target.name, old.name if old else None, fnames, bnames)

    def hold(st: Step) -> None:
        bouncer.each(cluster, pool, lambda s, b: bouncer.hold(s, b, kill=True))
        p.held = True
        st.detail = f"databases {dbs} held"

    def fence(st: Step) -> None:
        if r.fence_run is not None:
            r.fence_run(st)
            return
        assert old is not None
        st.detail = steps.stop(pool.get(old.host), old)
        p.old_stopped = True

    def promote(st: Step) -> None:
        # Asked again under the lease, right before: did anything promote meanwhile?
        why = checks.changed_before_promote(state.gather(cluster, pool, with_repmgr=False),
                                            target.name, r.target_timeline)
        if why:
            raise SafetyError(f"not promoting {target.name}, the cluster changed since the "
                              "preflight: " + "; ".join(why),
                              hint="nothing was promoted; `opskit pg status` shows the cluster")
        steps.promote(pool.get(target.host), target)
        p.promoted = True
        st.detail = f"{target.name} is out of recovery"

    def repoint(st: Step) -> None:
        st.detail = bouncer.repoint_then_resume(cluster, pool, target, p)

    def verify(st: Step) -> None:
        st.detail = steps.verify_writes(cluster, pool, target, r.timeline)
        p.verified = True

    restored = False  # the planned restore ran (else ``finally`` restores after a failure)

    def restore(st: Step) -> None:
        nonlocal restored
        restored = True
        try:
            st.detail = bouncer.restore_login_retry(cluster, pool, p)
        except CommandFailed as exc:
            # Not worth failing the run over (clients write; the follow is still to do): a
            # PgBouncer left at 0 only retries failed logins without a pause.
            st.status = "warning"
            st.detail = (f"NOT restored: {exc}; SET {bouncer.LOGIN_RETRY} = <configured> on "
                         "its admin console (or RELOAD)")

    def follow(st: Step) -> None:
        try:
            steps.follow_all(pool, cluster, r.follow, target)
        except CommandFailed as exc:
            p.not_followed = str(exc)
            raise
        p.followed = True

    interrupted = False
    failed: CommandFailed | None = None
    try:
        if r.fence is not None:
            rb.step("hold clients at PgBouncer (KILL: no connection reaches the old primary)",
                    *bnames, does=f"KILL {dbs} on the admin console", run=hold)
            rb.step(f"fence the old primary: stop postgres on {old.name if old else '?'}",
                    *([old.name] if old else []), does=r.fence, run=fence)
        with rb.critical("promote -> re-point PgBouncer -> RESUME", leaves=left):
            if r.promote:
                rb.step(f"promote {target.name} (repmgr standby promote)", target.name,
                        does=f"re-check the cluster; repmgr -f {target.repmgr_conf} standby "
                             "promote; wait until out of recovery", run=promote)
            rb.step(f"re-point PgBouncer at {target.name} ({target.address}:{target.port}), "
                    "RELOAD, RESUME", *bnames,
                    does=f"[databases] {dbs} -> host={target.address} port={target.port}; "
                         f"RELOAD; SHOW CONFIG; SET {bouncer.LOGIN_RETRY} = 0 (logins to the "
                         f"new primary at once); RESUME {dbs}", run=repoint)
        rb.step("verify: a write through PgBouncer lands on the new primary, new timeline",
                *bnames, target.name,
                does=f"txid_current() through PgBouncer answered by {target.name}"
                     + (f"; timeline above {r.timeline}" if r.timeline is not None else ""),
                run=verify)
        rb.step(f"restore {bouncer.LOGIN_RETRY} on PgBouncer (0 since the RESUME)", *bnames,
                does=f"SET {bouncer.LOGIN_RETRY} = the value SHOW CONFIG gave after the RELOAD",
                run=restore)
        if r.follow:
            with rb.critical("the other standbys follow", leaves=left):
                rb.step(f"make the other standbys follow {target.name} (repmgr standby "
                        "follow; clients already write)", *fnames,
                        does="repmgr standby follow; wait until streaming from the new "
                             "primary", run=follow)
    except CommandFailed as exc:
        failed = exc  # raised below, once the recovery has run: the hint says what it left
    except (KeyboardInterrupt, interrupts.Stopped):
        interrupted = True  # said below, once the recovery has run
    finally:
        # Let held clients go, except when that could send them to a live old primary while a
        # new one exists (promoted, not re-pointed, old primary not known to be stopped).
        # Only after a failure (a dry run holds nothing), so never in the plan.
        def release(st: Step) -> None:
            bouncer.each(cluster, pool, bouncer.release, strict=False)
            p.held = False

        def restore_after(st: Step) -> None:
            st.detail = bouncer.restore_login_retry(cluster, pool, p)

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
        # Set back after RESUME, as in a run that succeeds; a --continue's RELOAD would too.
        if p.login_retry and not restored and not interrupts.aborted():
            try:
                with rb.critical(f"restore {bouncer.LOGIN_RETRY}", leaves=left):
                    rb.step(f"restore {bouncer.LOGIN_RETRY} on PgBouncer (after the failure)",
                            *sorted(p.login_retry), does=f"SET {bouncer.LOGIN_RETRY} = "
                            + ", ".join(f"{v} on {k}" for k, v in sorted(p.login_retry.items())),
                            run=restore_after)
            except (KeyboardInterrupt, interrupts.Stopped):
                interrupted = True
            except CommandFailed:
                pass  # the step is journaled as failed; the paragraph says it is still 0
    if interrupted:
        raise interrupts.Stopped(f"{what} interrupted: {left()}.", hint=rb.continue_command())
    if failed is not None:
        raise StepError(f"{what} stopped: {failed}", hint=after_failure(p, left(), rb))


def after_failure(p: Progress, left: str, rb: Runbook) -> str:
    """The hint of a failed step: what to do, from how far the run got."""
    if not p.promoted:
        return "nothing was promoted; `opskit pg status` shows the cluster as it is"
    if not p.repointed:
        return (f"{left}. The new primary is up but PgBouncer still points at the old one: "
                f"`opskit pg status`, then `{rb.continue_command()}`")
    return f"{left}. `{rb.continue_command()}` finishes it; the journal has every step"
