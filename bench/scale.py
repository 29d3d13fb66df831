"""opskit's fan-out as the fleet grows: `exec -- true` on 1, 10, 50, 100 and 200 lab hosts.

One 200-host lab (real sshd per host on the same 2 cores as the operator); per size one
warm-up and 3 timed runs of `opskit exec --yes --json -f 50 -l FIRST_N -- true`. Reported:
median wall time, the fan-out itself (opskit's own `duration`), client CPU-s per host
(user + sys of the opskit process, from the children's rusage) and the peak RSS of the
opskit process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml
from common import children_cpu, lab_down, lab_up, run, write_section

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1, 10, 50, 100, 200)
FORKS = 50  # opskit's default


def inventory_of(lab_yml: Path, names: list[str], out: Path) -> Path:
    """The lab inventory with only the first N hosts (all groups kept, others emptied)."""
    data = yaml.safe_load(lab_yml.read_text())
    keep = set(names)

    def prune(group: dict) -> None:  # type: ignore[type-arg]
        hosts = group.get("hosts") or {}
        group["hosts"] = {h: v for h, v in hosts.items() if h in keep}
        for child in (group.get("children") or {}).values():
            if child:
                prune(child)

    prune(data["all"])
    out.write_text(yaml.safe_dump(data))
    return out


def one(inv: Path, n: int) -> dict[str, float]:
    before = children_cpu()
    t0 = time.perf_counter()
    done = run([sys.executable, "-m", "opskit", "-i", str(inv), "exec", "--yes", "--json",
                "-f", str(FORKS), "--", "true"], env=dict(os.environ), timeout=600)
    wall = time.perf_counter() - t0
    cpu = children_cpu() - before
    doc = json.loads(done.out)
    if doc["summary"]["ok"] != n:
        raise RuntimeError(f"{n} hosts: {doc['summary']}")
    return {"wall": wall, "fanout": float(doc.get("duration", 0.0)), "cpu": cpu,
            "rss_mib": done.peak_rss_mib}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--port", type=int, default=2622)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="opskit-bench-scale-"))
    t0 = time.perf_counter()
    lab = lab_up(max(SIZES), args.port, root)
    up_seconds = time.perf_counter() - t0
    rows = []
    down_seconds = None
    try:
        for n in SIZES:
            inv = inventory_of(lab.inventory, lab.names[:n], root / f"inv-{n}.yml")
            one(inv, n)  # warm-up
            runs = [one(inv, n) for _ in range(args.repeat)]
            row = {"hosts": n, **{k: statistics.median(r[k] for r in runs)
                                  for k in ("wall", "fanout", "cpu")},
                   "rss_mib": max(r["rss_mib"] for r in runs)}
            print(f"{n:>4} hosts: {row['wall']:.2f} s wall, {row['cpu'] / n * 1000:.1f} ms "
                  f"client CPU per host, peak RSS {row['rss_mib']:.0f} MiB", file=sys.stderr)
            rows.append(row)
        t0 = time.perf_counter()
        lab_down(lab.state_dir, root)
        down_seconds = time.perf_counter() - t0
        write_section(args.out, report(rows, args.repeat, up_seconds, down_seconds))
    finally:
        if down_seconds is None:
            lab_down(lab.state_dir, root)


def report(rows: list[dict[str, float]], repeat: int, up_seconds: float,
           down_seconds: float) -> str:
    lines = [
        "## Scale: opskit's fan-out from 1 to 200 hosts", "",
        "`opskit exec --yes --json -f 50 -- true` on the first N hosts of a 200-host lab (one "
        "sshd per host, on the same 2 cores as the operator: wall time includes the servers' "
        f"work). One warm-up, then {repeat} timed runs per size; medians (peak RSS: the "
        "largest). `bench/scale.py`.", "",
        "| hosts | wall s | fan-out s | client CPU-s | client CPU ms per host | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        n = r["hosts"]
        lines.append(f"| {n:.0f} | {r['wall']:.2f} | {r['fanout']:.2f} | {r['cpu']:.2f} | "
                     f"{r['cpu'] / n * 1000:.1f} | {r['rss_mib']:.0f} |")
    lines += ["", "The fixed part (interpreter start, imports, inventory) is about the 1-host "
              "row; client CPU per host falls as that is spread over more hosts.", "",
              f"The {max(SIZES)}-host lab itself: `lab up` from nothing took {up_seconds:.1f} s "
              f"(sshd, namespaces and the services of the first hosts), `lab down` "
              f"{down_seconds:.1f} s.", "",
              f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
