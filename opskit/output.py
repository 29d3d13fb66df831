"""Where output goes and how it looks: Rich on a TTY, plain text when piped, JSON with --json.

Modelled on httpie's ``Environment``: commands never print directly; they ask the
environment, so tests and pipes get predictable text.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO

from opskit.errors import OpskitError
from opskit.redact import mask_data, mask_text

# Rich is imported on first use (a terminal to draw on): a piped or --json run -- cron,
# scripts, `exec` across the fleet -- does not pay its import time.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

def escape(text: str) -> str:
    """Rich markup escaping (only needed, and so only imported, when drawing with Rich)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


STATUS_STYLE = {
    "ok": "green",
    "failed": "bold red",
    "refused": "bold red",
    "unreachable": "bold magenta",
    "timeout": "bold yellow",
    "skipped": "dim",
}


@dataclass
class Environment:
    """Streams and modes of one opskit invocation."""

    json: bool = False
    verbose: bool = False
    quiet_success: bool = False  # cron: print nothing when everything went well
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin_isatty: bool = field(default_factory=lambda: sys.stdin is not None and sys.stdin.isatty())

    def __post_init__(self) -> None:
        self.stdout_isatty = _isatty(self.stdout)
        self.stderr_isatty = _isatty(self.stderr)
        self._lock = threading.Lock()

    @cached_property
    def out(self) -> Console:
        """The Rich console on stdout."""
        from rich.console import Console

        return Console(file=self.stdout, highlight=False, soft_wrap=True)

    @cached_property
    def err(self) -> Console:
        """The Rich console on stderr."""
        from rich.console import Console

        return Console(file=self.stderr, highlight=False, soft_wrap=True)

    # -- plain lines -------------------------------------------------------
    def line(self, text: str = "", style: str | None = None) -> None:
        """A line of human output on stdout (suppressed with --json); secrets masked."""
        if self.json:
            return
        text = mask_text(text)
        with self._lock:
            if self.stdout_isatty:
                self.out.print(escape(text), style=style)
            else:
                print(text, file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        """A side remark on stderr (progress notes, warnings)."""
        text = mask_text(text)
        with self._lock:
            if self.stderr_isatty:
                self.err.print(escape(text), style="dim")
            else:
                print(text, file=self.stderr, flush=True)

    def error(self, exc: OpskitError) -> None:
        # An error may quote a command or a config value: the secrets in it are masked.
        msg = mask_text(f"error: {exc.message}")
        hint = mask_text(f"hint: {exc.hint}") if exc.hint else None
        if self.stderr_isatty:
            self.err.print(escape(msg), style="bold red")
            if hint:
                self.err.print(escape(hint), style="yellow")
        else:
            print(msg, file=self.stderr)
            if hint:
                print(hint, file=self.stderr)

    def emit_json(self, doc: Any) -> None:
        """The --json document, with secrets masked (``opskit.redact``)."""
        print(json.dumps(mask_data(doc), indent=2, default=str), file=self.stdout, flush=True)

    # -- tables ------------------------------------------------------------
    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        title: str | None = None,
        styles: Sequence[str | None] | None = None,
    ) -> None:
        """A Rich table on a TTY; aligned plain columns when piped."""
        if self.json:
            return
        cells = [["" if v is None else mask_text(str(v)) for v in row] for row in rows]
        if self.stdout_isatty:
            from rich.table import Table

            t = Table(title=title, title_justify="left")
            for col in columns:
                t.add_column(col)
            for i, row in enumerate(cells):
                t.add_row(*(escape(c) for c in row), style=(styles[i] if styles else None))
            self.out.print(t)
            return
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        if title:
            print(title, file=self.stdout)
        for row in [list(columns), *cells]:
            padded = (v.ljust(w) for v, w in zip(row, widths, strict=True))
            print("  ".join(padded).rstrip(), file=self.stdout)
        self.stdout.flush()

    # -- progress ----------------------------------------------------------
    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[ProgressObserver]:
        """A progress bar on a TTY, nothing otherwise.

        It uses the stdout console when stdout is a terminal, so that host output printed
        meanwhile (through the same console) scrolls above the bar instead of tearing it.
        """
        on_stdout = self.stdout_isatty and not self.json
        if not (self.stdout_isatty if on_stdout else self.stderr_isatty) or total == 0:
            yield ProgressObserver(None, None)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        console = self.out if on_stdout else self.err
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        with bar:
            task = bar.add_task(description, total=total, state="")
            yield ProgressObserver(bar, task)


class ProgressObserver:
    """Fleet observer that advances a progress bar and counts outcomes."""

    def __init__(self, bar: Progress | None, task: Any) -> None:
        self.bar, self.task = bar, task
        self.running = 0
        self.failed = 0
        self._lock = threading.Lock()
        self.on_finish: list[Any] = []

    def host_started(self, host: Any) -> None:
        with self._lock:
            self.running += 1
            self._refresh()

    def host_finished(self, result: Any) -> None:
        with self._lock:
            self.running -= 1
            self.failed += result.status != "ok"
            if self.bar is not None:
                self.bar.advance(self.task)
            self._refresh()
        for callback in self.on_finish:
            callback(result)

    def _refresh(self) -> None:
        if self.bar is not None:
            state = f"{self.running} running" + (f", {self.failed} not ok" if self.failed else "")
            self.bar.update(self.task, state=state)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
