"""Who vouches for a freeze window: the guard's verdict, and what opskit makes of its answer."""

from __future__ import annotations

import os

import pytest

from opskit.onhost import freeze_guard
from opskit.snapshot.freeze import FreezeWindow


@pytest.mark.parametrize(("reason", "thawed", "said"), [
    ("asked", "thawed", "asked"),          # our fsfreeze -u ended the freeze: it held
    ("asked", "not frozen", "already"),    # something else thawed it first
    ("timeout", "thawed", "timeout"),
    ("timeout", "not frozen", "timeout"),  # the watchdog won the race at the deadline
    ("eof", "thawed", "eof"),
    ("signal", "thawed", "signal"),
])
def test_guard_says_asked_only_when_its_own_thaw_ended_the_freeze(
        reason: str, thawed: str, said: str) -> None:
    assert freeze_guard.verdict(reason, thawed) == said


@pytest.mark.parametrize(("reason", "held", "why"), [
    ("asked", True, None),
    ("timeout", False, "thawed at its 5s deadline"),
    ("eof", False, "thawed when its connection closed"),
    ("signal", False, "thawed on a signal"),
    ("already", False, "found the filesystem already thawed (by something else)"),
    (None, False, "gave no answer to THAW"),
    ("bogus", False, "said 'bogus'"),
])
def test_only_asked_is_a_window_that_held(reason: str | None, held: bool,
                                           why: str | None) -> None:
    w = FreezeWindow(timeout=5, reason=reason)
    assert w.held is held
    if why is not None:
        assert w.why() == why


def test_guard_says_thawed_even_when_the_watchdog_has_gone() -> None:
    # At the deadline the watchdog may thaw and exit first: telling it "done" then hits a
    # closed pipe (EPIPE), which once killed the guard before its THAWED line.
    r, w = os.pipe()
    os.close(r)
    try:
        freeze_guard.release(w)  # no BrokenPipeError
    finally:
        os.close(w)
