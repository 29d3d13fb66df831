"""The cache-warming lab data: the same mixed-size file set under /data/cache on two db
hosts, and a realistic partial residency on one of them.

The set (about 160 MiB: many small files, some of a few MiB, a few large ones) is written by
a stdlib script on each host (deterministic from a seed, so both hosts hold identical
files) and starts cold. ``warm_random`` then reads a random subset of *pages* on a host --
runs of pages at random offsets, most files touched, some not at all -- through the same
exact-read helper the warm command uses.
"""

from __future__ import annotations

import json
import random
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opskit import inventory as inventory_mod
from opskit.cache.pagemap import WarmPlan
from opskit.cache.tools import warm
from opskit.errors import LabError
from opskit.onhost import script
from opskit.runner import fleet
from opskit.transport.session import Session

ROOT = "/data/cache"
HOSTS = ("db2", "db3")
SEED = 20261124
PAGE = 4096


def spec(seed: int = SEED) -> list[int]:
    """File sizes in KiB: 40 small (16-512 KiB), 16 medium (1-8 MiB), 4 large (16-24 MiB)."""
    r = random.Random(seed)
    return ([r.randint(16, 512) for _ in range(40)] + [r.randint(1024, 8192) for _ in range(16)]
            + [r.randint(16384, 24576) for _ in range(4)])


def _hosts(inventory_path: Path, names: Sequence[str]) -> list[inventory_mod.Host]:
    inv = inventory_mod.load(str(inventory_path))
    return [inv.select(n)[0] for n in names]


def ensure(inventory_path: Path, names: Sequence[str] = HOSTS, root: str = ROOT) -> dict[str, Any]:
    """Create the data set on each host (kept if already there); per host what happened."""
    sizes = ",".join(map(str, spec()))

    def make(s: Session) -> Any:
        out = s.run(shlex.join(["python3", "-I", "-S", "-c", script("make_dataset"), root,
                                str(SEED), sizes]), timeout=300)
        return json.loads(out.stdout.strip().splitlines()[-1])

    res = fleet.run(_hosts(inventory_path, names), make)
    bad = [f"{r.host}: {r.error}" for r in res.results if r.status != "ok"]
    if bad:
        raise LabError("cache data set: " + "; ".join(bad), hint="is the lab up (10 hosts)?")
    return {r.host: r.value for r in res.results}


def random_plan(seed: int, fraction: float = 0.35) -> list[tuple[str, list[list[int]]]]:
    """Runs of pages at random offsets covering about ``fraction`` of most files."""
    r = random.Random(seed)
    files = []
    for i, kib in enumerate(spec()):
        pages = kib * 1024 // PAGE
        if r.random() < 0.2:  # some files stay entirely cold
            continue
        want, ranges, taken = int(pages * fraction), [], set()
        for _attempt in range(10_000):  # bounded: a crowded small file may not fit it all
            if sum(n for _, n in ranges) >= want:
                break
            n = max(1, min(want, r.randint(1, 64)))
            first = r.randrange(0, max(1, pages - n))
            if any(first <= a + m and a <= first + n for a, m in taken):
                continue
            taken.add((first, n))
            ranges.append([first, n])
        files.append((f"f{i:03d}.dat", sorted(ranges)))
    return files


def warm_random(inventory_path: Path, name: str, seed: int = 7, root: str = ROOT,
                fraction: float = 0.35) -> dict[str, Any]:
    """Read a random subset of pages of the data set on one host."""
    files = random_plan(seed, fraction)
    plan = WarmPlan(files, 0, 0, sum(n for _, rs in files for _, n in rs), [], False)
    res = fleet.run(_hosts(inventory_path, [name]), lambda s: warm(s, root, plan))
    r = res.results[0]
    if r.status != "ok":
        raise LabError(f"warming random pages on {name}: {r.error}")
    return dict(r.value)


def prepare(inventory_path: Path) -> dict[str, Any]:
    """The whole cache-warming starting point: the files on db2 and db3 (kept if there), both
    evicted, then a random subset of pages read on db2. What was made and read."""
    from opskit.cache.tools import evict

    made = ensure(inventory_path)
    fleet.run(_hosts(inventory_path, HOSTS), lambda s: evict(s, ROOT))
    return {"made": made, "warmed": warm_random(inventory_path, HOSTS[0])}
