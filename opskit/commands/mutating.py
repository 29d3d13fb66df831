"""The one shape of a command that changes something (pip's base ``Command`` in small).

Every mutating command -- exec, deploy, rollback, snapshot create/prune/restore, the pg and
redis runbooks, cache warm/evict, lab -- is declared with :func:`mutating`, which gives it:

* ``-n/--dry-run`` and ``-y/--yes``, with the same help everywhere;
* a :class:`Change`: the invocation's run id (stamped on every journal record it writes, its
  runbook steps' too), ``confirm`` (a prompt on a TTY; without a TTY and without ``--yes``
  the command is refused, exit 1; "no" at the prompt is :class:`~opskit.errors.Cancelled`,
  exit 1, in every command), ``planned`` (the end of a dry run: the plan printed or one JSON
  document, journaled as a dry run) and ``record`` / ``record_fleet`` (the journal entry).

Exit codes come from the exceptions (``opskit.errors``) and are mapped once, in ``cli.run``;
the Fabric front end (``commands.fabtasks``) runs the same commands, so it cannot drift.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from opskit import journal
from opskit.commands.options import AppContext
from opskit.errors import EXIT_OK, Cancelled, UsageError

F = TypeVar("F", bound=Callable[..., Any])

YES_HELP = "Do not ask for confirmation (cron, runbooks). Example: --yes"
DRY_RUN_HELP = "Print the plan and change nothing. Example: --dry-run"


@dataclass
class Change:
    """One invocation of a mutating command."""

    app: AppContext
    name: str  # as journaled, e.g. "pg failover"
    dry_run: bool = False
    yes: bool = False
    run_id: str = ""
    t0: float = field(default_factory=time.monotonic)

    @property
    def argv(self) -> list[str]:
        return ["opskit", *self.app.argv]

    def confirm(self, question: str, *, assume_yes: bool = False) -> None:
        """Go on only if the operator agrees: --yes (or ``assume_yes``, e.g. --cron), or "y"
        at a prompt on a TTY. Without a TTY there is nobody to ask: refused."""
        if self.yes or assume_yes or self.dry_run:
            return
        if not self.app.env.stdin_isatty:
            raise UsageError(f"{question} -- refusing to run without confirmation (no TTY)",
                             hint="add --yes to run non-interactively")
        if not click.confirm(question, default=False, err=True):
            raise Cancelled("cancelled; nothing was changed",
                            hint="add --yes to skip the question")

    def planned(self, doc: dict[str, Any], show: Callable[[], None],
                hosts: Sequence[str] = ()) -> int:
        """End a dry run: ``doc`` as the one JSON document, or ``show()`` for a person; the
        dry run is journaled (who looked at which plan, and when)."""
        self.record({h: {"status": "planned", "exit_status": None, "error": None}
                     for h in hosts}, exit_code=EXIT_OK, details=doc)
        if self.app.env.json:
            self.app.env.emit_json(doc)
        else:
            show()
        return EXIT_OK

    def record(self, outcomes: dict[str, dict[str, Any]], *, exit_code: int,
               details: dict[str, Any] | None = None,
               duration: float | None = None) -> dict[str, Any]:
        return journal.record(self.name, self.argv, outcomes, exit_code=exit_code,
                              duration=time.monotonic() - self.t0 if duration is None
                              else duration, details=details, dry_run=self.dry_run)

    def record_fleet(self, result: journal.FleetOutcome,
                     details: dict[str, Any] | None = None) -> dict[str, Any]:
        return journal.record_fleet(self.name, self.app.argv, result, details=details,
                                    dry_run=self.dry_run)


def mutating(name: str, *, dry_run: bool = True) -> Callable[[F], F]:
    """Declare a mutating command: adds --yes (and --dry-run unless ``dry_run=False``), and
    calls ``fn(app, change, **params)``. Put it below ``@click.command`` and the command's
    own options, above ``@shared_options``."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            app = click.get_current_context().find_object(AppContext)
            assert app is not None  # cli.run always passes one
            change = Change(app, name, dry_run=bool(kwargs.pop("dry_run", False)),
                            yes=bool(kwargs.pop("yes", False)), run_id=journal.begin_run(app.via))
            return fn(app, change, *args, **kwargs)

        wrapped = click.option("-y", "--yes", is_flag=True, help=YES_HELP)(wrapper)
        if dry_run:
            wrapped = click.option("-n", "--dry-run", is_flag=True, help=DRY_RUN_HELP)(wrapped)
        wrapped.__dict__["opskit_mutating"] = name  # the Fabric front end lists these
        return wrapped  # type: ignore[return-value]

    return decorate
