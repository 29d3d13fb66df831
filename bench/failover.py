"""Failover in the lab: the RTO of `opskit pg failover` and `opskit redis promote`, and the
client-visible outage of pg failover, pg switchover, redis promote and redis switchover.

A 10-host lab (db1 primary, db2/db3 standbys, PgBouncer on lb1; redis1 master, redis2/redis3
replicas). Per run the service is reset to that topology and a client writes all along:

- PostgreSQL: a new connection through PgBouncer for each write (`select txid_current()`, as
  after a pool reset), every 20 ms. Failover: the primary's postgres is stopped (`-m
  immediate`: a crash), then `opskit pg failover -l db --yes` runs. Switchover: `opskit pg
  switchover -l db --to db2 --yes` with the primary alive.
- Redis: against the group, as a client that looks for the master: SET to redis1, redis2,
  redis3 in turn over a raw socket (a new connection each, AUTH first, 0.5 s timeout) until
  one says +OK, every 10 ms. Promote: the master's redis-server killed (SIGKILL), then
  `opskit redis promote -l redis --yes`. Switchover: `opskit redis switchover -l redis
  --to redis2:6379 --yes`.

Client-visible outage = the longest time the client went without a successful write, from
the end of the last write that succeeded before the event to the end of the first that
succeeded after it: a write that fails, times out or waits held (PgBouncer's KILL/PAUSE,
Redis's FAILOVER pause) counts as outage until one succeeds. It is at most one client period
(20 / 10 ms) more than "first failed write to first successful write". RTO = from the
command's start to the first successful write after it (failover, promote). The commands'
own per-step timings come from their JSON. For pg failover also the time from PgBouncer's
RESUME (its log's line, on the same clock) to the client's first write: what PgBouncer itself
adds after opskit let clients go (``server_login_retry`` after the crash's failed logins).

The clients cannot hide an outage behind their own back-off: each retries every 20 / 10 ms,
a write held by PgBouncer (KILL/RESUME) or by a Redis pause is let go when the server is, and
the Redis client is refused at once by a killed master (a new connection each time).
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
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from common import lab_down, lab_up, startup_time, write_section

import opskit.lab as labmod
from opskit.lab import pg_service, pgbouncer_service, redis_secrets, redis_service

ROOT = Path(__file__).resolve().parents[1]
GOAL = 10.0  # RTO of pg failover, s
REDIS_GOAL = 2.0  # RTO of redis promote, s
PG_OUTAGE_GOAL = 1.0  # client-visible outage of pg failover and switchover, s (issue 18)
REDIS_OUTAGE_GOAL = 0.5  # of redis promote and switchover, s


class Writes:
    """A client writing in a thread until stopped: each attempt's start, end and outcome."""

    def __init__(self, attempt: Callable[[], bool], period: float) -> None:
        self.attempt, self.period = attempt, period
        self.log: list[tuple[float, float, bool]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            ok = self.attempt()
            self.log.append((t, time.monotonic(), ok))
            time.sleep(self.period)

    def ok(self) -> list[float]:
        return [end for _, end, ok in self.log if ok]

    def first_ok_after(self, t0: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            after = [t for t in self.ok() if t > t0]
            if after:
                return after[0]
            time.sleep(0.02)
        return None

    def finish(self, linger: float = 0.5) -> None:
        time.sleep(linger)  # a gap after the command (a late blip) would show too
        self.stop.set()
        self.thread.join()

    def outage(self, since: float) -> tuple[float, int]:
        """The longest gap between successful writes from the last before ``since`` on, and
        the number of attempts that failed meanwhile."""
        ok = self.ok()
        before = [t for t in ok if t <= since]
        ends = ([before[-1]] if before else []) + [t for t in ok if t > since]
        if len(ends) < 2:
            raise RuntimeError("no successful write on one side of the event")
        gap = max(b - a for a, b in zip(ends, ends[1:], strict=False))
        failed = sum(1 for t, _, ok in self.log if not ok and t >= (ends[0]))
        return gap, failed


def opskit(inv: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), *args, "--yes",
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    return proc, time.monotonic() - t0


def step_times(doc: dict[str, Any]) -> dict[str, float]:
    return {s["title"].split(" (")[0].split(":")[0]: s["seconds"] for s in doc.get("steps", [])}


def document(proc: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (rc {proc.returncode}): {proc.stderr[-500:]}")
    return dict(json.loads(proc.stdout))


# ---------------------------------------------------------------- PostgreSQL

def pg_write(host: str, port: int) -> Callable[[], bool]:
    def attempt() -> bool:
        try:
            with psycopg.connect(host=host, port=port, dbname="app", user="app",
                                 connect_timeout=1, autocommit=True) as c:
                c.execute("select txid_current()")
            return True
        except psycopg.Error:
            return False
    return attempt


def host_pid(state_dir: Path, name: str) -> int:
    import opskit.lab as labmod
    pid = labmod.host_pid(name, state_dir=state_dir)
    assert pid, name
    return pid


def bouncer_log(lab: Any) -> list[str]:
    done = labmod.run_in_host("lb1", ["cat", pgbouncer_service.BOUNCER_LOG],
                              state_dir=lab.state_dir, timeout=30)
    return done.stdout.splitlines()


def resumed_at(lines: list[str]) -> float | None:
    """When PgBouncer logged its last RESUME, on time.monotonic()'s clock."""
    stamps = [line.split(" UTC ")[0] for line in lines if "RESUME" in line and
              "command issued" in line]
    if not stamps:
        return None
    wall = datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S.%f").replace(
        tzinfo=timezone.utc).timestamp()
    return wall - time.time() + time.monotonic()


def pg_failover_run(lab: Any, bouncer: str) -> dict[str, Any]:
    pg_service.reset_cluster(lab.state_dir)
    seen = len(bouncer_log(lab))
    w = Writes(pg_write(bouncer, 6432), 0.02)
    time.sleep(0.5)
    crash = time.monotonic()
    subprocess.run(["nsenter", "-t", str(host_pid(lab.state_dir, "db1")), "-m", "-u", "--",
                    "runuser", "-u", "postgres", "--", f"{pg_service.BINDIR}/pg_ctl",
                    "-D", pg_service.DATA_DIR, "-m", "immediate", "-w", "stop"],
                   check=True, capture_output=True)
    t0 = time.monotonic()
    proc, t_cmd = opskit(lab.inventory, "pg", "failover", "-l", "db")
    first = w.first_ok_after(t0, 10)
    w.finish()
    doc = document(proc, "pg failover")
    if first is None:
        raise RuntimeError("no write through PgBouncer after the failover")
    outage, failed = w.outage(crash)
    resume = resumed_at(bouncer_log(lab)[seen:])
    if resume is None:
        raise RuntimeError("no RESUME in PgBouncer's log")
    return {"rto": first - t0, "outage": outage, "failed": failed, "command": t_cmd,
            "after_resume": first - resume, "target": doc.get("target"),
            "steps": step_times(doc)}


def pg_switchover_run(lab: Any, bouncer: str) -> dict[str, Any]:
    pg_service.reset_cluster(lab.state_dir)
    w = Writes(pg_write(bouncer, 6432), 0.02)
    time.sleep(0.5)
    t0 = time.monotonic()
    proc, t_cmd = opskit(lab.inventory, "pg", "switchover", "-l", "db", "--to", "db2")
    w.finish()
    doc = document(proc, "pg switchover")
    outage, failed = w.outage(t0)
    return {"outage": outage, "failed": failed, "command": t_cmd, "target": doc.get("target"),
            "steps": step_times(doc)}


# ---------------------------------------------------------------- Redis

def resp(*words: str) -> bytes:
    """One command in RESP (the password of AUTH is data on the socket, never an argv)."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def resp_set(addr: str, port: int, password: str) -> bool:
    """AUTH, then SET over a raw socket (no client library): True when the server accepted
    the write (group main wants the default user's password)."""
    try:
        with socket.create_connection((addr, port), timeout=0.5) as sock:
            sock.sendall(resp("AUTH", password) + resp("SET", "probe", "1"))
            got = b""
            while got.count(b"\r\n") < 2:
                chunk = sock.recv(64)
                if not chunk:
                    return False
                got += chunk
            return got.split(b"\r\n")[1].startswith(b"+OK")
    except OSError:
        return False


def group_write(addrs: Sequence[str], password: str) -> Callable[[], bool]:
    """A client of the group: SET on each member in turn until one takes it."""
    return lambda: any(resp_set(a, 6379, password) for a in addrs)


def redis_pid(addr: str, password: str) -> int:
    with socket.create_connection((addr, 6379), timeout=2) as sock:
        sock.sendall(resp("AUTH", password) + resp("INFO", "server"))
        time.sleep(0.2)
        text = sock.recv(65536).decode(errors="replace")
    return int(text.split("process_id:")[1].split()[0])


def redis_password(lab: Any) -> str:
    """Group main's default-user password, from the lab's state dir."""
    return redis_secrets.passwords(lab.state_dir).default


def redis_addrs(lab: Any) -> list[str]:
    addr = dict(zip(lab.names, lab.addresses, strict=True))
    return [addr[n] for n in ("redis1", "redis2", "redis3")]


def redis_promote_run(lab: Any) -> dict[str, Any]:
    redis_service.reset_redis(lab.state_dir)
    addrs = redis_addrs(lab)
    pid = redis_pid(addrs[0], redis_password(lab))
    w = Writes(group_write(addrs, redis_password(lab)), 0.01)
    time.sleep(0.3)
    crash = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    proc, t_cmd = opskit(lab.inventory, "redis", "promote", "-l", "redis", "--group", "main")
    first = w.first_ok_after(t0, 5)
    w.finish()
    doc = document(proc, "redis promote")
    if first is None:
        raise RuntimeError("no write accepted after the promote")
    outage, failed = w.outage(crash)
    return {"rto": first - t0, "outage": outage, "failed": failed, "command": t_cmd,
            "target": doc.get("target"), "steps": step_times(doc)}


def redis_switchover_run(lab: Any) -> dict[str, Any]:
    redis_service.reset_redis(lab.state_dir)
    w = Writes(group_write(redis_addrs(lab), redis_password(lab)), 0.01)
    time.sleep(0.3)
    t0 = time.monotonic()
    proc, t_cmd = opskit(lab.inventory, "redis", "switchover", "-l", "redis", "--to",
                         "redis2:6379")
    w.finish()
    doc = document(proc, "redis switchover")
    outage, failed = w.outage(t0)
    return {"outage": outage, "failed": failed, "command": t_cmd, "target": doc.get("target"),
            "steps": step_times(doc)}


# ---------------------------------------------------------------- the run and the report

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
        kinds: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("pg failover", lambda: pg_failover_run(lab, bouncer)),
            ("pg switchover", lambda: pg_switchover_run(lab, bouncer)),
            ("redis promote", lambda: redis_promote_run(lab)),
            ("redis switchover", lambda: redis_switchover_run(lab))]
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k, _ in kinds}
        for i in range(args.repeat):  # interleaved: a slow spell of the machine hits all
            for name, once in kinds:
                r = once()
                print(f"{name} {i + 1}/{args.repeat}: outage {r['outage']:.3f} s"
                      + (f", RTO {r['rto']:.2f} s" if "rto" in r else "")
                      + f", command {r['command']:.2f} s, target {r['target']}",
                      file=sys.stderr)
                runs[name].append(r)
        startup = startup_time(dict(os.environ))
        write_section(args.out, report(runs, startup))
    finally:
        lab_down(lab.state_dir, root)


def _row(label: str, values: Sequence[float], spec: str = ".2f") -> str:
    return (f"| {label} | {statistics.median(values):{spec}} | {min(values):{spec}} | "
            f"{max(values):{spec}} |")


def _steps(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["| step | median s |", "|---|---:|"]
    for n in runs[0]["steps"]:
        vals = [r["steps"][n] for r in runs if n in r["steps"]]
        lines.append(f"| {n} | {statistics.median(vals):.2f} |")
    return lines


def _verdict(value: float, goal: float) -> str:
    return (f"{value:.2f} s, {value / goal:.2f} of the goal: "
            f"**{'met' if value < goal else 'not met'}**")


def _until(r: dict[str, Any], last: str) -> float:
    """A run's step seconds summed up to and including the first step named ``last...``."""
    total = 0.0
    for name, seconds in r["steps"].items():
        total += seconds
        if name.startswith(last):
            break
    return total


def _where_it_goes(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    pg, rp = runs["pg failover"], runs["redis promote"]
    med = statistics.median
    steps = med(_until(r, "re-point") for r in pg)
    start = med(r["rto"] - _until(r, "re-point") - r["after_resume"] for r in pg)
    r_steps = med(_until(r, "promote") for r in rp)
    r_start = med(r["rto"] - _until(r, "promote") for r in rp)
    return [
        "Where the failover and promote outages go (medians of the runs):", "",
        f"- pg failover: crash → command start {med(r['outage'] - r['rto'] for r in pg):.2f} "
        f"s; the command's start before its first step (interpreter, imports, inventory, SSH "
        f"connections, the cluster lease) {start:.2f} s; its steps up to the RESUME "
        f"(preflight, hold, fence, promote, re-point) {steps:.2f} s; PgBouncer's RESUME → "
        f"first write {med(r['after_resume'] for r in pg):.2f} s. The RESUME runs with "
        "PgBouncer's `server_login_retry` at 0 (set back after the verify step): before, "
        "the crash's failed logins made PgBouncer wait out the lab's `server_login_retry = 1` "
        "after the RESUME (the run of 2026-12-07 19:40, before that change: the verify "
        "step took 0.77 s, and so did the clients' first write).",
        f"- redis promote: the command's start before its first step {r_start:.2f} s; the "
        f"preflight and the promote (re-check, REPLICAOF NO ONE) {r_steps:.2f} s; a client "
        "probing the group writes as soon as the promote ran.",
        "- redis switchover: writes are paused from opskit's CLIENT PAUSE until the target "
        "is master: opskit waits until the target has replayed the master's offset (its own "
        "INFO, a few ms) and then FAILOVER ... FORCE, instead of FAILOVER waiting for the "
        "target's ACK, which Redis 7.0 does not request while writes are paused (the replica "
        "ACKs once a second: a 0.80 s median outage in the run of 2026-12-07 19:40).", ""]


def report(runs: dict[str, list[dict[str, Any]]], startup: float | None) -> str:
    n = len(runs["pg failover"])
    out = {k: statistics.median(r["outage"] for r in v) for k, v in runs.items()}
    pg_rto = [r["rto"] for r in runs["pg failover"]]
    redis_rto = [r["rto"] for r in runs["redis promote"]]
    lines = [
        "## Failover: client-visible outage and RTO of the pg and redis runbooks in the lab", "",
        "A 10-host lab: PostgreSQL 15 primary db1 with standbys db2 and db3 (repmgr), "
        "PgBouncer on lb1; Redis master redis1 with replicas redis2 and redis3. Each run resets "
        "the service to that topology, with a client writing all along:", "",
        "- **PostgreSQL**: a new connection through PgBouncer for each write (`select "
        "txid_current()`), every 20 ms. *Failover*: the primary's postgres stopped with "
        "`pg_ctl -m immediate` (a crash), then `opskit pg failover -l db --yes --json`. "
        "*Switchover*: `opskit pg switchover -l db --to db2 --yes --json`, the primary alive.",
        "- **Redis**, against the group: SET to redis1, redis2, redis3 in turn over a raw "
        "socket (a new connection each, AUTH first, 0.5 s timeout) until one answers +OK, "
        "every 10 ms. "
        "*Promote*: the master's redis-server killed (SIGKILL), then `opskit redis promote -l "
        "redis --yes --json`. *Switchover*: `opskit redis switchover -l redis --to redis2:6379 "
        "--yes --json`.", "",
        "**Client-visible outage** = the longest time the client went without a successful "
        "write: from the end of the last write that succeeded before the event (the crash, or "
        "the command's start for a switchover) to the end of the first that succeeded after "
        "it. A write that fails, times out or waits held (PgBouncer's KILL/PAUSE, Redis's "
        "FAILOVER pause) is outage until one succeeds; the figure is at most one client period "
        "(20 / 10 ms) above \"first failed write to first successful write\". For a failover "
        "or promote it includes the whole command up to the RESUME / the promote: Python's "
        "start and imports, the SSH connections, the lease, the preflight. **RTO** = from the "
        f"command's start to the first successful write after it. {n} runs of each, "
        "interleaved. `bench/failover.py`.", "",
        "The clients' own retrying does not hide in these figures: each tries again 20 / 10 ms "
        "after an attempt ends; a write held by PgBouncer (KILL, PAUSE) or by a Redis write "
        "pause is let go as soon as the server lets it go (for pg failover see \"PgBouncer's "
        "RESUME → first write\" below); a killed Redis master refuses the connection at once, "
        "so the 0.5 s timeout never runs out in these runs.", "",
        "| | median s | min s | max s |", "|---|---:|---:|---:|",
        _row("pg failover: outage (crash → first write through PgBouncer)",
             [r["outage"] for r in runs["pg failover"]]),
        _row("pg failover: RTO (command start → first write)", pg_rto),
        _row("pg failover: PgBouncer's RESUME → first write through it",
             [r["after_resume"] for r in runs["pg failover"]]),
        _row("pg failover: the whole command (follow and final status included)",
             [r["command"] for r in runs["pg failover"]]),
        _row("pg switchover: outage (longest time without a write through PgBouncer)",
             [r["outage"] for r in runs["pg switchover"]]),
        _row("pg switchover: the whole command", [r["command"] for r in runs["pg switchover"]]),
        _row("redis promote: outage (kill → first write accepted by the group)",
             [r["outage"] for r in runs["redis promote"]]),
        _row("redis promote: RTO (command start → first write)", redis_rto),
        _row("redis promote: the whole command", [r["command"] for r in runs["redis promote"]]),
        _row("redis switchover: outage (longest time without a write accepted)",
             [r["outage"] for r in runs["redis switchover"]]),
        _row("redis switchover: the whole command",
             [r["command"] for r in runs["redis switchover"]]),
        "", "Failed write attempts during the outage (median): "
        + ", ".join(f"{k} {statistics.median(r['failed'] for r in v):g}"
                    for k, v in runs.items())
        + " (a PgBouncer PAUSE holds writes instead of failing them).", "",
        "Goals (issue 18), medians:", "",
        f"- pg failover outage < {PG_OUTAGE_GOAL:g} s: "
        f"{_verdict(out['pg failover'], PG_OUTAGE_GOAL)}",
        f"- pg switchover outage < {PG_OUTAGE_GOAL:g} s: "
        f"{_verdict(out['pg switchover'], PG_OUTAGE_GOAL)}",
        f"- redis promote outage < {REDIS_OUTAGE_GOAL:g} s: "
        f"{_verdict(out['redis promote'], REDIS_OUTAGE_GOAL)}",
        f"- redis switchover outage < {REDIS_OUTAGE_GOAL:g} s: "
        f"{_verdict(out['redis switchover'], REDIS_OUTAGE_GOAL)}",
        f"- pg failover RTO < {GOAL:g} s: {_verdict(statistics.median(pg_rto), GOAL)}; redis "
        f"promote RTO < {REDIS_GOAL:g} s: {_verdict(statistics.median(redis_rto), REDIS_GOAL)}",
        "", "`opskit --version` (interpreter start and opskit's own imports, no command module) "
        f"takes {startup:.2f} s on this machine in the same run: part of every outage of a "
        "failover or promote." if startup is not None else "", "",
        *_where_it_goes(runs),
    ]
    for name, title in (("pg failover", "pg failover"), ("pg switchover", "pg switchover"),
                        ("redis promote", "redis promote"),
                        ("redis switchover", "redis switchover")):
        lines += [f"Per step of `{title}` (median s):", "", *_steps(runs[name]), ""]
    lines += [f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
