"""The cache helpers run on a host: map (mincore), warm (exact preads), evict (vmtouch -e)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from typing import Any

from opskit.cache.pagemap import PageMap, WarmPlan
from opskit.process import ProcessTimeout
from opskit.remote import script
from opskit.session import Session, StepFailed

_VMTOUCH_RESIDENT = re.compile(r"Resident Pages:\s*(\d+)/(\d+)")


def map_dir(s: Session, root: str, *, cross_check: bool = True) -> tuple[PageMap, str | None]:
    """The host's map of ``root``, and vmtouch's own summary of it (when vmtouch is there)."""
    argv = ["python3", "-I", "-S", "-c", script("page_map"), root]
    out = s.run(f"test -d {shlex.quote(root)} || {{ echo 'no such directory' >&2; exit 66; }}; "
                f"{shlex.join(argv)}", check=False, timeout=600)
    if out.exit_status != 0:
        raise StepFailed(f"map of {root}: {(out.stderr.strip().splitlines() or ['failed'])[-1]}",
                         out.exit_status, out.stderr)
    pm = PageMap.from_doc(s.host.name, json.loads(out.stdout))
    check = None
    if cross_check:
        v = s.run(f"command -v vmtouch >/dev/null && vmtouch {shlex.quote(root)}", check=False)
        m = _VMTOUCH_RESIDENT.search(v.stdout)
        if m:
            check = f"vmtouch: {m.group(1)}/{m.group(2)} pages resident"
    return pm, check


def warm(s: Session, root: str, plan: WarmPlan, *, rate: int | None = None,
         progress: Callable[[int], None] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Read the plan's pages on the host, at idle I/O priority (ionice -c3) where available."""
    py = shlex.join(["python3", "-I", "-S", "-c", script("warm_pages")])
    proc = s.start(["sh", "-c", f"if command -v ionice >/dev/null; then exec ionice -c3 {py}; "
                                f"else exec {py}; fi"])
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
        raise StepFailed(f"warming {root} on {s.host.name}: no answer in {timeout:g}s") from None
    status = proc.wait(30)
    if result is None or status not in (0, None):
        raise StepFailed(f"warming {root} on {s.host.name} failed (exit status {status})")
    return result


def evict(s: Session, root: str) -> str:
    """Drop the directory's pages from the page cache (vmtouch -e)."""
    out = s.run(f"vmtouch -e -q {shlex.quote(root)}", check=False, timeout=600)
    if out.exit_status != 0:
        raise StepFailed(f"vmtouch -e {root}: {out.stderr.strip() or out.exit_status}",
                         out.exit_status, out.stderr)
    return f"evicted {root}"
