"""A non-blocking run lock, so two cron runs of the same job never overlap."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opskit.errors import SafetyError


def lock_dir() -> Path:
    return Path(os.environ.get("OPSKIT_LOCK_DIR") or "~/.local/state/opskit").expanduser()


@contextmanager
def exclusive(name: str) -> Iterator[Path]:
    """Hold ``<lock dir>/<name>.lock``; SafetyError (exit 4) if another run holds it.

    flock is released by the kernel when the holder dies, so a crashed run never leaves a
    stale lock behind; the pid inside is only for the message.
    """
    path = lock_dir() / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise SafetyError(
                f"another opskit {name} run is in progress (pid {holder}); not starting",
                hint=f"wait for it, or check it with: ps -p {holder}",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
