"""Munin plugin protocol: load, memory, disk, inodes and opskit's own actions as multigraph.

``config`` describes the graphs (graph_title, graph_vlabel, graph_category, FIELD.label,
FIELD.type, FIELD.warning/critical); ``fetch`` prints ``FIELD.value N``; both in
``multigraph NAME`` sections. :func:`main` is the ``opskit-munin`` console script, meant to be
symlinked into /etc/munin/plugins/ and called by munin-node with argv[1] = config | (nothing).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opskit import journal
from opskit.health import checks as ck

CATEGORY = "opskit"
# Journal commands counted per field (dry runs are not actions).
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "deploys": ("deploys", ("deploy",)),
    "rollbacks": ("rollbacks", ("rollback",)),
    "snapshots": ("snapshots created", ("snapshot create",)),
    "failovers": ("failovers and promotions", ("pg failover", "redis promote")),
    "switchovers": ("switchovers", ("pg switchover", "redis switchover")),
}
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Field:
    name: str
    label: str
    value: float | int | None
    type: str = "GAUGE"
    warning: float | None = None
    critical: float | None = None
    min: float | None = None
    info: str | None = None


@dataclass
class Graph:
    name: str
    title: str
    vlabel: str
    fields: list[Field]
    args: str | None = None
    info: str | None = None
    period: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def field_name(text: str, taken: set[str]) -> str:
    """Munin's clean_fieldname: [A-Za-z_][A-Za-z0-9_]*; "/" is "root"; unique in its graph."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text.strip("/")) or "root"
    if not re.match(r"[A-Za-z_]", name):
        name = "_" + name
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _scaled(level: float | None, factor: float) -> float | None:
    return None if level is None else round(level * factor, 2)


def action_counts(entries: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(ACTIONS, 0)
    for e in entries:
        if e.get("dry_run"):
            continue
        for key, (_label, commands) in ACTIONS.items():
            if e.get("command") in commands:
                counts[key] += 1
    return counts


def graphs(sample: Mapping[str, Any], t: ck.Thresholds,
           entries: Iterable[Mapping[str, Any]]) -> list[Graph]:
    cpus = max(1, int(sample.get("cpu_count") or 1))
    load = sample["load"]
    lw, lc = t.get("load_per_cpu")
    out = [Graph("opskit_load", "Load average", "load", [
        Field("load1", "1 minute", load[0], warning=_scaled(lw, cpus),
              critical=_scaled(lc, cpus), min=0),
        Field("load5", "5 minutes", load[1], min=0),
        Field("load15", "15 minutes", load[2], min=0),
    ], args="--base 1000 -l 0", info=f"warning/critical: health.load_per_cpu x {cpus} CPUs")]
    mem, swap = sample["memory"], sample["swap"]
    mw, mc = t.get("memory_percent")
    total = mem["total"] / 100
    out.append(Graph("opskit_memory", "Memory usage", "bytes", [
        Field("used", "used (total - available)", mem["used"], warning=_scaled(mw, total),
              critical=_scaled(mc, total), min=0),
        Field("cached", "page cache", mem.get("cached", 0), min=0),
        Field("available", "available", mem["available"], min=0),
        Field("swap_used", "swap used", swap["used"], min=0),
    ], args=f"--base 1024 -l 0 --upper-limit {mem['total']}"))
    for key, graph, title, pct in (("disk_percent", "opskit_disk", "Disk usage in percent",
                                    "percent"),
                                   ("inode_percent", "opskit_inodes", "Inode usage in percent",
                                    "inodes_percent")):
        warn, crit = t.get(key)
        taken: set[str] = set()
        fields = [Field(field_name(d["mount"], taken), d["mount"], d[pct], warning=warn,
                        critical=crit, min=0)
                  for d in sample["disks"] if d.get(pct) is not None]
        out.append(Graph(graph, title, "%", fields, args="--upper-limit 100 -l 0"))
    counts = action_counts(entries)
    out.append(Graph("opskit_actions", "opskit actions", "actions per ${graph_period}", [
        Field(key, label, counts[key], type="DERIVE", min=0,
              info=f"journal entries: {', '.join(commands)}")
        for key, (label, commands) in ACTIONS.items()
    ], args="--base 1000 -l 0", period="hour",
        info="from opskit's journal ($OPSKIT_JOURNAL); dry runs not counted"))
    return out


def _num(v: float | int) -> str:
    # Plain decimals: no exponent notation (2.27e+10) in thresholds or values.
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4f}".rstrip("0").rstrip(".")
    return str(int(v))


def config_text(gs: Sequence[Graph]) -> str:
    lines: list[str] = []
    for g in gs:
        lines += [f"multigraph {g.name}", f"graph_title {g.title}", f"graph_vlabel {g.vlabel}",
                  f"graph_category {CATEGORY}"]
        if g.args:
            lines.append(f"graph_args {g.args}")
        if g.period:
            lines.append(f"graph_period {g.period}")
        if g.info:
            lines.append(f"graph_info {g.info}")
        lines.append("graph_order " + " ".join(f.name for f in g.fields))
        for f in g.fields:
            lines += [f"{f.name}.label {f.label}", f"{f.name}.type {f.type}"]
            for attr in ("min", "warning", "critical"):
                v = getattr(f, attr)
                if v is not None:
                    lines.append(f"{f.name}.{attr} {_num(v)}")
            if f.info:
                lines.append(f"{f.name}.info {f.info}")
    return "\n".join(lines) + "\n"


def fetch_text(gs: Sequence[Graph]) -> str:
    lines: list[str] = []
    for g in gs:
        lines.append(f"multigraph {g.name}")
        lines += [f"{f.name}.value {'U' if f.value is None else _num(f.value)}" for f in g.fields]
    return "\n".join(lines) + "\n"


def local_graphs(t: ck.Thresholds) -> list[Graph]:
    from opskit.health import local  # psutil is imported only when sampling

    sample = local.collect(interval=0, processes=False)
    return graphs(sample, t, journal.read())


def thresholds_from_env() -> ck.Thresholds:
    """Munin passes settings as environment (plugin-conf.d ``env.NAME``): the thresholds are
    those of inventory host $OPSKIT_MUNIN_HOST in $OPSKIT_INVENTORY, when both are set."""
    inv, host = os.environ.get("OPSKIT_INVENTORY"), os.environ.get("OPSKIT_MUNIN_HOST")
    if not (inv and host):
        return ck.Thresholds()
    from opskit import inventory
    from opskit.health.survey import inventory_host

    return ck.from_vars(inventory_host(inventory.load(inv), host))  # errors: file, line


def main(argv: Sequence[str] | None = None) -> int:
    """``opskit-munin [config|autoconf|cap]``: what munin-node runs (nothing = fetch)."""
    args = list(sys.argv[1:] if argv is None else argv)
    mode = args[0] if args else "fetch"
    if mode == "autoconf":
        print("yes")
        return 0
    if mode == "cap":
        print("multigraph")
        return 0
    try:
        gs = local_graphs(thresholds_from_env())
    except Exception as exc:  # munin shows stderr in its log; keep it to one line
        print(f"opskit-munin: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(config_text(gs) if mode == "config" else fetch_text(gs))
    return 0


def validate(config: str, fetch: str) -> list[str]:
    """Problems with a config/fetch pair under the plugin protocol (empty list: valid)."""
    problems: list[str] = []

    def sections(text: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        current = None
        for line in text.splitlines():
            if line.startswith("multigraph "):
                current = line.split(None, 1)[1]
                if current in out:
                    problems.append(f"multigraph {current} twice")
                out[current] = []
            elif current is None:
                problems.append(f"line outside a multigraph section: {line!r}")
            else:
                out[current].append(line)
        return out

    conf, got = sections(config), sections(fetch)
    if list(conf) != list(got):
        problems.append(f"multigraph names differ: config {list(conf)} fetch {list(got)}")
    for name, lines in conf.items():
        if not _FIELD.match(name):
            problems.append(f"bad multigraph name {name!r}")
        keys = dict(line.split(" ", 1) if " " in line else (line, "") for line in lines)
        if "graph_title" not in keys:
            problems.append(f"{name}: no graph_title")
        labels = {k.split(".")[0] for k in keys if k.endswith(".label")}
        for k in keys:
            if "." in k and k.split(".")[0] not in labels:
                problems.append(f"{name}: {k} has no .label")
        for f in labels:
            if not _FIELD.match(f):
                problems.append(f"{name}: bad field name {f!r}")
        values = {line.split(".")[0] for line in got.get(name, []) if ".value " in line}
        if values != labels:
            problems.append(f"{name}: fields with .label {sorted(labels)} but .value "
                            f"{sorted(values)}")
    return problems


def cli_main() -> None:
    """Console-script entry point (``opskit-munin``)."""
    sys.exit(main())
