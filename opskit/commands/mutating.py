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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from opskit import journal
from opskit.commands.options import SECONDS, AppContext
from opskit.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Cancelled,
    ConfigError,
    OpskitError,
    UsageError,
)

if TYPE_CHECKING:
    from opskit.inventory import Host
    from opskit.runner.lease import Lease

F = TypeVar("F", bound=Callable[..., Any])

YES_HELP = "Do not ask for confirmation (cron, runbooks). Example: --yes"
DRY_RUN_HELP = "Print the plan and change nothing. Example: --dry-run"
BREAK_LOCK_HELP = ("Remove another run's lock first (journaled, with its owner): only when you "
                   "know that run is dead. Example: --break-lock")
LOCK_TTL_HELP = ("How long the lock outlives this run if it is killed (renewed while it runs), "
                 "5-3600 seconds. Example: --lock-ttl 60")
LOCK_TTL_DEFAULT = 120.0


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
    break_lock: bool = False
    lock_ttl: float = LOCK_TTL_DEFAULT

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

    @contextmanager
    def lease(self, scope: str, hosts: Sequence[Host], what: str | None = None
              ) -> Iterator[Lease | None]:
        """One operator at a time: hold ``scope`` on a majority of ``hosts`` for the block
        (``runner.lease``; ``what`` names it in messages); a lock broken with --break-lock is
        journaled with its owner. A dry run changes nothing, so it takes no lock (None)."""
        if self.dry_run:
            yield None
            return
        from opskit.runner import lease as lease_mod

        with lease_mod.held(hosts, scope, options=self.app.run_options(), run_id=self.run_id,
                            command=self.name, ttl=self.lock_ttl, break_lock=self.break_lock,
                            what=what) as held:
            if held.broken:
                self.app.env.note(f"broke the lock on {held.what}: " + "; ".join(
                    f"{host}: {lease_mod.describe_holder(b)}" for host, b in held.broken.items()))
                self.step(f"break the lock on {held.what}",
                          {host: {"status": "ok", "exit_status": None, "error": None}
                           for host in held.broken},
                          details={"scope": scope, "broken": held.broken})
            yield held

    @contextmanager
    def leases(self, wanted: Sequence[tuple[str, Sequence[Host], str]]) -> Iterator[None]:
        """Several leases (``(scope, hosts, what)`` each: snapshot's per host and mount,
        deploy's per app root), taken in a fixed order (by scope, then hosts) so that two runs
        wanting overlapping sets cannot each hold a part and wait on the other."""
        with ExitStack() as stack:
            for scope, hosts, what in sorted(wanted, key=lambda w: (w[0],
                                                                    [h.name for h in w[1]])):
                stack.enter_context(self.lease(scope, hosts, what))
            yield

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


def mutating(name: str, *, dry_run: bool = True, locked: bool = False) -> Callable[[F], F]:
    """Declare a mutating command: adds --yes (and --dry-run unless ``dry_run=False``;
    --break-lock and --lock-ttl when ``locked``: it takes a lease, see ``Change.lease``), and
    calls ``fn(app, change, **params)``. Put it below ``@click.command`` and the command's
    own options, above ``@shared_options``."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            app = click.get_current_context().find_object(AppContext)
            assert app is not None  # cli.run always passes one
            change = Change(app, name, dry_run=bool(kwargs.pop("dry_run", False)),
                            yes=bool(kwargs.pop("yes", False)), run_id=journal.begin_run(app.via),
                            break_lock=bool(kwargs.pop("break_lock", False)),
                            lock_ttl=float(kwargs.pop("lock_ttl", None) or LOCK_TTL_DEFAULT))
            try:
                return fn(app, change, *args, **kwargs)
            except BaseException as exc:
                change.abandoned(exc)
                raise

        wrapped = click.option("-y", "--yes", is_flag=True, help=YES_HELP)(wrapper)
        if locked:
            wrapped = click.option("--break-lock", is_flag=True, help=BREAK_LOCK_HELP)(wrapped)
            wrapped = click.option("--lock-ttl", type=SECONDS, metavar="S",
                                   callback=_ttl_in_range, help=LOCK_TTL_HELP)(wrapped)
        if dry_run:
            wrapped = click.option("-n", "--dry-run", is_flag=True, help=DRY_RUN_HELP)(wrapped)
        wrapped.__dict__["opskit_mutating"] = name  # the Fabric front end lists these
        return wrapped  # type: ignore[return-value]

    return decorate


def _ttl_in_range(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not 5 <= value <= 3600:
        raise click.BadParameter(f"must be 5-3600 seconds, got {value:g}", ctx, param)
    return value
