"""A runbook being executed: numbered steps, each printed as it starts and ends, timed, and
journaled as it finishes -- so a failover cut short still leaves its trail in the journal (the
run's started and end records are the command's: ``commands.mutating.Change``).

The plan (``--dry-run``) and the run are one piece of code. A runbook declares each step once:

    rb.check(title, *hosts, run=fn)               read-only: runs in both modes, returns fn's value
    rb.step(title, *hosts, does="...", run=fn)    acts: a dry run prints title, hosts and ``does``
                                                  as a planned step; a real run calls ``fn(step)``
    with rb.always(title, *hosts, does=..., run=fn):   a step that ends the block however it
        ...                                       ends (RESUME after PAUSE): planned last in a
                                                  dry run, run in ``finally`` in a real one

``fn`` gets the live :class:`Step` to set ``detail`` or a ``warning`` status; state passes
between steps through the runbook's own closures (or a small progress object). Why callables and
not ``with rb.step(...)`` blocks: a with-block's body cannot be skipped, so a dry run would need
its own branch -- the second copy of the runbook this replaces. The one rule that keeps plan and
run equal: which steps come, and their titles and hosts, may depend on ``check`` results (the
preflight), never on what a ``step``'s ``fn`` did, since in a dry run it did nothing. Recovery
steps that only happen after a failure (guarded by flags the ``fn`` set) are thus never planned,
which is right: the plan is of a run that succeeds.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from opskit import journal
from opskit.errors import ConfigError
from opskit.output import Environment
from opskit.runner import interrupts

T = TypeVar("T")


@dataclass
class Step:
    n: int
    title: str
    hosts: list[str]
    status: str = "running"  # ok | failed | interrupted | skipped | warning | planned
    seconds: float = 0.0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Runbook:
    env: Environment
    name: str  # e.g. "pg failover"
    argv: Sequence[str]
    dry_run: bool = False
    steps: list[Step] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    # Called before every acting step: raises if this run may no longer act (its cluster
    # lease was lost: another operator could be acting now).
    guard: Callable[[], None] | None = None

    def check(self, title: str, *hosts: str, run: Callable[[Step], T]) -> T:
        """A read-only step (a preflight): run in a dry run too, since the plan depends on it."""
        with self._running(title, hosts) as st:
            return run(st)

    def step(self, title: str, *hosts: str, does: str, run: Callable[[Step], object]) -> None:
        """A step that changes something: planned (``does`` shown) in a dry run, else run."""
        if self.dry_run:
            self._plan(title, hosts, does)
            return
        with self._running(title, hosts) as st:
            if self.guard is not None:
                self.guard()
            run(st)

    @contextmanager
    def always(self, title: str, *hosts: str, does: str,
               run: Callable[[Step], object]) -> Iterator[None]:
        """The block's steps, then this one whether they succeeded or not (planned last in a
        dry run). Its failure does not hide the block's own error: that one is raised.
        A Ctrl-C does not skip it: it runs as a critical section."""
        def last() -> None:
            if interrupts.aborted():  # the operator was told it would be left undone
                return
            with self.critical(title, leaves=lambda: f"{title} undone"):
                self.step(title, *hosts, does=does, run=run)

        try:
            yield
        except BaseException:
            with suppress(Exception):  # journaled as failed; the block's error is the news
                last()
            raise
        last()

    @contextmanager
    def critical(self, what: str, leaves: Callable[[], str]) -> Iterator[None]:
        """Steps that finish once begun, even on Ctrl-C/SIGTERM (``runner.interrupts``):
        the signal is noted, the section runs to its end, then :class:`interrupts.Stopped` is
        raised there -- the safe point. ``leaves()`` says what stopping inside would leave."""
        if self.dry_run:
            yield
            return
        with interrupts.critical(what, leaves):
            yield

    @contextmanager
    def _running(self, title: str, hosts: Sequence[str]) -> Iterator[Step]:
        if interrupts.requested() and not interrupts.in_critical():
            # A signal came (and its KeyboardInterrupt was caught somewhere): no new step.
            raise KeyboardInterrupt
        st = Step(len(self.steps) + 1, title, list(hosts))
        self.steps.append(st)
        self.env.line(f"{st.n:>2}. {title}{_where(hosts)} ...")
        t = time.monotonic()
        try:
            yield st
            if st.status == "running":
                st.status = "ok"
        except KeyboardInterrupt:
            # Cut short by a signal outside a critical section: what it did is unknown.
            st.status, st.detail = "interrupted", "by Ctrl-C/SIGTERM before it finished"
            raise
        except BaseException as exc:
            st.status, st.detail = "failed", str(exc) or type(exc).__name__
            raise
        finally:
            st.seconds = round(time.monotonic() - t, 3)
            style = {"ok": "green", "failed": "bold red", "interrupted": "bold red",
                     "warning": "yellow"}.get(st.status)
            tail = f": {st.detail}" if st.detail else ""
            self.env.line(f"    {st.status} in {st.seconds:.2f}s{tail}", style=style)
            self._journal(st)

    def remember(self, **facts: Any) -> None:
        """Journal what the preflight decided (target, old primary, ...) as one record of its
        own, ``"<name> decision"``, before any step acts: ``--continue RUN_ID`` reads it back
        (a dry run decides nothing to continue, so it records nothing)."""
        if self.dry_run:
            return
        try:
            journal.record(f"{self.name} decision", ["opskit", *self.argv], {"-": {
                "status": "ok", "exit_status": None, "error": None}}, duration=0.0,
                exit_code=0, details=facts, phase="step")
        except ConfigError as exc:
            self.env.note(f"WARNING: {exc.message}: the decision is not in the journal "
                          "(--continue cannot use this run)")

    def continue_command(self, drop: Sequence[str] = ("--to", "--continue")) -> str:
        """The command line that continues this run: its own, without --yes/--force/
        --dry-run and the ``drop`` options (with their values), plus ``--continue RUN_ID``."""
        out: list[str] = []
        skip = False
        for a in self.argv:
            if skip:
                skip = False
            elif a in drop:
                skip = True
            elif a not in ("--yes", "-y", "--force", "--dry-run", "-n") and \
                    not any(a.startswith(f"{d}=") for d in drop):
                out.append(a)
        return shlex.join(["opskit", *out, "--continue", journal.current_run()["run_id"]])

    def _plan(self, title: str, hosts: Sequence[str], does: str) -> None:
        """A step a dry run would take: printed, and in the final entry (not one by one)."""
        st = Step(len(self.steps) + 1, title, list(hosts), "planned", 0.0, does)
        self.steps.append(st)
        self.env.line(f"{st.n:>2}. {title}{_where(hosts)}" + (f"\n    {does}" if does else ""))

    def _journal(self, st: Step) -> None:
        """The step's record, as it ends. A journal gone unwritable mid-run is warned about,
        not fatal: the change is under way, stopping would leave it half-done."""
        outcome = {"status": st.status, "exit_status": None,
                   "error": st.detail if st.status == "failed" else None}
        try:
            journal.record(f"{self.name} step", ["opskit", *self.argv],
                           {h: outcome for h in st.hosts} or {"-": outcome},
                           duration=st.seconds,
                           exit_code={"failed": 2, "interrupted": 130}.get(st.status, 0),
                           details={"step": st.n, "title": st.title, "status": st.status,
                                    "detail": st.detail}, phase="step")
        except ConfigError as exc:
            self.env.note(f"WARNING: {exc.message}: step {st.n} is not in the journal")

    def document(self, exit_code: int, details: dict[str, Any]) -> dict[str, Any]:
        """The run's JSON document (and its end record's details): every step, the outcome."""
        return {"command": self.name, "dry_run": self.dry_run, "exit_code": exit_code,
                "seconds": round(time.monotonic() - self.t0, 3),
                "steps": [s.to_dict() for s in self.steps], **details}

    def outcomes(self, exit_code: int) -> dict[str, dict[str, Any]]:
        """Per host touched by a step, the run's outcome (for the end record)."""
        outcome = {"status": "ok" if exit_code == 0 else "failed", "exit_status": None,
                   "error": None}
        return {h: outcome for h in sorted({h for s in self.steps for h in s.hosts})}


def _where(hosts: Sequence[str]) -> str:
    return f" [{', '.join(hosts)}]" if hosts else ""
