"""The shared body of a runbook command (pg failover, redis promote, ...): a title line, the
confirmation, the steps over one pool of sessions, the final state, one JSON document, and the
journal entry -- also when a step fails or a preflight refuses. The options, run id and
confirmation come from the mutating-command shape (``commands.mutating``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from opskit.commands.mutating import Change
from opskit.commands.options import AppContext
from opskit.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, OpskitError
from opskit.inventory import Host
from opskit.output import Environment
from opskit.runner import hostpool
from opskit.runner.runbook import Runbook

C = TypeVar("C")  # the service's settings (pg Cluster, redis Topology)
S = TypeVar("S")  # its gathered state (ClusterState, TopologyState): has .to_dict()

Body = Callable[[hostpool.HostPool, Runbook], dict[str, Any]]
# After the steps: (key, JSON-able final state, a function that prints it).
Final = Callable[[hostpool.HostPool], tuple[str, dict[str, Any], Callable[[], None]]]


def run(change: Change, *, question: str | None, lock: tuple[str, list[Host], str], body: Body,
        final: Final | None) -> int:
    """``lock``: (scope, hosts, name) of the lease the steps run under (one operator at a
    time)."""
    app, env = change.app, change.app.env
    rb = Runbook(env, change.name, app.argv, dry_run=change.dry_run)
    env.line(f"{change.name}{' (dry run: nothing is changed)' if change.dry_run else ''}",
             style="bold")
    scope, lock_hosts, what = lock
    change.begin(question, targets=[h.name for h in lock_hosts],
                 plan={"question": question, "lock": scope})
    with hostpool.pool(app.run_options()) as pool:
        try:
            with change.lease(scope, lock_hosts, what) as lease:
                rb.guard = lease.check if lease is not None else None
                details = body(pool, rb)
                if final is not None and not change.dry_run:
                    key, state, show = final(pool)
                    details[key] = state
                    if not env.json:
                        env.line("")
                        show()
        except OpskitError as exc:
            doc = _finish(change, rb, exc.exit_code, {"error": exc.message, "hint": exc.hint})
            if env.json:
                env.emit_json(doc)
            raise
    doc = _finish(change, rb, EXIT_OK, details)
    if env.json:
        env.emit_json(doc)
    return EXIT_OK


def _finish(change: Change, rb: Runbook, exit_code: int, details: dict[str, Any]) -> dict[str, Any]:
    """The end record (a dry run's only one) and the JSON document: the same content."""
    doc = rb.document(exit_code, details)
    change.record(rb.outcomes(exit_code), exit_code=exit_code,
                  details={"steps": doc["steps"], **details}, duration=doc["seconds"])
    return doc


@dataclass(frozen=True)
class View(Generic[C, S]):
    """How a command group sees one replicated service (PostgreSQL, Redis): where its settings
    come from, how its state is gathered and judged, how it is drawn. ``status`` and
    ``runbook`` below are then the same for both."""

    load: Callable[[AppContext], C]
    gather: Callable[[C, hostpool.HostPool], S]
    render: Callable[[Environment, C, S], None]
    unreachable: Callable[[S], bool]
    warnings: Callable[[C, S], list[str]]
    healthy: str  # the line printed when there is no warning
    final_key: str  # where a runbook's JSON document puts the state after its steps
    # What one operator at a time means for it: the lease's scope, the hosts it is held on,
    # and what it is called in messages ("the cluster main").
    lock: Callable[[C], tuple[str, list[Host], str]]


def status(app: AppContext, view: View[C, S]) -> int:
    """The status command: one table, its warnings; exit 3 unreachable, 2 warnings, else 0."""
    env = app.env
    cfg = view.load(app)
    with hostpool.pool(app.run_options()) as pool:
        st = view.gather(cfg, pool)
    warns = view.warnings(cfg, st)
    code = EXIT_UNREACHABLE if view.unreachable(st) else EXIT_FAILED if warns else EXIT_OK
    if env.json:
        env.emit_json({**st.to_dict(), "warnings": warns, "exit_code": code})  # type: ignore[attr-defined]
        return code
    view.render(env, cfg, st)
    for w in warns:
        env.line(f"WARNING: {w}", style="bold yellow")
    if not warns:
        env.line(view.healthy)
    return code


def runbook(change: Change, view: View[C, S], question: str | None,
            body: Callable[[C, hostpool.HostPool, Runbook], dict[str, Any]]) -> int:
    """A runbook command over the service: its steps, then its state as they left it."""
    cfg = view.load(change.app)

    def final(pool: hostpool.HostPool) -> tuple[str, dict[str, Any], Callable[[], None]]:
        st = view.gather(cfg, pool)
        return (view.final_key, st.to_dict(),  # type: ignore[attr-defined]
                lambda: view.render(change.app.env, cfg, st))

    return run(change, question=question, lock=view.lock(cfg),
               body=lambda pool, rb: body(cfg, pool, rb), final=final)
