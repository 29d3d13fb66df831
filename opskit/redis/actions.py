"""Single steps on Redis instances (each waits until the server says it is done)."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable

from opskit.inventory import Host
from opskit.redis import cli, info
from opskit.redis.config import Instance, Publish
from opskit.session import Session, StepFailed


def _wait(s: Session, i: Instance, ok: Callable[[dict[str, str]], bool], what: str,
          timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            d = info.parse(cli.call(s, i, "INFO", "replication"))
        except StepFailed:
            d = {}
        if d and ok(d):
            return d
        if time.monotonic() > deadline:
            raise StepFailed(f"{i.name}: not {what} after {timeout:g}s (role "
                             f"{d.get('role', '?')}, link {d.get('master_link_status', '-')})")
        time.sleep(0.1)


def make_master(s: Session, i: Instance, timeout: float = 15.0) -> None:
    """REPLICAOF NO ONE and CONFIG REWRITE as one MULTI/EXEC (as Sentinel does)."""
    cli.transaction(s, i, [["REPLICAOF", "NO", "ONE"], ["CONFIG", "REWRITE"]])
    _wait(s, i, lambda d: d.get("role") == "master", "a master", timeout)


def replicate(s: Session, i: Instance, master: Instance, timeout: float = 30.0) -> None:
    """Point ``i`` at ``master`` (persisted) and wait until its link is up."""
    cli.transaction(s, i, [["REPLICAOF", master.address, str(master.port)],
                           ["CONFIG", "REWRITE"]])
    _wait(s, i, lambda d: d.get("role") == "slave" and d.get("master_host") == master.address
          and d.get("master_port") == str(master.port) and d.get("master_link_status") == "up",
          f"replicating from {master.name}", timeout)


def failover_to(s: Session, master: Instance, target: Instance, timeout_ms: int) -> None:
    """Redis FAILOVER TO: the master pauses writes, waits for the target to catch up, then
    swaps roles -- no acknowledged write is lost. Waits until the master says it is done."""
    cli.call(s, master, "FAILOVER", "TO", target.address, str(target.port), "TIMEOUT",
             str(timeout_ms))
    d = _wait(s, master, lambda d: d.get("master_failover_state") == "no-failover",
              "done with FAILOVER", timeout_ms / 1000 + 10)
    if d.get("role") != "slave":
        raise StepFailed(f"FAILOVER to {target.name} did not happen ({master.name} is still "
                         f"{d.get('role')}; the target did not catch up in {timeout_ms} ms?)")
    cli.call(s, master, "CONFIG", "REWRITE")  # FAILOVER itself does not persist the roles


def persist(s: Session, i: Instance) -> None:
    cli.call(s, i, "CONFIG", "REWRITE")


def bgsave(s: Session, i: Instance, timeout: float = 300.0) -> dict[str, object]:
    """BGSAVE and wait until LASTSAVE moves and the save says ok; the RDB file and size."""
    before = int(cli.call(s, i, "LASTSAVE"))
    reply = cli.call(s, i, "BGSAVE", "SCHEDULE")
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        d = info.parse(cli.call(s, i, "INFO", "persistence"))
        last = info.as_int(d, "rdb_last_save_time") or 0
        if last > before and d.get("rdb_bgsave_in_progress") == "0":
            break
        if time.monotonic() > deadline:
            raise StepFailed(f"{i.name}: BGSAVE not finished after {timeout:g}s")
        time.sleep(0.1)
    if d.get("rdb_last_bgsave_status") != "ok":
        raise StepFailed(f"{i.name}: BGSAVE failed (rdb_last_bgsave_status "
                         f"{d.get('rdb_last_bgsave_status')})")
    folder = cli.call(s, i, "CONFIG", "GET", "dir").split()[-1]
    name = cli.call(s, i, "CONFIG", "GET", "dbfilename").split()[-1]
    path = f"{folder.rstrip('/')}/{name}"
    size = s.run(f"stat -c %s {shlex.quote(path)}", check=False).stdout.strip()
    return {"instance": i.name, "reply": reply, "lastsave": last, "rdb": path,
            "bytes": int(size) if size.isdigit() else None,
            "seconds": round(time.monotonic() - t0, 3)}


def publish(s: Session, host: Host, pub: Publish, master: Instance) -> str:
    """Write {"host", "port"} of the master to the apps' file (atomically), then reload."""
    doc = json.dumps({"host": master.address, "port": master.port, "name": master.name}) + "\n"
    tmp = f"{pub.file}.opskit-tmp"
    s.run_input(f"cat > {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(pub.file)}",
                doc.encode())
    if pub.reload:
        s.run(f"sh -c {shlex.quote(pub.reload)}")
    return f"{host.name}: {pub.file} -> {master.endpoint}"
