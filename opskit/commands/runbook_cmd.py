"""The shared shape of a runbook command (pg failover, redis promote, ...): a title line, the
confirmation, the steps over one pool of sessions, the final state, one JSON document, and the
journal entry -- also when a step fails or a preflight refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opskit.commands.options import AppContext, confirm
from opskit.errors import EXIT_OK, OpskitError
from opskit.runner import hostpool
from opskit.runner.runbook import Runbook

Body = Callable[[hostpool.HostPool, Runbook], dict[str, Any]]
# After the steps: (key, JSON-able final state, a function that prints it).
Final = Callable[[hostpool.HostPool], tuple[str, dict[str, Any], Callable[[], None]]]


def run(app: AppContext, name: str, *, dry_run: bool, yes: bool, question: str | None,
        body: Body, final: Final | None) -> int:
    env = app.env
    rb = Runbook(env, name, app.argv, dry_run=dry_run)
    env.line(f"{name}{' (dry run: nothing is changed)' if dry_run else ''}", style="bold")
    if not dry_run and question is not None and not confirm(app, question, yes):
        return EXIT_OK
    with hostpool.pool(app.run_options()) as pool:
        try:
            details = body(pool, rb)
        except OpskitError as exc:
            doc = rb.finish(exc.exit_code, {"error": exc.message, "hint": exc.hint})
            if env.json:
                env.emit_json(doc)
            raise
        if final is not None and not dry_run:
            key, state, show = final(pool)
            details[key] = state
            if not env.json:
                env.line("")
                show()
    doc = rb.finish(EXIT_OK, details)
    if env.json:
        env.emit_json(doc)
    return EXIT_OK
