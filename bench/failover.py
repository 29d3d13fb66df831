"""RTO of `opskit pg failover` and `opskit redis promote`: from the command's start until a
client's write succeeds on the new primary / master.

A 10-host lab (db1 primary, db2/db3 standbys, PgBouncer on lb1). Per run: the cluster is
reset to its initial topology, a client starts writing through PgBouncer every 20 ms (a new
connection each time, as after a pool reset), the primary's postgres is stopped
(`-m immediate`: a crash), then `opskit pg failover --yes` runs. RTO = first successful write
after the command started. The command's own per-step timings come from its JSON.

Redis: per run the lab's Redis is reset (redis1 master, redis2/redis3 replicas), a client sends
SET to both replicas every 10 ms (refused while they are read-only replicas), the master's
redis-server is killed (SIGKILL), then `opskit redis promote -l redis --yes` runs. RTO = first
SET accepted after the command started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from common import lab_down, lab_up, write_section

from opskit.lab import pg_service, redis_service

ROOT = Path(__file__).resolve().parents[1]
GOAL = 10.0
REDIS_GOAL = 2.0


def resp_set(addr: str, port: int) -> bool:
    """SET over a raw socket (no client library): True when the server accepted the write."""
    try:
        with socket.create_connection((addr, port), timeout=0.5) as sock:
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$5\r\nprobe\r\n$1\r\n1\r\n")
            return sock.recv(64).startswith(b"+OK")
    except OSError:
        return False


def redis_run(lab: Any, inv: Path) -> dict[str, Any]:
    redis_service.reset_redis(lab.state_dir)
    addr = dict(zip(lab.names, lab.addresses, strict=True))
    stop, ok = threading.Event(), []

    def writer() -> None:
        while not stop.is_set():
            if any(resp_set(addr[n], 6379) for n in ("redis2", "redis3")):
                ok.append(time.monotonic())
            time.sleep(0.01)

    with socket.create_connection((addr["redis1"], 6379), timeout=2) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        time.sleep(0.2)
        text = sock.recv(65536).decode(errors="replace")
    pid = int(text.split("process_id:")[1].split()[0])
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), "redis", "promote",
                           "-l", "redis", "--yes", "--json"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    t_cmd = time.monotonic() - t0
    deadline = time.monotonic() + 5
    while not [t for t in ok if t > t0] and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join()
    after = [t for t in ok if t > t0]
    if proc.returncode != 0 or not after:
        raise RuntimeError(f"redis promote failed (rc {proc.returncode}): {proc.stderr[-500:]}")
    doc = json.loads(proc.stdout)
    return {"rto": after[0] - t0, "command": t_cmd, "target": doc.get("target"),
            "steps": {s["title"].split(" (")[0]: s["seconds"] for s in doc.get("steps", [])}}


class Writer:
    """Writes through PgBouncer until stopped; remembers when each write succeeded."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.ok: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop.is_set():
            try:
                with psycopg.connect(host=self.host, port=self.port, dbname="app", user="app",
                                     connect_timeout=1, autocommit=True) as c:
                    c.execute("select txid_current()")
                self.ok.append(time.monotonic())
            except psycopg.Error:
                pass
            time.sleep(0.02)


def host_pid(state_dir: Path, name: str) -> int:
    import opskit.lab as labmod
    pid = labmod.host_pid(name, state_dir=state_dir)
    assert pid, name
    return pid


def one_run(lab: Any, inv: Path, bouncer: str) -> dict[str, Any]:
    pg_service.reset_cluster(lab.state_dir)
    primary = "db1"
    w = Writer(bouncer, 6432)
    w.thread.start()
    time.sleep(0.5)
    subprocess.run(["nsenter", "-t", str(host_pid(lab.state_dir, primary)), "-m", "-u", "--",
                    "runuser", "-u", "postgres", "--", f"{pg_service.BINDIR}/pg_ctl",
                    "-D", pg_service.DATA_DIR, "-m", "immediate", "-w", "stop"],
                   check=True, capture_output=True)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), "pg", "failover",
                           "-l", "db", "--yes", "--json"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    t_cmd = time.monotonic() - t0
    deadline = time.monotonic() + 10
    while not [t for t in w.ok if t > t0] and time.monotonic() < deadline:
        time.sleep(0.05)
    w.stop.set()
    w.thread.join()
    after = [t for t in w.ok if t > t0]
    doc = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    if proc.returncode != 0 or not after:
        raise RuntimeError(f"failover failed (rc {proc.returncode}): {proc.stderr[-500:]}")
    return {"rto": after[0] - t0, "command": t_cmd, "target": doc.get("target"),
            "steps": {s["title"].split(" (")[0].split(":")[0]: s["seconds"]
                      for s in doc.get("steps", [])}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--port", type=int, default=2922)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="opskit-bench-failover-"))
    lab = lab_up(10, args.port, root)
    try:
        bouncer = lab.addresses[lab.names.index("lb1")]
        runs = []
        for i in range(args.repeat):
            r = one_run(lab, lab.inventory, bouncer)
            print(f"run {i + 1}/{args.repeat}: RTO {r['rto']:.2f} s, command {r['command']:.2f} s,"
                  f" promoted {r['target']}", file=sys.stderr)
            runs.append(r)
        rruns = []
        for i in range(args.repeat):
            r = redis_run(lab, lab.inventory)
            print(f"redis run {i + 1}/{args.repeat}: RTO {r['rto']:.2f} s, command "
                  f"{r['command']:.2f} s, promoted {r['target']}", file=sys.stderr)
            rruns.append(r)
        write_section(args.out, report(runs) + redis_report(rruns))
    finally:
        lab_down(lab.state_dir, root)


def report(runs: list[dict[str, Any]]) -> str:
    rto = [r["rto"] for r in runs]
    cmd = [r["command"] for r in runs]
    med = statistics.median(rto)
    lines = [
        "## Failover: RTO of `opskit pg failover` and `opskit redis promote` in the lab", "",
        "### PostgreSQL", "",
        "A 10-host lab: PostgreSQL 15 primary db1 with standbys db2 and db3 (repmgr), PgBouncer "
        "on lb1. Per run: the cluster reset to that topology, a client writing through "
        "PgBouncer every 20 ms (a new connection each time), the primary's postgres stopped "
        "with `pg_ctl -m immediate` (a crash), then `opskit pg failover -l db --yes --json`. "
        "RTO = from the command's start to the client's first successful write after it. "
        f"{len(runs)} runs. `bench/failover.py`.", "",
        "| | median s | min s | max s |", "|---|---:|---:|---:|",
        f"| RTO (command start → first write through PgBouncer) | {med:.2f} | {min(rto):.2f} | "
        f"{max(rto):.2f} |",
        f"| the whole command (incl. final status) | {statistics.median(cmd):.2f} | "
        f"{min(cmd):.2f} | {max(cmd):.2f} |", "",
        "Per step (median s):", "",
        "| step | median s |", "|---|---:|",
    ]
    names = list(runs[0]["steps"])
    for n in names:
        vals = [r["steps"].get(n) for r in runs if r["steps"].get(n) is not None]
        lines.append(f"| {n} | {statistics.median(vals):.2f} |")
    lines += ["", f"Goal: RTO < {GOAL:g} s in the lab: **{'met' if med < GOAL else 'not met'}** "
              f"(median {med:.2f} s). Python start and imports of the CLI are part of it.", "",
              f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", ""]
    return "\n".join(lines)


def redis_report(runs: list[dict[str, Any]]) -> str:
    rto = [r["rto"] for r in runs]
    cmd = [r["command"] for r in runs]
    med = statistics.median(rto)
    lines = [
        "", "### Redis", "",
        "The lab's Redis: redis1 master, redis2 and redis3 replicas. Per run: the topology "
        "reset, a client sending SET to both replicas every 10 ms over a raw socket (refused "
        "while they are read-only), the master's redis-server killed (SIGKILL), then `opskit "
        "redis promote -l redis --yes --json`. RTO = from the command's start to the first "
        f"accepted SET. {len(runs)} runs.", "",
        "| | median s | min s | max s |", "|---|---:|---:|---:|",
        f"| RTO (command start → first write accepted) | {med:.2f} | {min(rto):.2f} | "
        f"{max(rto):.2f} |",
        f"| the whole command (incl. re-pointing, publish, final topology) | "
        f"{statistics.median(cmd):.2f} | {min(cmd):.2f} | {max(cmd):.2f} |", "",
        "| step | median s |", "|---|---:|",
    ]
    for n in runs[0]["steps"]:
        vals = [r["steps"][n] for r in runs if n in r["steps"]]
        lines.append(f"| {n} | {statistics.median(vals):.2f} |")
    lines += ["", f"Goal: RTO < {REDIS_GOAL:g} s in the lab: "
              f"**{'met' if med < REDIS_GOAL else 'not met'}** (median {med:.2f} s).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
