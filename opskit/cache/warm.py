"""Warming one host's page cache to match another's: map both, plan (pure), read, measure.

The command layer only renders; a Fabric task or a runbook (a new replica before it takes
traffic) calls the same two functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opskit.cache import tools
from opskit.cache.pagemap import PageMap, WarmPlan, compare, plan_warm
from opskit.inventory import Host
from opskit.runner.hostpool import HostPool


@dataclass
class Prepared:
    """What a warm would do: the source map, the target's map now, the plan and its summary."""

    source: PageMap
    before: PageMap
    plan: WarmPlan
    summary: dict[str, Any]


def prepare(pool: HostPool, to: Host, dst_root: str, *, source_host: Host | None,
            src_root: str, saved_map: dict[str, Any] | None,
            limit: int | None) -> Prepared:
    """Map the source (or take a saved map) and the target; plan the reads. Changes nothing."""
    if saved_map is not None:
        smap = PageMap.from_doc(saved_map.get("host", "map"), saved_map)
    else:
        assert source_host is not None
        smap, _ = tools.map_dir(pool.get(source_host), src_root, cross_check=False)
    before, _ = tools.map_dir(pool.get(to), dst_root, cross_check=False)
    plan = plan_warm(smap, before, limit)
    return Prepared(smap, before, plan, plan.to_doc(smap.page_size))


def apply(pool: HostPool, to: Host, dst_root: str, prepared: Prepared, *, rate: int | None,
          progress: Callable[[int], None] | None = None) -> tuple[dict[str, Any], PageMap]:
    """Read the planned pages on the target; its map afterwards."""
    s = pool.get(to)
    result = tools.warm(s, dst_root, prepared.plan, rate=rate, progress=progress)
    after, _ = tools.map_dir(s, dst_root, cross_check=False)
    return result, after


def report(prepared: Prepared, after: PageMap | None, result: dict[str, Any] | None,
           *, dry_run: bool) -> dict[str, Any]:
    """The JSON document of a warm (or its dry run): plan, result, and the match afterwards."""
    doc: dict[str, Any] = {"dry_run": dry_run, "source": prepared.source.host,
                           "target": prepared.before.host, "plan": prepared.summary,
                           "result": result}
    if after is not None:
        _rows, total = compare(prepared.source, after)
        wanted = prepared.summary["wanted_pages"]
        doc["after"] = {"jaccard": round(total.jaccard, 4),
                        "match_percent": round(100 * total.both / max(1, wanted), 2),
                        "target_resident_pages": total.b_pages}
    return doc
