"""opskit.runner.wait: the one poll loop (deadline, interval, what it waited for)."""

from __future__ import annotations

import pytest

from opskit.runner import wait
from opskit.transport.errors import CommandFailed


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_returns_what_the_probe_saw_once_done() -> None:
    answers = iter([(False, "t"), (False, "t"), (True, "f")])
    clock = FakeClock()
    got = wait.until(lambda: next(answers), what="a primary", timeout=5, interval=0.5,
                     clock=clock, sleep=clock.sleep)
    assert got == "f" and clock.sleeps == [0.5, 0.5]


def test_the_error_names_what_was_awaited_and_the_last_thing_seen() -> None:
    clock = FakeClock()
    with pytest.raises(wait.WaitTimedOut) as err:
        wait.until(lambda: (False, "in recovery: t"), what="db2 to be a running primary",
                   timeout=2, interval=0.3, clock=clock, sleep=clock.sleep)
    assert str(err.value) == ("waited 2s for db2 to be a running primary; "
                              "last seen: in recovery: t")
    assert isinstance(err.value, CommandFailed)  # a failed step, like any host-side failure
    assert clock.now == pytest.approx(2.0)  # never sleeps past the deadline


def test_retryable_errors_count_as_not_yet_and_others_end_the_wait() -> None:
    clock = FakeClock()
    calls = iter([CommandFailed("connection refused"), (True, 7)])

    def probe() -> tuple[bool, int]:
        x = next(calls)
        if isinstance(x, Exception):
            raise x
        return x

    assert wait.until(probe, what="x", timeout=5, retry=(CommandFailed,), clock=clock,
                      sleep=clock.sleep) == 7
    with pytest.raises(ZeroDivisionError):
        wait.until(lambda: (1 / 0, 0), what="x", timeout=5, retry=(CommandFailed,),
                   clock=clock, sleep=clock.sleep)
    with pytest.raises(wait.WaitTimedOut, match="last seen: refused"):
        wait.until(lambda: (_ for _ in ()).throw(CommandFailed("refused")), what="x",
                   timeout=1, retry=(CommandFailed,), clock=clock, sleep=clock.sleep)
