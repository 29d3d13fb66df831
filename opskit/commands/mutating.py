"""The one shape of a command that changes something (pip's base ``Command`` in small).

Every mutating command -- exec, deploy, rollback, snapshot create/prune/restore, the pg and
redis runbooks, cache warm/evict, lab -- is declared with :func:`mutating`, which gives it:

* ``-n/--dry-run`` and ``-y/--yes``, with the same help everywhere;
* a :class:`Change`: the invocation's run id (stamped on every journal record it writes, its
  runbook steps' too); ``begin`` -- the one gate before the first change: the confirmation (a
  prompt on a TTY; without a TTY and without ``--yes`` refused, exit 1; "no" at the prompt is
  :class:`~opskit.errors.Cancelled`, exit 1) and then the write-ahead ``started`` record, which
  fails closed (exit 1, nothing changed) when the journal cannot be written; ``step`` (one
  part of the change, journaled as it ends); ``planned`` (the end of a dry run: the plan
  printed or one JSON document, journaled as a dry run); ``record`` / ``record_fleet`` (the
  ``end`` record with the outcome). A begun run that raises before its ``end`` gets one here,
  with the exit code of the error, so only a killed process leaves a run without an end.

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
from opskit.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Cancelled,
    ConfigError,
    OpskitError,
    UsageError,
)

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
    begun: bool = False  # the started record is written
    ended: bool = False  # the end record is written (or was attempted)

    @property
    def argv(self) -> list[str]:
        return ["opskit", *self.app.argv]

    def begin(self, question: str | None, *, targets: Sequence[str], plan: Any = None,
              assume_yes: bool = False) -> None:
        """Call before the first change: ask (``question``), then write the ``started``
        record (``targets``: host names; ``plan``: what is about to happen, JSON-able). A
        journal that cannot be written stops the run here: nothing has changed yet."""
        if question is not None:
            self.confirm(question, assume_yes=assume_yes)
        if self.dry_run:
            return
        try:
            journal.start(self.name, self.argv, targets=targets, plan=plan)
        except ConfigError as exc:
            raise ConfigError(f"{exc.message}; nothing was changed", hint=exc.hint) from exc
        self.begun = True

    def step(self, title: str, outcomes: dict[str, dict[str, Any]], *,
             details: dict[str, Any] | None = None, ok: bool = True) -> None:
        """Journal one part of the change as it ends (one deletion of a prune); a journal
        gone unwritable mid-run is warned about, not fatal: the change is under way."""
        self._write(lambda: journal.record(f"{self.name} step", self.argv, outcomes,
                                           duration=time.monotonic() - self.t0,
                                           exit_code=EXIT_OK if ok else EXIT_FAILED,
                                           details={"title": title, **(details or {})},
                                           phase="step"))

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
        """The end record (a dry run's only record)."""
        return self._end(lambda: journal.record(
            self.name, self.argv, outcomes, exit_code=exit_code,
            duration=time.monotonic() - self.t0 if duration is None else duration,
            details=details, dry_run=self.dry_run))

    def record_fleet(self, result: journal.FleetOutcome,
                     details: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._end(lambda: journal.record_fleet(self.name, self.app.argv, result,
                                                      details=details, dry_run=self.dry_run))

    def _end(self, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        self.ended = True
        if not self.begun:  # a dry run, or a refusal before anything: fail as before
            return write()
        return self._write(write)

    def _write(self, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return write()
        except ConfigError as exc:
            self.app.env.note(f"WARNING: {exc.message}: this run's record is incomplete")
            return {}

    def abandoned(self, exc: BaseException) -> None:
        """A begun run left by an exception before its end record: record how it ended."""
        if not self.begun or self.ended:
            return
        code = (exc.exit_code if isinstance(exc, OpskitError) else
                EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_FAILED)
        error = exc.message if isinstance(exc, OpskitError) else str(exc) or type(exc).__name__
        self.record({}, exit_code=code, details={"error": error})


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
            try:
                return fn(app, change, *args, **kwargs)
            except BaseException as exc:
                change.abandoned(exc)
                raise

        wrapped = click.option("-y", "--yes", is_flag=True, help=YES_HELP)(wrapper)
        if dry_run:
            wrapped = click.option("-n", "--dry-run", is_flag=True, help=DRY_RUN_HELP)(wrapped)
        wrapped.__dict__["opskit_mutating"] = name  # the Fabric front end lists these
        return wrapped  # type: ignore[return-value]

    return decorate
