"""Rolling batches: ``--batch 1,5,25%`` -> the hosts of each batch, canary first.

Each item is a host count or a percentage of all selected hosts (rounded up, at least 1).
The last item repeats until every host is in a batch, as Ansible's ``serial`` does:
8 hosts with ``1,25%`` -> batches of 1, 2, 2, 2, 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TypeVar

from opskit.errors import UsageError

T = TypeVar("T")
_ITEM = re.compile(r"^\s*(\d+)\s*(%?)\s*$")
HINT = "a list of host counts or percentages, e.g. --batch 1,5,25%"


def parse(spec: str) -> list[tuple[int, bool]]:
    """``"1,5,25%"`` -> ``[(1, False), (5, False), (25, True)]``; errors are one line."""
    items = []
    for raw in spec.split(","):
        m = _ITEM.match(raw)
        if not m:
            raise UsageError(f"bad --batch item {raw.strip()!r} in {spec!r}", hint=HINT)
        value, percent = int(m.group(1)), bool(m.group(2))
        if value < 1 or (percent and value > 100):
            raise UsageError(f"--batch item {raw.strip()!r} is out of range", hint=HINT)
        items.append((value, percent))
    return items


def sizes(spec: str, total: int) -> list[int]:
    """Batch sizes for ``total`` hosts."""
    items = parse(spec)
    out: list[int] = []
    left = total
    i = 0
    while left > 0:
        value, percent = items[min(i, len(items) - 1)]
        size = max(1, math.ceil(total * value / 100)) if percent else value
        size = min(size, left)
        out.append(size)
        left -= size
        i += 1
    return out


def split(spec: str, hosts: Sequence[T]) -> list[list[T]]:
    """The hosts of each batch, in order."""
    batches: list[list[T]] = []
    start = 0
    for size in sizes(spec, len(hosts)):
        batches.append(list(hosts[start:start + size]))
        start += size
    return batches
