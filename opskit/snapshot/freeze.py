"""Freeze a filesystem on a host through the guard (opskit/onhost/freeze_guard.py).

The guard thaws on our "THAW", on EOF (opskit or the connection died), at the deadline, or
via its watchdog if the guard itself dies; so a freeze never outlives its window. Whether
the freeze HELD until our THAW is the guard's word, never our clock: its "THAWED asked" says
so; any other reason (it thawed on its own first), or no answer at all (its channel closed),
means what happened inside the block may have happened after the thaw
(:attr:`FreezeWindow.held` is False).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opskit.errors import SafetyError
from opskit.onhost import script
from opskit.transport.errors import CommandFailed, ProcessTimeout
from opskit.transport.process import HostProcess
from opskit.transport.session import Session

# What the guard says when it thawed, other than on our THAW (freeze_guard.py's docstring).
WHY = {
    "timeout": "thawed at its {timeout:g}s deadline",
    "eof": "thawed when its connection closed",
    "signal": "thawed on a signal",
    # Something else thawed it (an fsfreeze -u), or the watchdog did, THAW being just in time.
    "already": "found the filesystem already thawed (by something else)",
}


@dataclass
class FreezeWindow:
    timeout: float
    ms: float | None = None           # as measured by the guard on the host
    reason: str | None = None         # asked | timeout | eof | signal | already; None: no answer

    @property
    def held(self) -> bool:
        """True only when the guard says the freeze lasted until our THAW."""
        return self.reason == "asked"

    def why(self) -> str:
        """How the freeze ended early, e.g. "thawed at its 5s deadline" (for error messages)."""
        if self.reason is None:
            return "gave no answer to THAW"
        return WHY.get(self.reason, f"said {self.reason!r}").format(timeout=self.timeout)


class ThawNotConfirmed(CommandFailed):
    """The guard did not answer THAW: the filesystem may still be frozen (check it)."""

    def __init__(self, message: str, window: FreezeWindow, hint: str) -> None:
        super().__init__(message)
        self.window, self.hint = window, hint


@contextmanager
def frozen(s: Session, mount: str, timeout: float) -> Iterator[FreezeWindow]:
    window = FreezeWindow(timeout=timeout)
    proc = s.start(["python3", "-c", script("freeze_guard"), mount, str(timeout)])
    try:
        first = proc.readline(timeout=30).strip()
    except ProcessTimeout:
        proc.kill()
        raise CommandFailed(f"no answer from the freeze guard on {mount}") from None
    if first.startswith("REFUSED"):
        proc.wait(5)
        raise SafetyError(f"{s.host.name}: freeze refused: {first[8:]}",
                          hint="snapshot a mounted data filesystem, never /")
    if first != "FROZEN":
        proc.wait(5)
        raise CommandFailed(f"freeze failed: {first or 'guard exited'}")
    try:
        yield window
    finally:
        # Thaw even if the snapshot call failed; with recovery steps honoured after Ctrl-C.
        t0 = time.monotonic()
        line = _thaw(proc, timeout)
        proc.wait(5)
        if line.startswith("THAWED") and len(line.split()) == 3:
            _, window.reason, ms = line.split()
            window.ms = float(ms)
        else:
            raise ThawNotConfirmed(
                f"{s.host.name}:{mount}: THAW NOT CONFIRMED after "
                f"{time.monotonic() - t0:.1f}s: {line or 'no answer'}", window,
                hint=f"check on the host with: fsfreeze -u {mount} (the guard thaws on EOF "
                "and at its deadline, but it did not say so)")


def _thaw(proc: HostProcess, timeout: float) -> str:
    """Send THAW; the guard's last line ("" if none came).

    A guard that thawed on its own has said so and exited: its channel may be closed, so the
    write can fail while its "THAWED ..." line still waits in our buffer.
    """
    try:
        proc.write("THAW\n")
    except (OSError, EOFError):
        pass  # closed: read what it said before it went
    try:
        return proc.readline(timeout=timeout + 5).strip()
    except (ProcessTimeout, OSError, EOFError):
        return ""
