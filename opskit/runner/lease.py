"""The cluster lease: one operator run at a time on a cluster, held on the cluster's own hosts.

opskit has no server, so the lock lives on the lock hosts (a cluster's db, PgBouncer and
witness hosts): a lease file per scope on each (``onhost/lease.py``), and a run holds the
lease when it holds it on a strict majority of them. Hosts are taken in a fixed order (by
name: one at a time until one answers, then the rest at once) and a run gives up at the first
host another live run holds, so two runs started together never each hold a part and wait on
the other. Expiry is on each lock host's clock (now + ttl there); a daemon thread renews
every ttl/3 over connections of the lease's own (never the runbook's sessions, so a Ctrl-C
stop flag or a busy channel of a step never stalls renewal). docs/postgres.md, "One operator
at a time: the cluster lease".
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opskit.errors import SafetyError, UsageError
from opskit.inventory import Host
from opskit.onhost import script
from opskit.runner.fleet import RunOptions
from opskit.runner.hostpool import HostPool
from opskit.transport.errors import CommandFailed, ConnectFailed
from opskit.transport.session import Session

DEFAULT_DIR = "/var/lib/opskit/locks"
DIR_VAR = "opskit_lease_dir"  # a host var: the lock dir on that host, if not the default
# The grammar onhost/lease.py checks too: no "/", no "..", so a scope is one file name.
SCOPE = re.compile(r"[a-z][a-z0-9_.%-]{0,199}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,30}")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_TTL = 86400.0  # as onhost/lease.py
CALL_TIMEOUT = 20.0  # one lease action on one host (an SSH round trip and a tiny program)


class LeaseRefused(SafetyError):
    """Another run holds the lease, too few lock hosts answered, or the lease was lost."""


def scope(kind: str, *parts: str) -> str:
    """A valid scope for ``kind`` and its parts, e.g. ("snapshot", "db1", "/data") ->
    "snapshot.db1.%2fdata". Injective: a part keeps only [a-z0-9_-] and every other byte of
    its UTF-8 is %xx (lower-case hex), so "." only ever separates parts."""
    if not _KIND.fullmatch(kind):
        raise UsageError(f"not a lease kind: {kind!r}")
    if not parts or any(p == "" for p in parts):
        raise UsageError(f"a lease scope needs non-empty parts: {parts!r}")
    words = ["".join(chr(b) if chr(b) in _PLAIN else f"%{b:02x}" for b in p.encode())
             for p in parts]
    out = ".".join([kind, *words])
    check_scope(out)
    return out


def check_scope(text: str) -> str:
    if not SCOPE.fullmatch(text) or ".." in text:
        raise UsageError(f"not a lease scope: {text!r}"[:300],
                         hint="make scopes with opskit.runner.lease.scope(kind, *parts)")
    return text


def _clock(epoch: float | None) -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime(epoch)) if epoch else "?"


def describe_holder(holder: dict[str, Any]) -> str:
    """ "root@opshost pid 1234 run 20261201T...-abcd (pg failover) until 22:51:03Z"."""
    if "corrupt" in holder:
        return f"an unreadable lease file ({holder['corrupt']})"
    return (f"{holder.get('owner', '?')} pid {holder.get('pid', '?')} run "
            f"{holder.get('run_id', '?')} ({holder.get('command', '?')}) until "
            f"{_clock(holder.get('expires'))}")


@dataclass
class _Held:
    expires: float          # on the lock host's clock
    deadline: float         # on our monotonic clock: no later than the host's expiry


@dataclass
class Lease:
    scope: str
    run_id: str
    what: str
    ttl: float
    need: int               # a strict majority of all lock hosts
    lock_hosts: list[str]
    held: dict[str, _Held] = field(default_factory=dict)
    # Per host, the holder record that --break-lock removed (for the journal).
    broken: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Lock hosts that did not answer (unreachable, refused), and why.
    missing: dict[str, str] = field(default_factory=dict)
    # Why the lease was lost (None while held): set by the renewal thread or check().
    lost: str | None = None
    # Hosts an acquire was sent to: released at the end even if the answer never came.
    tried: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def hosts(self) -> list[str]:
        """The lock hosts this run holds the lease on (by name, in lock order)."""
        with self._lock:
            return [h for h in self.lock_hosts if h in self.held]

    def holding(self) -> list[str]:
        """Held hosts whose lease cannot have expired yet (by our own clock)."""
        now = time.monotonic()
        with self._lock:
            return [h for h in self.lock_hosts if h in self.held and self.held[h].deadline > now]

    def check(self) -> None:
        """Raise LeaseRefused unless this run still holds a majority: call before each
        critical step."""
        if self.lost is None:
            alive = self.holding()
            if len(alive) < self.need:
                self._lose(f"{len(alive)} of {len(self.lock_hosts)} lock hosts still held "
                           f"(need {self.need})")
        if self.lost is not None:
            raise LeaseRefused(f"lease lost on {self.what}: {self.lost}",
                               hint="another run may act now: check with `opskit journal` "
                               "before going on by hand")

    def _lose(self, why: str) -> None:
        with self._lock:
            if self.lost is None:
                self.lost = why


def _owner() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _call(s: Session, action: str, *args: str, data: dict[str, Any] | None = None,
          timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
    """Run the lease program on the host as root (sudo for a non-root login): its answer."""
    lock_dir = str(s.host.vars.get(DIR_VAR) or DEFAULT_DIR)
    argv = ["python3", "-I", "-S", "-c", script("lease"), "--dir", lock_dir, action, *args]
    payload = json.dumps(data).encode() if data is not None else b""
    out = s.run_input(shlex.join(argv), payload, sudo=True, check=False, timeout=timeout)
    answer = out.answer()
    if answer is None:
        raise CommandFailed(f"lease program: {out.reason()}", out.exit_status, out.stderr)
    if "error" in answer:
        raise CommandFailed(f"lease program refused: {answer['error']}", out.exit_status)
    return answer


def _why(exc: Exception) -> str:
    if isinstance(exc, ConnectFailed):
        return "unreachable"
    return str(exc) or type(exc).__name__


def _answering(pool: HostPool, h: Host, fn: Any, lease: Lease) -> Any:
    """``fn(session)`` on a lock host, or None with the host noted as missing."""
    try:
        return fn(pool.get(h))
    except Exception as exc:  # any failure: this lock host did not answer
        lease.missing[h.name] = _why(exc)
        pool.forget(h)
        return None


def _missing_text(lease: Lease) -> str:
    # In the lock hosts' order, not the answers' (they are asked at once).
    missing = [(h, lease.missing[h]) for h in lease.lock_hosts if h in lease.missing]
    down = [h for h, why in missing if why == "unreachable"]
    other = [f"{h}: {why}" for h, why in missing if why != "unreachable"]
    parts = ([f"{', '.join(down)} unreachable"] if down else []) + other
    return "; ".join(parts)


@contextmanager
def held(lock_hosts: Sequence[Host], scope: str, *, options: RunOptions, run_id: str,
         command: str, ttl: float = 120, break_lock: bool = False,
         what: str | None = None) -> Iterator[Lease]:
    """Hold ``scope`` on a strict majority of ``lock_hosts`` for the block, or raise
    LeaseRefused (exit 4) before it starts. ``what`` names the thing locked in messages
    ("the cluster main"); ``break_lock`` first removes whatever lease is there (kept in
    ``Lease.broken``). Released when the block ends, however it ends."""
    check_scope(scope)
    if not 0 < ttl <= MAX_TTL:
        raise UsageError(f"a lease ttl must be in (0, {MAX_TTL:g}] seconds: {ttl!r}")
    hosts = sorted({h.name: h for h in lock_hosts}.values(), key=lambda h: h.name)
    if not hosts:
        raise UsageError(f"no lock hosts for {what or scope}")
    lease = Lease(scope=scope, run_id=run_id, what=what or f"the lease {scope}", ttl=ttl,
                  need=len(hosts) // 2 + 1, lock_hosts=[h.name for h in hosts])
    record = {"owner": _owner(), "pid": os.getpid(), "run_id": run_id, "command": command}
    pool = HostPool(options)
    renewer: _Renewer | None = None
    try:
        pool.open(hosts)  # in parallel
        if break_lock:
            for h in hosts:
                ans = _answering(pool, h, lambda s: _call(s, "break", scope), lease)
                if ans is not None and ans.get("holder"):
                    lease.broken[h.name] = ans["holder"]
            lease.missing.clear()  # asked again below

        def acquire(h: Host) -> tuple[Host, float, dict[str, Any] | None]:
            sent = time.monotonic()
            with lease._lock:
                lease.tried.add(h.name)
            return h, sent, _answering(pool, h, lambda s: _call(
                s, "acquire", scope, f"{ttl:g}", data=record), lease)

        # One host at a time, in order, until one answers: of two runs started together,
        # the one that takes that host goes on and the other is refused there, having taken
        # nothing. The taker then asks the rest at once (a round trip each saved); should
        # two runs see different first hosts (one unreachable to one of them), both may be
        # refused: never both hold a majority.
        answers = []
        rest = list(hosts)
        while rest:
            answers.append(acquire(rest.pop(0)))
            if answers[-1][2] is not None:
                break
        taken = answers[-1][2] if answers else None
        if rest and taken is not None and taken.get("ok"):
            with ThreadPoolExecutor(max_workers=min(len(rest), options.forks)) as ex:
                answers += list(ex.map(acquire, rest))
        for h, sent, ans in answers:
            if ans is not None and not ans.get("ok"):
                _release(pool, hosts, lease)
                raise _refusal(pool, hosts, lease, h, ans.get("holder") or {})
            if ans is not None:
                with lease._lock:
                    lease.held[h.name] = _Held(float(ans["expires"]), sent + ttl)
        if len(lease.held) < lease.need:
            answered = len(lease.held)
            _release(pool, hosts, lease)
            raise LeaseRefused(
                f"cannot lock {lease.what}: {answered} of {len(hosts)} lock hosts "
                f"answered (need {lease.need}): {_missing_text(lease)}",
                hint="bring the lock hosts back, or fix what the lease program said; with "
                "fewer than a majority no run can tell it is the only one")
        renewer = _Renewer(pool, hosts, lease)
        renewer.start()
        yield lease
    finally:
        if renewer is not None:
            renewer.stop()
        _release(pool, hosts, lease)
        pool.close()


def _refusal(pool: HostPool, hosts: Sequence[Host], lease: Lease, at: Host,
             holder: dict[str, Any]) -> LeaseRefused:
    """The loser's message: who holds it and on which lock hosts (a read-only look at the
    others, which changes nothing)."""
    on = [at.name]
    rid = holder.get("run_id")
    if rid is not None:
        others = [h for h in hosts if h.name != at.name and pool.reachable(h)]
        for name, ans in pool.each(others, lambda s: _call(s, "show", lease.scope)).items():
            other = ans.get("holder") if isinstance(ans, dict) else None
            if other and other.get("run_id") == rid and not other.get("expired"):
                on.append(name)
    names = ", ".join(sorted(on))
    return LeaseRefused(f"{lease.what} is locked by {describe_holder(holder)} on {names}",
                        hint="wait for that run to end (see `opskit journal show "
                        f"{rid or 'RUN'}`); if it died, its lease expires at its ttl, or "
                        "take it now with --break-lock (journaled)")


def _release(pool: HostPool, hosts: Sequence[Host], lease: Lease) -> None:
    """Release what this run holds (and where an acquire got no answer: the program only
    removes a lease of this run); a failure is not fatal, the lease expires."""
    with lease._lock:
        names, lease.held = set(lease.held) | lease.tried, {}
        lease.tried = set()
    mine = [h for h in hosts if h.name in names]
    if mine:
        pool.each(mine, lambda s: _call(s, "release", lease.scope, lease.run_id))


class _Renewer:
    """Renews on every held host each ttl/3; loses the lease when fewer than a majority
    are still ours (taken over after an expiry, or silent past their expiry)."""

    def __init__(self, pool: HostPool, hosts: Sequence[Host], lease: Lease) -> None:
        self.pool, self.lease = pool, lease
        self.hosts = [h for h in hosts if h.name in lease.held]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"lease-renew-{lease.scope}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # A renewal round in flight ends within its call timeout; release waits for it so
        # that no renew lands after the release.
        self._thread.join(CALL_TIMEOUT + 5)

    def _loop(self) -> None:
        lease = self.lease
        interval = lease.ttl / 3
        # Not a poll for a state (runner/wait.py): a period, cut short by stop().
        while not self._stop.wait(interval) and lease.lost is None:
            self._round(min(interval, CALL_TIMEOUT))
            alive = lease.holding()
            if len(alive) < lease.need and not self._stop.is_set():
                lease._lose(f"{len(alive)} of {len(lease.lock_hosts)} lock hosts still held "
                            f"(need {lease.need}): {_missing_text(lease) or 'taken over'}")

    def _round(self, timeout: float) -> None:
        lease = self.lease
        mine = [h for h in self.hosts if h.name in lease.held]
        sent = time.monotonic()

        def renew(s: Session) -> dict[str, Any]:
            return _call(s, "renew", lease.scope, lease.run_id, f"{lease.ttl:g}",
                         timeout=timeout)

        for name, ans in self.pool.each(mine, renew).items():
            if isinstance(ans, Exception):
                # Silent this round: still ours until its deadline passes, so try again.
                lease.missing[name] = _why(ans)
                self.pool.forget(next(h for h in mine if h.name == name))
                continue
            lease.missing.pop(name, None)
            with lease._lock:
                if ans.get("ok"):
                    lease.held[name] = _Held(float(ans["expires"]), sent + lease.ttl)
                elif name in lease.held:
                    del lease.held[name]  # no longer ours there: taken over or broken
                    lease.missing[name] = (f"taken by {describe_holder(ans['holder'])}"
                                           if ans.get("holder") else "lease gone")
