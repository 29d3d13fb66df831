"""The live fleet view's moving parts: a key reader in cbreak mode and the view's table."""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.markup import escape
from rich.table import Table

from opskit.health import checks as ck
from opskit.health import render
from opskit.health.survey import FleetHealth


class Keys:
    """Single key presses from a terminal, without waiting for Enter and without blocking."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def wait(self, seconds: float) -> str | None:
        """A key pressed within ``seconds``, or None (sleeps when there is no terminal)."""
        if self.fd is None:
            time.sleep(seconds)
            return None
        ready, _, _ = select.select([self.fd], [], [], max(0.0, seconds))
        if not ready:
            return None
        data = os.read(self.fd, 1)
        return data.decode(errors="replace") if data else None


@contextmanager
def keys(stream: TextIO | None = None) -> Iterator[Keys]:
    """cbreak mode on the terminal for the duration (restored after, even on Ctrl-C)."""
    stream = stream if stream is not None else sys.stdin
    try:
        fd = stream.fileno()
        is_tty = os.isatty(fd)
    except (AttributeError, ValueError, OSError):
        fd, is_tty = -1, False
    if not is_tty:
        yield Keys(None)
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)  # keys arrive one by one, Ctrl-C still interrupts
        yield Keys(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def table(fh: FleetHealth | None, title: str) -> Table:
    t = Table(title=title, title_justify="left", caption="q: quit", caption_justify="left")
    # One line per host, so the whole fleet fits a terminal: cells are cut, never wrapped.
    for col in render.HOST_COLUMNS:
        t.add_column(col, no_wrap=True, overflow="ellipsis",
                     ratio=1 if col == "problems" else None)
    for h in fh.hosts if fh else []:
        t.add_row(*(escape(c) for c in render.host_row(h, max_problems=2)),
                  style=render.STYLE[h.status])
    if fh is None:
        t.add_row("…", "sampling", *[""] * (len(render.HOST_COLUMNS) - 2))
    return t


def title(fh: FleetHealth | None, n_hosts: int, interval: float) -> str:
    if fh is None:
        return f"opskit top: {n_hosts} hosts, first sample…"
    return (f"opskit top: {n_hosts} hosts, {ck.NAMES[fh.status]}, every {interval:g}s, "
            f"at {time.strftime('%H:%M:%S')} ({fh.duration:.1f}s to sample)")
