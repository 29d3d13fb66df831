"""Ctrl-C (SIGINT) and SIGTERM while opskit runs: the signal policy.

Outside a critical section a signal raises ``KeyboardInterrupt`` at once, as Python does. Inside
one (``with critical("promote -> follow -> re-point -> RESUME", leaves=...)``) the sequence must
not be left half-done -- a promoted standby with PgBouncer still sending clients to the dead
primary is worse than either end -- so:

* the first signal only sets a flag and says that the section finishes first;
* the second says what stopping now would leave undone (``leaves()``) and asks for a third
  within ``GRACE`` seconds;
* the third (within ``GRACE``) raises ``KeyboardInterrupt`` in the section, and ``aborted()``
  tells the runbook to leave things as the warning said (no recovery steps).

When the outermost section ends with the flag set, it raises :class:`Stopped`: the runbook
stops there, at a safe point, and says what state it left and how to continue. Messages go to
stderr with ``os.write``: a ``print`` in a signal handler can hit the buffer the interrupted
code is writing (a reentrant-call error).

Fleet runs (``runner/fleet.py``) do the same per host: a worker thread's ``host_critical``
section (a deploy's switch -> reload -> health) holds the signal back like a section of the
main thread, but raises nothing in the worker; the fleet runner's stop flag is set at once
(:func:`on_signal`), so no new host (nor a host's section) starts, and the runner reports the
interrupt when the running ones end.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from opskit.errors import EXIT_INTERRUPTED, OpskitError

GRACE = 3.0  # seconds within which the press after the warning really leaves the section
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(OpskitError):
    """Interrupted, and stopped at a safe point; the message says what state was left."""

    exit_code = EXIT_INTERRUPTED


@dataclass
class _Section:
    what: str
    leaves: Callable[[], str]


@dataclass
class Policy:
    sections: list[_Section] = field(default_factory=list)
    requested: bool = False  # a signal arrived: stop at the next safe point
    presses: int = 0  # signals inside the current outermost section
    warned_at: float | None = None
    aborted: bool = False  # the operator left a section unfinished (after the warning)
    signals: int = 0  # every signal received, for the fleet runner to notice
    # Worker threads' host sections, by thread: the signal arrives in the main thread.
    hosts: dict[int, _Section] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Called on every signal outside a main-thread section (a fleet run's stop flag): at
    # once, so no worker starts a host or a section after the signal.
    listeners: list[Callable[[], None]] = field(default_factory=list)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.requested = True
        self.signals += 1
        if not self.sections:
            for listener in list(self.listeners):
                listener()
        hosts = list(self.hosts.values())  # a copy: workers change it meanwhile
        if not self.sections and not hosts:
            raise KeyboardInterrupt
        sec = self.sections[0] if self.sections else _joined(hosts)
        self.presses += 1
        now = time.monotonic()
        if self.presses == 1:
            say(f"{name}: finishing {sec.what} first (it must not be left half-done), then "
                "stopping at a safe point")
        elif self.warned_at is None or now - self.warned_at > GRACE:
            self.warned_at = now
            say(f"second {name}: stopping now would leave: {sec.leaves()}; press again "
                f"within {GRACE:g}s to leave it so")
        else:
            say(f"{name} again: leaving {sec.what} unfinished")
            self.aborted = True
            raise KeyboardInterrupt


def _joined(hosts: list[_Section]) -> _Section:
    """The host sections running now, as one (what they are, what stopping would leave)."""
    what = "; ".join(h.what for h in hosts)
    return _Section(what, lambda: "; ".join(h.leaves() for h in hosts))


_policy = Policy()


def say(text: str) -> None:
    """One line on stderr, safe inside a signal handler."""
    try:
        os.write(2, (text + "\n").encode(errors="replace"))
    except OSError:
        pass  # stderr closed: nobody to tell


def requested() -> bool:
    """Whether a signal asked the run to stop (it stops at the next safe point)."""
    return _policy.requested


def aborted() -> bool:
    """Whether the operator left a critical section unfinished: what it warned it would
    leave is then left so (no recovery steps after it)."""
    return _policy.aborted


def in_critical() -> bool:
    """Whether the main thread is in a critical section (host sections not counted)."""
    return bool(_policy.sections)


@contextmanager
def installed() -> Iterator[Policy]:
    """The policy's handlers for SIGINT and SIGTERM while the block runs (the main thread
    only: signals are delivered there), the previous handlers after it -- and a calm policy:
    a signal that stopped this block must not stop whatever runs next in the process (a
    Fabric task after another, the next test)."""
    global _policy
    _policy = Policy()
    try:
        if threading.current_thread() is not threading.main_thread():
            yield _policy
            return
        before = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, _policy.handle)
        try:
            yield _policy
        finally:
            for s, h in before.items():
                signal.signal(s, h)
    finally:
        _policy = Policy()


@contextmanager
def critical(what: str, leaves: Callable[[], str]) -> Iterator[None]:
    """A sequence that finishes once begun (see the module's doc); ``leaves()`` says, in a
    few words, what stopping in it now would leave undone (called in the signal handler:
    keep it cheap). Sections nest; the outermost one decides and stops."""
    p = _policy
    outer = not p.sections
    if outer:
        p.presses, p.warned_at = 0, None
    p.sections.append(_Section(what, leaves))
    try:
        yield
    finally:
        p.sections.pop()
    if outer and p.presses:  # a signal that came before the section is already on its way
        raise Stopped(f"interrupted; {what} finished first")


@contextmanager
def on_signal(listener: Callable[[], None]) -> Iterator[None]:
    """Call ``listener`` (cheap, signal-safe: e.g. ``Event.set``) on each signal meanwhile
    that no main-thread section holds back."""
    p = _policy
    p.listeners.append(listener)
    try:
        yield
    finally:
        p.listeners.remove(listener)


@contextmanager
def host_critical(what: str, leaves: Callable[[], str]) -> Iterator[None]:
    """A critical section of one host in a fleet worker thread (``what`` names the host).

    Signals meanwhile are held back as in :func:`critical` (the third leaves it: then
    :func:`aborted`); nothing is raised here at its end: the fleet runner, which saw the
    signal, starts no new host and reports the run as interrupted."""
    p = _policy
    key = threading.get_ident()
    with p.lock:
        if not p.sections and not p.hosts:
            p.presses, p.warned_at = 0, None
        p.hosts[key] = _Section(what, leaves)
    try:
        yield
    finally:
        with p.lock:
            p.hosts.pop(key, None)
