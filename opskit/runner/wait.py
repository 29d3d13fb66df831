"""The one wait helper: poll until something holds, with a deadline, an interval, and an error
that says what was awaited and what was last seen.

    wait.until(lambda: probe(s), what=f"{node.name} to be a running primary", timeout=30)

``probe`` returns ``(done, seen)``: ``seen`` is returned when done, and quoted in the error
when the deadline passes. Exceptions listed in ``retry`` count as "not yet" (their text is
what was seen); any other exception ends the wait at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from opskit.transport.errors import CommandFailed

T = TypeVar("T")


class WaitTimedOut(CommandFailed):
    """The deadline passed before the awaited state was seen (a failed step, exit 2)."""

    def __init__(self, what: str, timeout: float, seen: object) -> None:
        super().__init__(f"waited {timeout:g}s for {what}; last seen: {seen}")
        self.what, self.timeout, self.seen = what, timeout, seen


def until(probe: Callable[[], tuple[bool, T]], *, what: str, timeout: float,
          interval: float = 0.2, retry: tuple[type[BaseException], ...] = (),
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``probe`` every ``interval`` seconds until it reports done; return what it saw."""
    deadline = clock() + timeout
    seen: object = "nothing yet"
    while True:
        try:
            done, value = probe()
            if done:
                return value
            seen = value
        except retry as exc:
            seen = str(exc) or type(exc).__name__
        left = deadline - clock()
        if left <= 0:
            raise WaitTimedOut(what, timeout, seen)
        sleep(min(interval, left))
