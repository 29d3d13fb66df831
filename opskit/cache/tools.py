"""The cache helpers run on a host: map (mincore), warm (exact preads), evict (vmtouch -e)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from opskit import settings
from opskit.cache.pagemap import PageMap, WarmPlan
from opskit.onhost import script
from opskit.transport.errors import CommandFailed, ProcessTimeout
from opskit.transport.session import Session

if TYPE_CHECKING:
    from opskit.cache.settings import CacheSettings

_VMTOUCH_RESIDENT = re.compile(r"Resident Pages:\s*(\d+)/(\d+)")


def tools(s: Session) -> tuple[str, str]:
    """The host's python3 and vmtouch (``cache.python`` / ``cache.vmtouch`` in its vars;
    checked by ``cache/settings.py``)."""
    c = cast("CacheSettings", settings.of(s.host, "cache"))
    return c.python, c.vmtouch


def _need(program: str, what: str) -> str:
    """Shell that fails with a clear line when ``program`` is not on the host."""
    return (f"command -v {shlex.quote(program)} >/dev/null || {{ echo "
            f"{shlex.quote(f'{what} not found on this host ({program})')} >&2; exit 127; }}")


def _failed(s: Session, what: str, out: object) -> CommandFailed:
    err = getattr(out, "stderr", "").strip().splitlines() or ["failed"]
    return CommandFailed(f"{s.host.name}: {what}: {err[-1]}", getattr(out, "exit_status", None),
                      getattr(out, "stderr", ""))


def map_dir(s: Session, root: str, *, cross_check: bool = True) -> tuple[PageMap, str | None]:
    """The host's map of ``root``, and vmtouch's own summary of it (when vmtouch is there)."""
    python, vmtouch = tools(s)
    argv = [python, "-I", "-S", "-c", script("page_map"), root]
    out = s.run(f"{_need(python, 'python3')}; test -d {shlex.quote(root)} || {{ echo "
                f"'no such directory' >&2; exit 66; }}; {shlex.join(argv)}", check=False,
                timeout=600)
    if out.exit_status != 0:
        raise _failed(s, f"map of {root}", out)
    pm = PageMap.from_doc(s.host.name, json.loads(out.stdout))
    check = None
    if cross_check:
        v = s.run(f"command -v {shlex.quote(vmtouch)} >/dev/null && "
                  f"{shlex.quote(vmtouch)} {shlex.quote(root)}", check=False)
        m = _VMTOUCH_RESIDENT.search(v.stdout)
        if m:
            check = f"vmtouch: {m.group(1)}/{m.group(2)} pages resident"
    return pm, check


def warm(s: Session, root: str, plan: WarmPlan, *, rate: int | None = None,
         progress: Callable[[int], None] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Read the plan's pages on the host, at idle I/O priority (ionice -c3) where available."""
    python, _ = tools(s)
    py = shlex.join([python, "-I", "-S", "-c", script("warm_pages")])
    proc = s.start(["sh", "-c", f"{_need(python, 'python3')}; if command -v ionice >/dev/null; "
                                f"then exec ionice -c3 {py}; else exec {py}; fi"])
    doc = {"root": root, "files": plan.files, "max_bytes": None, "rate": rate}
    proc.write(json.dumps(doc))
    proc.close_stdin()
    result: dict[str, Any] | None = None
    try:
        while result is None:
            line = proc.readline(timeout)
            if line == "":
                break
            if line.startswith("progress "):
                if progress:
                    progress(int(line.split()[1]))
            elif line.startswith("{"):
                result = json.loads(line)
    except ProcessTimeout:
        proc.kill()
        raise CommandFailed(f"warming {root} on {s.host.name}: no answer in {timeout:g}s") from None
    status = proc.wait(30)
    if result is None or status not in (0, None):
        why = "python3 not found on this host" if status == 127 else f"exit status {status}"
        raise CommandFailed(f"{s.host.name}: warming {root} failed: {why}", status)
    return result


def evict(s: Session, root: str) -> str:
    """Drop the directory's pages from the page cache (vmtouch -e)."""
    _, vmtouch = tools(s)
    out = s.run(f"{_need(vmtouch, 'vmtouch')}; test -d {shlex.quote(root)} || {{ echo "
                f"'no such directory' >&2; exit 66; }}; {shlex.quote(vmtouch)} -e -q "
                f"{shlex.quote(root)}", check=False, timeout=600)
    if out.exit_status != 0:
        raise _failed(s, f"evict {root}", out)
    return f"evicted {root}"
