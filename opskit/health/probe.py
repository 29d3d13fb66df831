"""A health sample of a target host: ship opskit/onhost/health_probe.py, parse its JSON.

Targets have only python3's stdlib (opskit and psutil live on the operator's machine), so
the probe reads /proc and statvfs itself.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from opskit.cache.tools import tools
from opskit.onhost import script
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session


def parse(text: str) -> dict[str, Any]:
    """The probe's JSON (the last line that looks like one, past any login noise)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            doc = json.loads(line)
            if not isinstance(doc, dict) or "memory" not in doc:
                break
            return doc
    raise ValueError("no health sample in the probe's output")


def collect(s: Session, interval: float = 1.0, top_n: int = 5) -> dict[str, Any]:
    python, _ = tools(s)
    argv = [python, "-I", "-S", "-c", script("health_probe"), f"{interval:g}", str(top_n)]
    out = s.run(shlex.join(argv), check=False, timeout=interval + 60)
    if out.exit_status != 0:
        why = out.reason()
        if out.exit_status == 127:
            why = f"python3 not found on this host ({python})"
        raise CommandFailed(f"health probe: {why}", out.exit_status, out.stderr)
    try:
        return parse(out.stdout)
    except ValueError as exc:
        raise CommandFailed(f"health probe: {exc}") from None
