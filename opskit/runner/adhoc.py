"""Ad-hoc commands over the fleet (``opskit exec``), like ``ansible -m shell``."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence

from opskit.inventory import Host
from opskit.runner import fleet
from opskit.runner.fleet import FleetResult, Observer, RunOptions
from opskit.transport.session import Session


def run_command(
    hosts: Sequence[Host],
    command: str,
    *,
    sudo: bool = False,
    options: RunOptions | None = None,
    observer: Observer | None = None,
    make_session: Callable[[Session], None] | None = None,
) -> FleetResult:
    """Run one shell command on every host; the command is the operator's own shell text.

    Each host gets ``OPSKIT_HOST`` (its inventory name) in the environment, quoted.
    """

    def on_host(session: Session) -> dict[str, int | None]:
        out = session.run(command, sudo=sudo, env={"OPSKIT_HOST": session.host.name})
        return {"exit_status": out.exit_status}

    return fleet.run(hosts, on_host, options, observer=observer, make_session=make_session)


class PrefixWriter(io.TextIOBase):
    """A stream that writes complete lines as ``host | line`` through ``emit``.

    Invoke hands output over in arbitrary chunks; partial lines are held until complete.
    """

    def __init__(self, prefix: str, emit: Callable[[str], None]) -> None:
        self.prefix = prefix
        self.emit = emit
        self._buf = ""
        self._lock = threading.Lock()

    def write(self, data: str) -> int:
        with self._lock:
            self._buf += data
            *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self.emit(f"{self.prefix} | {line}")
        return len(data)

    def flush(self) -> None:
        # Invoke flushes after every chunk; a partial line waits for its end (or finish()).
        pass

    def finish(self) -> None:
        with self._lock:
            rest, self._buf = self._buf, ""
        if rest:
            self.emit(f"{self.prefix} | {rest}")
