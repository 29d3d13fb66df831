"""The shared body of a runbook command (pg failover, redis promote, ...): a title line, the
confirmation, the steps over one pool of sessions, the final state, one JSON document, and the
journal entry -- also when a step fails or a preflight refuses. The options, run id and
confirmation come from the mutating-command shape (``commands.mutating``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
        # The steps' connections open while the lease (over connections of its own) is
        # taken: the first step does not wait for a second round of handshakes.
        opening = threading.Thread(target=pool.open, args=(lock_hosts,), daemon=True,
                                   name="open-sessions")
        opening.start()
        try:
            with change.lease(scope, lock_hosts, what) as lease:
                opening.join()
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
        finally:
            opening.join()  # before the pool closes: no session opened after its close
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
    # Several clusters (groups) in one status, each judged on its own (``fleet_status``):
    # the hosts a cluster's gather talks to, a heading line for its table, and the few
    # words the fleet summary says of it when it is not healthy ("no primary").
    hosts: Callable[[C], Sequence[Host]] | None = None
    title: Callable[[C], str] | None = None
    headline: Callable[[C, S, list[str]], str] | None = None


def exit_code(unreachable: bool, warnings: Sequence[str]) -> int:
    """The rule of every status: 3 if a host is unreachable, 2 with warnings, else 0."""
    return EXIT_UNREACHABLE if unreachable else EXIT_FAILED if warnings else EXIT_OK


def status(app: AppContext, view: View[C, S]) -> int:
    """The status command: one table, its warnings; exit 3 unreachable, 2 warnings, else 0."""
    env = app.env
    cfg = view.load(app)
    with hostpool.pool(app.run_options()) as pool:
        st = view.gather(cfg, pool)
    warns = view.warnings(cfg, st)
    code = exit_code(view.unreachable(st), warns)
    if env.json:
        env.emit_json({**st.to_dict(), "warnings": warns, "exit_code": code})  # type: ignore[attr-defined]
        return code
    view.render(env, cfg, st)
    for w in warns:
        env.line(f"WARNING: {w}", style="bold yellow")
    if not warns:
        env.line(view.healthy)
    return code


@dataclass(frozen=True)
class Member(Generic[C]):
    """One cluster of a fleet-wide status: its name, its settings, and the hosts of it that
    the selection did not name (brought in because a cluster is only judged whole)."""

    name: str
    cfg: C
    added: tuple[str, ...] = ()


@dataclass
class Judged(Generic[C, S]):
    member: Member[C]
    state: S
    warnings: list[str]
    exit_code: int

    @property
    def verdict(self) -> str:
        return VERDICTS[self.exit_code]


VERDICTS = {EXIT_OK: "healthy", EXIT_FAILED: "degraded", EXIT_UNREACHABLE: "unreachable"}


def judge(view: View[C, S], member: Member[C], st: S) -> Judged[C, S]:
    """One cluster on its own: its warnings, and 3 if a node is unreachable, 2 with
    warnings, else 0 (the same rule as a one-cluster status)."""
    warns = view.warnings(member.cfg, st)
    code = exit_code(view.unreachable(st), warns)
    return Judged(member, st, warns, code)


def summary(judged: Sequence[Judged[C, S]], view: View[C, S], kind: str = "cluster"
            ) -> tuple[int, dict[str, Any]]:
    """The fleet's exit code (the worst of its clusters': 3 over 2 over 0) and its summary:
    counts per verdict and one line ("2 clusters: 1 healthy, 1 degraded (shard07: no
    primary)")."""
    code = max((j.exit_code for j in judged), default=EXIT_OK)
    counts = {v: sum(j.verdict == v for j in judged) for v in VERDICTS.values()}
    parts = [f"{counts['healthy']} healthy"]
    for verdict in ("degraded", "unreachable"):
        bad = [j for j in judged if j.verdict == verdict]
        if bad:
            why = "; ".join(f"{j.member.name}: {_headline(view, j)}" for j in bad)
            parts.append(f"{len(bad)} {verdict} ({why})")
    n = len(judged)
    line = f"{n} {kind}{'' if n == 1 else 's'}: {', '.join(parts)}"
    return code, {kind + "s": n, **counts, "line": line}


def _headline(view: View[C, S], j: Judged[C, S]) -> str:
    if view.headline is not None:
        return view.headline(j.member.cfg, j.state, j.warnings)
    return j.warnings[0] if j.warnings else j.verdict


def gather_all(view: View[C, S], members: Sequence[Member[C]], pool: hostpool.HostPool,
               forks: int) -> list[S]:
    """Every cluster's state, clusters in parallel within ``forks``: as many clusters at once
    as fit when each talks to all of its hosts at once. Clusters that share a host (one
    PgBouncer host in front of two) are gathered one after the other: a session runs one
    step at a time."""
    sizes = [len(view.hosts(m.cfg)) if view.hosts else 1 for m in members]
    hosts = [h for m in members for h in (view.hosts(m.cfg) if view.hosts else [])]
    shared = len({h.name for h in hosts}) < len(hosts)
    workers = 1 if shared else max(1, min(len(members), forks // max(1, max(sizes, default=1))))
    pool.open(list({h.name: h for h in hosts}.values()))  # every connection at once, first
    if workers == 1:
        return [view.gather(m.cfg, pool) for m in members]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(lambda m: view.gather(m.cfg, pool), members))


def fleet_status(app: AppContext, view: View[C, S], members: Sequence[Member[C]], *,
                 kind: str = "cluster") -> int:
    """A status over several clusters in one view: each one's table, warnings and verdict,
    then the fleet's summary line; the exit code is the worst cluster's. ``--json``: the
    clusters (each with its state, warnings, verdict and exit code), the summary, and for
    scripts written for one cluster the flat lists (every node, every PgBouncer, each
    item naming its cluster), every warning and the exit code."""
    env = app.env
    options = app.run_options()
    with hostpool.pool(options) as pool:
        states = gather_all(view, members, pool, options.forks)
    judged = [judge(view, m, st) for m, st in zip(members, states, strict=True)]
    code, summ = summary(judged, view, kind)
    if env.json:
        env.emit_json(fleet_document(judged, summ, code, kind))
        return code
    for i, j in enumerate(judged):
        if i:
            env.line("")
        title = view.title(j.member.cfg) if view.title else j.member.name
        env.line(f"{kind} {j.member.name}: {title} -- {j.verdict.upper()}", style="bold")
        if j.member.added:
            env.line(f"  (whole {kind}: {', '.join(j.member.added)} added to the selection)")
        view.render(env, j.member.cfg, j.state)
        for w in j.warnings:
            env.line(f"WARNING: {w}", style="bold yellow")
        if not j.warnings:
            env.line(view.healthy)
    env.line("")
    env.line(summ["line"], style="bold" if code == EXIT_OK else "bold yellow")
    return code


def fleet_document(judged: Sequence[Judged[C, S]], summ: dict[str, Any], code: int,
                   kind: str = "cluster") -> dict[str, Any]:
    """The one JSON document of a fleet-wide status (see ``fleet_status``)."""
    groups: list[dict[str, Any]] = []
    flat: dict[str, list[Any]] = {}
    for j in judged:
        d = j.state.to_dict()  # type: ignore[attr-defined]
        groups.append({"name": j.member.name, "verdict": j.verdict, "exit_code": j.exit_code,
                       "warnings": j.warnings, "added": list(j.member.added), **d})
        for key, value in d.items():
            if isinstance(value, list):
                flat.setdefault(key, []).extend(
                    {**item, kind: j.member.name} if isinstance(item, dict) else item
                    for item in value)
    warns = [w if len(judged) == 1 else f"{j.member.name}: {w}"
             for j in judged for w in j.warnings]
    return {kind + "s": groups, "summary": summ, **flat, "warnings": warns, "exit_code": code}


def runbook(change: Change, view: View[C, S], question: str | None,
            body: Callable[[C, hostpool.HostPool, Runbook], dict[str, Any]], *,
            cfg: C | None = None) -> int:
    """A runbook command over the service: its steps, then its state as they left it.
    ``cfg``: the settings it acts on, when the command chose them (one cluster of several);
    else ``view.load``."""
    if cfg is None:
        cfg = view.load(change.app)

    def final(pool: hostpool.HostPool) -> tuple[str, dict[str, Any], Callable[[], None]]:
        st = view.gather(cfg, pool)
        return (view.final_key, st.to_dict(),  # type: ignore[attr-defined]
                lambda: view.render(change.app.env, cfg, st))

    return run(change, question=question, lock=view.lock(cfg),
               body=lambda pool, rb: body(cfg, pool, rb), final=final)
