"""The runner: one per-host function over many hosts, bounded, with a result per host.

Every remote action of opskit goes through :func:`run`. It opens one connection per host
(reused for all steps of the operation), runs ``fn(session)`` with at most ``forks`` hosts in
flight, and classifies each host ``ok | failed | unreachable | timeout | skipped``.
Ctrl-C stops starting hosts, lets running ones finish their current step (or their whole
``interrupts.host_critical`` section, e.g. a deploy's switch -> reload -> health), and reports
partial results.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import paramiko

from opskit import errors
from opskit.inventory import Host
from opskit.runner import interrupts
from opskit.transport.connection import ConnectOptions, connect, describe_connect_error
from opskit.transport.errors import CommandFailed, CommandTimedOut, Interrupted
from opskit.transport.session import Session, SudoPassword

OK, FAILED, UNREACHABLE, TIMEOUT, SKIPPED = "ok", "failed", "unreachable", "timeout", "skipped"
REFUSED = "refused"  # a per-host safety check said no; nothing was changed on that host
STATUSES = (OK, FAILED, REFUSED, UNREACHABLE, TIMEOUT, SKIPPED)

HostFn = Callable[[Session], Any]


@dataclass
class HostResult:
    host: str
    status: str
    value: Any = None
    stdout: str = ""
    stderr: str = ""
    exit_status: int | None = None
    error: str | None = None
    hint: str | None = None
    duration: float = 0.0
    started_at: float | None = None  # wall clock, for audits and concurrency checks
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration"] = round(self.duration, 3)
        data.pop("traceback")
        return data


@dataclass
class FleetResult:
    results: list[HostResult]
    duration: float
    interrupted: bool = False
    max_in_flight: int = 0

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    def by_status(self, status: str) -> list[HostResult]:
        return [r for r in self.results if r.status == status]

    @property
    def exit_code(self) -> int:
        counts = self.counts()
        if self.interrupted:
            return errors.EXIT_INTERRUPTED
        if counts[FAILED] or counts[TIMEOUT]:
            return errors.EXIT_FAILED
        if counts[REFUSED]:
            return errors.EXIT_REFUSED
        if counts[UNREACHABLE]:
            return errors.EXIT_UNREACHABLE
        return errors.EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.counts(),
            "exit_code": self.exit_code,
            "interrupted": self.interrupted,
            "duration": round(self.duration, 3),
            "hosts": [r.to_dict() for r in self.results],
        }


class Observer(Protocol):
    """Progress hooks; called from worker threads."""

    def host_started(self, host: Host) -> None: ...
    def host_finished(self, result: HostResult) -> None: ...


class _NullObserver:
    def host_started(self, host: Host) -> None:
        pass

    def host_finished(self, result: HostResult) -> None:
        pass


@dataclass
class RunOptions:
    forks: int = 50
    command_timeout: float | None = None
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    # The login's sudo password (--ask-sudo-pass, --sudo-pass-file): given to every session.
    sudo_password: SudoPassword | None = None


class _InFlight:
    """Counts hosts in flight; the maximum is kept so the bound can be checked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.max = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.max = max(self.max, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def _run_host(
    host: Host,
    fn: HostFn,
    options: RunOptions,
    stop: threading.Event,
    observer: Observer,
    in_flight: _InFlight,
    make_session: Callable[[Session], None] | None,
    abandon: threading.Event,
) -> HostResult:
    if stop.is_set():
        return HostResult(host.name, SKIPPED, error="interrupted before start")
    with in_flight:
        observer.host_started(host)
        started_at = time.time()
        t0 = time.monotonic()
        result = _attempt(host, fn, options, stop, make_session, abandon)
        result.started_at = started_at
        result.duration = time.monotonic() - t0
    observer.host_finished(result)
    return result


def _attempt(
    host: Host,
    fn: HostFn,
    options: RunOptions,
    stop: threading.Event,
    make_session: Callable[[Session], None] | None,
    abandon: threading.Event,
) -> HostResult:
    try:
        conn = connect(host, options.connect)
    except Exception as exc:  # any failure to connect means the host is unreachable
        message, hint = describe_connect_error(exc)
        return HostResult(host.name, UNREACHABLE, error=message, hint=hint)
    session = Session(host, conn, command_timeout=options.command_timeout, stop=stop,
                      abandon=abandon, sudo_password=options.sudo_password)
    if make_session is not None:
        make_session(session)
    res = HostResult(host.name, OK)
    try:
        res.value = fn(session)
    except CommandFailed as exc:
        res.status, res.error = FAILED, str(exc)
        res.exit_status = exc.exit_status
        res.hint = getattr(exc, "hint", None)  # e.g. SudoRefused: how to let sudo run
    except errors.SafetyError as exc:
        res.status, res.error, res.hint = REFUSED, exc.message, exc.hint
    except CommandTimedOut as exc:
        res.status, res.error = TIMEOUT, str(exc)
    except Interrupted as exc:
        res.status, res.error = SKIPPED, str(exc)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        # The connection dropped mid-operation: the host is gone, not the step wrong.
        res.status, res.error = UNREACHABLE, f"connection lost: {exc}"
    except Exception as exc:
        res.status, res.error = FAILED, f"{type(exc).__name__}: {exc}"
        res.traceback = traceback.format_exc()
    finally:
        close = getattr(conn, "close", None)
        if close is not None:
            close()
    res.stdout, res.stderr = session.stdout_tail(), session.stderr_tail()
    if res.status == OK:
        res.exit_status = session.last_exit_status
    return res


def run(
    hosts: Sequence[Host],
    fn: HostFn,
    options: RunOptions | None = None,
    *,
    observer: Observer | None = None,
    make_session: Callable[[Session], None] | None = None,
) -> FleetResult:
    """Run ``fn(session)`` on every host, at most ``options.forks`` at a time.

    Results come back in the order of ``hosts``. ``make_session`` may adjust each host's
    session before ``fn`` runs (e.g. to attach live output streams).
    """
    options = options or RunOptions()
    if options.forks < 1:
        raise errors.UsageError(f"--forks must be at least 1, got {options.forks}")
    observer = observer or _NullObserver()
    stop, abandon = threading.Event(), threading.Event()
    in_flight = _InFlight()
    t0 = time.monotonic()
    interrupted = False
    pool = ThreadPoolExecutor(max_workers=min(options.forks, max(len(hosts), 1)))
    futures: dict[Future[HostResult], Host] = {}
    # The signal policy sets the stop flag at once: no worker starts a host after a signal.
    with interrupts.on_signal(stop.set):
        try:
            for host in hosts:
                fut = pool.submit(_run_host, host, fn, options, stop, observer, in_flight,
                                  make_session, abandon)
                futures[fut] = host
            pending = set(futures)
            while pending:
                try:
                    _done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    # A signal the policy held back for a host's critical section set the stop
                    # flag (on_signal, above): end here too.
                    if stop.is_set() and not interrupted:
                        raise KeyboardInterrupt
                except KeyboardInterrupt:
                    interrupted = True
                    stop.set()
                    if interrupts.aborted():  # the operator left the hosts' sections unfinished
                        abandon.set()
                    for fut in pending:
                        fut.cancel()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    results = []
    for fut, host in futures.items():
        if fut.cancelled():
            results.append(HostResult(host.name, SKIPPED, error="interrupted before start"))
        else:
            results.append(fut.result())
    return FleetResult(results, time.monotonic() - t0, interrupted, in_flight.max)
