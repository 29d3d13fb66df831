"""Open-once sessions for an orchestrated operation (a runbook across a few hosts).

``fleet.run`` is for the same function on many hosts. A runbook (a failover) does different
steps on different hosts in order, several on each: this keeps one connection per host for
the whole operation, opens them in parallel, and remembers which hosts were unreachable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from opskit.inventory import Host
from opskit.runner.fleet import RunOptions
from opskit.transport.connection import connect, describe_connect_error
from opskit.transport.errors import CommandFailed, ConnectFailed
from opskit.transport.session import Session

T = TypeVar("T")


class HostPool:
    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self._sessions: dict[str, Session] = {}
        self._errors: dict[str, ConnectFailed] = {}
        self._lock = threading.Lock()

    def open(self, hosts: Sequence[Host]) -> None:
        """Connect to every host at once (those not yet tried)."""
        todo = [h for h in hosts if h.name not in self._sessions and h.name not in self._errors]
        if todo:
            with ThreadPoolExecutor(max_workers=min(len(todo), self.options.forks)) as pool:
                list(pool.map(self._connect, todo))

    def _connect(self, host: Host) -> None:
        try:
            conn = connect(host, self.options.connect)
        except Exception as exc:  # any failure to connect: the host is unreachable
            message, hint = describe_connect_error(exc)
            with self._lock:
                self._errors[host.name] = ConnectFailed(host.name, message, hint)
            return
        with self._lock:
            self._sessions[host.name] = Session(host, conn,
                                                command_timeout=self.options.command_timeout,
                                                sudo_password=self.options.sudo_password)

    def get(self, host: Host) -> Session:
        """The host's session; raises ConnectFailed (also when it was before)."""
        self.open([host])
        if host.name in self._errors:
            raise self._errors[host.name]
        return self._sessions[host.name]

    def reachable(self, host: Host) -> bool:
        self.open([host])
        return host.name in self._sessions

    def error(self, host: Host) -> ConnectFailed | None:
        return self._errors.get(host.name)

    def forget(self, host: Host) -> None:
        """Drop a session whose connection broke, so the next get() reconnects."""
        with self._lock:
            s = self._sessions.pop(host.name, None)
            self._errors.pop(host.name, None)
        if s is not None:
            _close(s)

    def each(self, hosts: Sequence[Host], fn: Callable[[Session], T], *,
             strict: bool = False) -> dict[str, T | Exception]:
        """``fn`` on every reachable host at once; per host its value or the exception.

        ``strict``: raise one CommandFailed naming every host that failed (after all ran).
        """
        self.open(hosts)

        def one(h: Host) -> T | Exception:
            try:
                return fn(self.get(h))
            except Exception as exc:  # reported per host by the caller
                return exc

        with ThreadPoolExecutor(max_workers=max(1, min(len(hosts), self.options.forks))) as pool:
            res = dict(zip([h.name for h in hosts], pool.map(one, hosts), strict=True))
        bad = {k: v for k, v in res.items() if isinstance(v, Exception)}
        if strict and bad:
            raise CommandFailed("; ".join(f"{k}: {v}" for k, v in bad.items()))
        return res

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            _close(s)


def _close(s: Session) -> None:
    close: Any = getattr(s.conn, "close", None)
    if close is not None:
        close()


@contextmanager
def pool(options: RunOptions) -> Iterator[HostPool]:
    p = HostPool(options)
    try:
        yield p
    finally:
        p.close()
