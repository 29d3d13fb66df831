"""Freeze a filesystem on a host through the guard (opskit/onhost/freeze_guard.py).

The guard thaws on our "THAW", on EOF (opskit or the connection died), at the deadline, or
via its watchdog if the guard itself dies; so a freeze never outlives its window.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opskit.errors import SafetyError
from opskit.onhost import script
from opskit.transport.errors import CommandFailed, ProcessTimeout
from opskit.transport.session import Session


@dataclass
class FreezeWindow:
    ms: float | None = None           # as measured by the guard on the host
    reason: str | None = None         # asked | eof | timeout | signal


@contextmanager
def frozen(s: Session, mount: str, timeout: float) -> Iterator[FreezeWindow]:
    window = FreezeWindow()
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
        proc.write("THAW\n")
        t0 = time.monotonic()
        line = ""
        try:
            line = proc.readline(timeout=timeout + 5).strip()
        except ProcessTimeout:
            pass
        proc.wait(5)
        if line.startswith("THAWED"):
            _, window.reason, ms = line.split()
            window.ms = float(ms)
        else:
            raise CommandFailed(f"THAW NOT CONFIRMED on {mount} after "
                             f"{time.monotonic() - t0:.1f}s: {line or 'no answer'} -- check "
                             f"with: fsfreeze -u {mount}")
