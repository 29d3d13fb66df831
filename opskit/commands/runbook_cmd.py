"""The shared body of a runbook command (pg failover, redis promote, ...): a title line, the
confirmation, the steps over one pool of sessions, the final state, one JSON document, and the
journal entry -- also when a step fails or a preflight refuses. The options, run id and
confirmation come from the mutating-command shape (``commands.mutating``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opskit.commands.mutating import Change
from opskit.errors import EXIT_OK, OpskitError
from opskit.runner import hostpool
from opskit.runner.runbook import Runbook

Body = Callable[[hostpool.HostPool, Runbook], dict[str, Any]]
# After the steps: (key, JSON-able final state, a function that prints it).
Final = Callable[[hostpool.HostPool], tuple[str, dict[str, Any], Callable[[], None]]]


def run(change: Change, *, question: str | None, body: Body, final: Final | None) -> int:
    app, env = change.app, change.app.env
    rb = Runbook(env, change.name, app.argv, dry_run=change.dry_run)
    env.line(f"{change.name}{' (dry run: nothing is changed)' if change.dry_run else ''}",
             style="bold")
    if question is not None:
        change.confirm(question)
    with hostpool.pool(app.run_options()) as pool:
        try:
            details = body(pool, rb)
        except OpskitError as exc:
            doc = rb.finish(exc.exit_code, {"error": exc.message, "hint": exc.hint})
            if env.json:
                env.emit_json(doc)
            raise
        if final is not None and not change.dry_run:
            key, state, show = final(pool)
            details[key] = state
            if not env.json:
                env.line("")
                show()
    doc = rb.finish(EXIT_OK, details)
    if env.json:
        env.emit_json(doc)
    return EXIT_OK
