"""Run one ``opskit deploy`` with per-step timings: where a deploy's time goes.

bench/deploy.py starts this as a subprocess: ``deploy_profile.py OUT.json OPSKIT_ARGS...``.
It runs opskit's command line in this process with opskit's connect, its deploy steps
(``opskit.deploy.steps``, the ELB calls) and its remote commands (``Session.run``,
``Session.put``) wrapped, to record per host when each step ran, how long it took and how
many remote commands it sent. opskit itself is not changed; the wrappers cost microseconds.
The command's own output goes to stdout and stderr as usual; the exit status is opskit's.

OUT.json: ``{"phases": {"imports": s, "build": s, "deploy": s, "total": s},
"hosts": {NAME: [{"step", "start", "seconds", "commands", "uploads"}, ...]}}``
(``start`` in seconds since the command started; a nested step, e.g. the listing inside
``prune``, counts towards the outer one).
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

T0 = time.monotonic()

import opskit.deploy  # noqa: E402  (after T0: their import time is measured)
import opskit.deploy.elb  # noqa: E402
import opskit.deploy.steps  # noqa: E402
import opskit.runner.fleet  # noqa: E402
from opskit.cli import main as opskit_main  # noqa: E402
from opskit.transport.session import Session  # noqa: E402

IMPORTED = time.monotonic()
STEPS = ("ship", "install", "activate", "health")
ELB_STEPS = ("deregister", "register")

Event = dict[str, Any]


class Recorder:
    """Per host, the steps in order; per worker thread, the host and the step running."""

    def __init__(self) -> None:
        self.hosts: dict[str, list[Event]] = {}
        self.phases: dict[str, float] = {"imports": IMPORTED - T0}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _event(self, name: str) -> Event:
        return {"step": name, "start": round(time.monotonic() - T0, 4), "seconds": 0.0,
                "commands": 0, "uploads": 0}

    def _add(self, event: Event) -> None:
        host = getattr(self._local, "host", "?")
        with self._lock:
            self.hosts.setdefault(host, []).append(event)

    def step(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed as step ``name`` of the calling thread's host (outermost step only)."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if getattr(self._local, "event", None) is not None:
                return fn(*args, **kwargs)  # nested: counted in the outer step
            event = self._local.event = self._event(name)
            t = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                event["seconds"] = round(time.monotonic() - t, 4)
                self._local.event = None
                self._add(event)

        return timed

    def connect(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The per-host connect: also tells this worker thread which host it works on."""

        @functools.wraps(fn)
        def timed(host: Any, *args: Any, **kwargs: Any) -> Any:
            self._local.host, self._local.event = host.name, None
            return self.step("connect", fn)(host, *args, **kwargs)

        return timed

    def count(self, what: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """A Session method counted as a remote command (``what``) of the running step."""

        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            event = getattr(self._local, "event", None)
            if event is None:
                event = self._event("other")
                self._add(event)
            event[what] += 1
            return fn(*args, **kwargs)

        return counted

    def phase(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                self.phases[name] = round(time.monotonic() - t, 4)

        return timed


def install(rec: Recorder) -> None:
    """Wrap opskit's functions where its deploy code looks them up (module attributes)."""
    for name in STEPS:
        setattr(opskit.deploy.steps, name, rec.step(name, getattr(opskit.deploy.steps, name)))
    for name in ELB_STEPS:
        setattr(opskit.deploy.elb, name, rec.step(f"elb_{name}", getattr(opskit.deploy.elb, name)))
    opskit.runner.fleet.connect = rec.connect(opskit.runner.fleet.connect)  # type: ignore[assignment]
    Session.run = rec.count("commands", Session.run)  # type: ignore[method-assign]
    Session.run_input = rec.count("commands", rec.count(  # type: ignore[method-assign]
        "uploads", Session.run_input))
    opskit.deploy.build = rec.phase("build", opskit.deploy.build)  # type: ignore[assignment]
    opskit.deploy.deploy = rec.phase("deploy", opskit.deploy.deploy)  # type: ignore[assignment]


def main(argv: list[str]) -> int:
    out, opskit_args = Path(argv[0]), argv[1:]
    rec = Recorder()
    install(rec)
    code: int | str | None = 0
    try:
        opskit_main(opskit_args)
    except SystemExit as exc:
        code = exc.code
    finally:
        rec.phases["total"] = round(time.monotonic() - T0, 4)
        out.write_text(json.dumps({"phases": rec.phases, "hosts": rec.hosts}))
    return code if isinstance(code, int) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
