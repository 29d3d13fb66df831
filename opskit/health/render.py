"""Rows for health tables: one host per row (fleet, top) and one check per row (local)."""

from __future__ import annotations

from typing import Any

from opskit.health import checks as ck
from opskit.health.survey import HostHealth
from opskit.units import human_bytes

STYLE = {ck.NAGIOS_OK: "green", ck.NAGIOS_WARNING: "bold yellow", ck.NAGIOS_CRITICAL: "bold red",
         ck.NAGIOS_UNKNOWN: "bold magenta"}
HOST_COLUMNS = ("host", "status", "load 1 5 15", "cpu", "mem", "swap", "fullest disk", "problems")


def worst_disk(sample: dict[str, Any]) -> str:
    disks = sample.get("disks") or []
    if not disks:
        return "-"
    d = max(disks, key=lambda d: d.get("percent") or 0)
    return f"{d['mount']} {d['percent']:g}%"


def host_row(h: HostHealth, max_problems: int = 3) -> tuple[str, ...]:
    name = ck.NAMES[h.status]
    if h.sample is None:
        return (h.host, name, "-", "-", "-", "-", "-", f"{h.reach}: {h.error or ''}".strip())
    s = h.sample
    load = " ".join(f"{x:.2f}" for x in s["load"])
    cpu = "-" if s.get("cpu_percent") is None else f"{s['cpu_percent']:.0f}%"
    mem = f"{s['memory']['percent']:.0f}%/{human_bytes(s['memory']['total'])}"
    swap = f"{s['swap']['percent']:.0f}%" if s["swap"].get("total") else "none"
    problems = "; ".join(c.text() for c in h.problems()[:max_problems])
    return (h.host, name, load, cpu, mem, swap, worst_disk(s), problems)


def check_rows(checks: list[ck.Check]) -> list[tuple[Any, ...]]:
    return [(c.key, c.target, "-" if c.value is None else f"{c.value:g}",
             "-" if c.warn is None else f"{c.warn:g}", "-" if c.crit is None else f"{c.crit:g}",
             ck.NAMES[c.status], c.detail) for c in checks]


def process_rows(sample: dict[str, Any]) -> list[tuple[Any, ...]]:
    rows = []
    for by, procs in (("cpu", sample.get("top_cpu") or []), ("rss", sample.get("top_rss") or [])):
        rows += [(by, p["pid"], p["name"], f"{p['cpu_percent']:g}%", human_bytes(p["rss"]))
                 for p in procs]
    return rows
