"""Thresholds and Nagios-style statuses: judge a health sample, find the worst.

Statuses are Nagios plugin codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), *not* opskit's
usual exit codes: cron wrappers and PagerDuty/Nagios integrations read them directly.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from opskit.errors import UsageError

if TYPE_CHECKING:
    from opskit.inventory import Host

NAGIOS_OK, NAGIOS_WARNING, NAGIOS_CRITICAL, NAGIOS_UNKNOWN = 0, 1, 2, 3
NAMES = {NAGIOS_OK: "OK", NAGIOS_WARNING: "WARNING", NAGIOS_CRITICAL: "CRITICAL",
         NAGIOS_UNKNOWN: "UNKNOWN"}
# Worst first when aggregating: a known CRITICAL outranks "could not tell" (UNKNOWN), which
# outranks WARNING (Icinga's order), so an unreachable host never hides a full disk.
_SEVERITY = {NAGIOS_OK: 0, NAGIOS_WARNING: 1, NAGIOS_UNKNOWN: 2, NAGIOS_CRITICAL: 3}

# key: (warn, crit, what it measures). A value >= a threshold reaches that level.
DEFAULTS: dict[str, tuple[float | None, float | None, str]] = {
    "load_per_cpu": (2.0, 4.0, "1-minute load average divided by the CPU count"),
    "cpu_percent": (95.0, 100.0, "CPU busy over the sample interval, %"),
    "memory_percent": (90.0, 95.0, "memory in use (total - available), %"),
    "swap_percent": (50.0, 80.0, "swap in use, %"),
    "disk_percent": (80.0, 90.0, "space used per mounted filesystem, %"),
    "inode_percent": (80.0, 90.0, "inodes used per mounted filesystem, %"),
    "disk_busy_percent": (90.0, None, "time a disk was busy over the interval, %"),
    "net_errors_per_s": (10.0, 100.0, "network errors + drops per second, all interfaces"),
    "fd_percent": (80.0, 90.0, "open files system-wide vs fs.file-max, %"),
    "process_fd_percent": (80.0, 90.0, "open files of the worst process vs its limit, %"),
    "working_set_percent": (80.0, 100.0, "PostgreSQL data dir / Redis used memory vs RAM, %"),
}


@dataclass
class Thresholds:
    levels: dict[str, tuple[float | None, float | None]] = field(
        default_factory=lambda: {k: (w, c) for k, (w, c, _) in DEFAULTS.items()})

    def get(self, key: str) -> tuple[float | None, float | None]:
        return self.levels[key]

    def with_overrides(self, warn: Mapping[str, float | None] | None = None,
                       crit: Mapping[str, float | None] | None = None) -> Thresholds:
        levels = dict(self.levels)
        for key, value in (warn or {}).items():
            levels[_known(key)] = (value, levels[key][1])
        for key, value in (crit or {}).items():
            levels[_known(key)] = (levels[key][0], value)
        return Thresholds(levels)


def _known(key: str) -> str:
    if key not in DEFAULTS:
        close = difflib.get_close_matches(key, DEFAULTS, n=2)
        raise UsageError(f"unknown health threshold {key!r}",
                         hint=f"did you mean {' or '.join(close)}?" if close
                         else f"one of: {', '.join(DEFAULTS)}")
    return key


def from_vars(host_vars: Mapping[str, Any] | Host, host: str = "host") -> Thresholds:
    """Thresholds from a host's ``health:`` vars: ``{KEY: {warn: N, crit: N}}``.

    Pass the inventory :class:`Host` for errors that name the file and line of a bad value
    (a mapping of vars works too, named ``host``). The settings schema (pydantic) is loaded
    only for a host that has ``health:`` vars, or a var that looks like a misspelling of it:
    the health command and the Munin plugin run often, on hosts that mostly have none.
    """
    vars_ = host_vars if isinstance(host_vars, Mapping) else host_vars.vars
    if not _mentions_health(vars_):
        return Thresholds()
    if isinstance(host_vars, Mapping):
        from opskit.inventory.model import Host as _Host

        found = _Host(host, dict(host_vars))
    else:
        found = host_vars
    from opskit import settings

    cfg = settings.of(found, "health")  # InventoryError: file, line, key; did you mean
    levels: dict[str, tuple[float | None, float | None]] = {}
    for key, (warn, crit, _) in DEFAULTS.items():
        given = getattr(cfg, key)  # None: not set; its fields default to the built-in levels
        levels[key] = (warn, crit) if given is None else (given.warn, given.crit)
    return Thresholds(levels)


def _mentions_health(host_vars: Mapping[str, Any]) -> bool:
    """``health`` is set, or a var is close enough to be its misspelling (``helth``), which
    settings.of then names instead of ignoring it."""
    return any(var == "health" or difflib.get_close_matches(var, ["health"], n=1, cutoff=0.8)
               for var in host_vars if isinstance(var, str))


def parse_overrides(pairs: Iterable[str], flag: str) -> dict[str, float | None]:
    """``KEY=V`` pairs from --warn/--crit (``KEY=off`` turns a level off)."""
    out: dict[str, float | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"{flag} {pair!r} is not KEY=VALUE",
                             hint=f"e.g. {flag} disk_percent=85")
        if value.strip().lower() in ("off", "none", ""):
            out[_known(key.strip())] = None
            continue
        try:
            out[_known(key.strip())] = float(value)
        except ValueError:
            raise UsageError(f"{flag} {pair!r}: {value!r} is not a number",
                             hint=f"e.g. {flag} {key}=85") from None
    return out


@dataclass
class Check:
    key: str
    target: str  # what was measured: a mount, a device, a service; "" for the machine
    value: float | None
    warn: float | None
    crit: float | None
    status: int
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.key} {self.target}".strip()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status_name": NAMES[self.status]}

    def text(self) -> str:
        if self.value is None:
            return f"{self.label}: {self.detail or 'unknown'}"
        limit = self.crit if self.status == NAGIOS_CRITICAL else self.warn
        flagged = self.status in (NAGIOS_WARNING, NAGIOS_CRITICAL) and limit is not None
        return (f"{self.label} {self.value:g}" + (f" (>= {limit:g})" if flagged else "")
                + (f": {self.detail}" if self.detail else ""))


def level(value: float, warn: float | None, crit: float | None) -> int:
    if crit is not None and value >= crit:
        return NAGIOS_CRITICAL
    if warn is not None and value >= warn:
        return NAGIOS_WARNING
    return NAGIOS_OK


def worst(statuses: Iterable[int]) -> int:
    return max(statuses, key=_SEVERITY.__getitem__, default=NAGIOS_OK)


def evaluate(sample: Mapping[str, Any], t: Thresholds) -> list[Check]:
    """Every check of one sample (its ``working_set`` entries included, when present)."""
    out: list[Check] = []

    def add(key: str, target: str, value: float | None, detail: str = "") -> None:
        warn, crit = t.get(key)
        if value is None:
            return
        out.append(Check(key, target, round(value, 2), warn, crit, level(value, warn, crit),
                         detail))

    load, cpus = sample.get("load") or [0.0], max(1, int(sample.get("cpu_count") or 1))
    add("load_per_cpu", "", load[0] / cpus, f"load {load[0]:.2f} on {cpus} CPUs")
    add("cpu_percent", "", sample.get("cpu_percent"))
    add("memory_percent", "", (sample.get("memory") or {}).get("percent"))
    swap = sample.get("swap") or {}
    if swap.get("total"):
        add("swap_percent", "", swap.get("percent"))
    for d in sample.get("disks") or []:
        add("disk_percent", d["mount"], d.get("percent"))
        add("inode_percent", d["mount"], d.get("inodes_percent"))
    io = sample.get("disk_io") or []
    if io:
        busiest = max(io, key=lambda r: r.get("busy_percent") or 0)
        add("disk_busy_percent", busiest["device"], busiest.get("busy_percent"))
    net = sample.get("net") or []
    if net:
        add("net_errors_per_s", "", sum(n.get(k, 0) for n in net for k in
                                        ("errin_s", "errout_s", "dropin_s", "dropout_s")))
    fds = sample.get("fds")
    if fds:
        add("fd_percent", "", fds.get("percent"), f"{fds['open']} of {fds['max']}")
    fw = sample.get("fd_worst")
    if fw:
        add("process_fd_percent", f"{fw['name']}[{fw['pid']}]", fw.get("percent"),
            f"{fw['open']} of {fw['limit']}")
    for ws in sample.get("working_set") or []:
        warn, crit = t.get("working_set_percent")
        if ws.get("error"):
            out.append(Check("working_set_percent", ws["service"], None, warn, crit, NAGIOS_UNKNOWN,
                             ws["error"]))
        else:
            add("working_set_percent", ws["service"], ws["percent_of_ram"], ws.get("detail", ""))
    return out


def status_line(name: str, checks: Sequence[Check], unknown: str | None = None) -> str:
    """Nagios plugin output: ``HEALTH WARNING - problems | perfdata``."""
    st = NAGIOS_UNKNOWN if unknown else worst(c.status for c in checks)
    bad = [c for c in checks if c.status != NAGIOS_OK]
    bad.sort(key=lambda c: -_SEVERITY[c.status])
    summary = unknown or ("; ".join(c.text() for c in bad[:5]) or f"{len(checks)} checks ok")
    perf = " ".join(_perf(c) for c in checks if c.value is not None)
    return f"{name} {NAMES[st]} - {summary}" + (f" | {perf}" if perf else "")


def _perf(c: Check) -> str:
    label = c.label.replace("'", "").replace(" ", "_")
    lv = ["" if v is None else f"{v:g}" for v in (c.warn, c.crit)]
    return f"'{label}'={c.value:g};{lv[0]};{lv[1]}"
