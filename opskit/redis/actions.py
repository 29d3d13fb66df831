"""Single steps on Redis instances (each waits until the server says it is done)."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from contextlib import suppress

from opskit.inventory import Host
from opskit.redis import info, tools
from opskit.redis.config import Instance, Publish
from opskit.runner import remote_file, wait
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session

# Seconds between INFO probes while waiting: a probe is one redis-cli over the open SSH
# session (~10 ms); what is awaited (a role swap, a link up) takes milliseconds, so a longer
# pause between probes would only be time lost.
POLL = 0.01


def _wait(s: Session, i: Instance, ok: Callable[[dict[str, str]], bool], what: str,
          timeout: float) -> dict[str, str]:
    def probe() -> tuple[bool, dict[str, str]]:
        d = info.parse(tools.call(s, i, "INFO", "replication"))
        return bool(d) and ok(d), d

    try:
        return wait.until(probe, what=f"{i.name} to be {what}", timeout=timeout, interval=POLL,
                          retry=(CommandFailed,))
    except wait.WaitTimedOut as exc:
        d = exc.seen if isinstance(exc.seen, dict) else {}
        raise CommandFailed(f"{i.name}: not {what} after {timeout:g}s (role "
                            f"{d.get('role', '?')}, link {d.get('master_link_status', '-')})"
                            ) from None


def _role_after(results: list[str], n: int) -> tuple[str, int | None]:
    """ROLE's reply after ``n`` one-line replies in a transaction's results: the role and,
    for a master, its replication offset. (ROLE, not INFO: redis-cli prints a multi-line
    reply inside EXEC glued to the line before, which the transaction's parse cannot split.)"""
    role = results[n] if len(results) > n else "?"
    offset = results[n + 1] if len(results) > n + 1 else ""
    return role, int(offset) if role == "master" and offset.isdigit() else None


def make_master(s: Session, i: Instance, timeout: float = 15.0) -> None:
    """REPLICAOF NO ONE and CONFIG REWRITE as one MULTI/EXEC (as Sentinel does); the ROLE
    in the same transaction shows the role it left, so no second round trip is needed."""
    results = tools.transaction(s, i, [["REPLICAOF", "NO", "ONE"], ["CONFIG", "REWRITE"],
                                       ["ROLE"]])
    if _role_after(results, 2)[0] != "master":
        _wait(s, i, lambda d: d.get("role") == "master", "a master", timeout)


def replicate(s: Session, i: Instance, master: Instance, timeout: float = 30.0) -> None:
    """Point ``i`` at ``master`` (persisted) and wait until its link is up."""
    tools.transaction(s, i, [["REPLICAOF", master.address, str(master.port)],
                           ["CONFIG", "REWRITE"]])
    _wait(s, i, lambda d: d.get("role") == "slave" and d.get("master_host") == master.address
          and d.get("master_port") == str(master.port) and d.get("master_link_status") == "up",
          f"replicating from {master.name}", timeout)


def failover_to(s: Session, master: Instance, target: Instance, timeout_ms: int) -> None:
    """Redis FAILOVER TO: writes paused until the target has every acknowledged write, then
    the roles swap -- no acknowledged write is lost. Waits until the master says it is done.

    FAILOVER alone waits for the target to *acknowledge* the master's offset, and Redis 7.0
    sends no REPLCONF GETACK while writes are paused: under writes it waits for the replica's
    own once-a-second ACK, 0-1 s of paused writes (the lab's bench: 0.84 s median). So the
    pause and the check are done here: CLIENT PAUSE WRITE with the master's offset (ROLE) read
    in the same MULTI (nothing can move it then), the target's own INFO polled until it has replayed
    that offset, then FAILOVER ... FORCE with a 1 ms TIMEOUT (FORCE skips only the wait for
    an ACK of what was just seen) and CLIENT UNPAUSE in one MULTI: FAILOVER's own pause holds
    writes from there on. On any failure before that, writes are unpaused at once.
    """
    # Our pause outlives the catch-up wait, and ends by itself if opskit dies meanwhile.
    pause_ms = timeout_ms + 5000
    results = tools.transaction(s, master, [["CLIENT", "PAUSE", str(pause_ms), "WRITE"],
                                            ["ROLE"]])
    try:
        role, offset = _role_after(results, 1)
        if offset is None:
            raise CommandFailed(f"{master.name} is not a master (ROLE says {role})")

        def caught_up() -> tuple[bool, str]:
            # The target's own view, through the master's session (it reaches the target:
            # the target replicates from it, and FAILOVER connects to it too).
            t = info.parse(tools.call(s, target, "INFO", "replication"))
            seen = info.as_int(t, "slave_repl_offset")
            return (t.get("master_link_status") == "up" and seen == offset,
                    f"offset {seen} of {offset}, link {t.get('master_link_status', '-')}")

        try:
            wait.until(caught_up, what=f"{target.name} to replay {master.name}'s every write",
                       timeout=timeout_ms / 1000, interval=POLL / 2, retry=(CommandFailed,))
        except wait.WaitTimedOut as exc:
            raise CommandFailed(f"FAILOVER to {target.name} did not happen: it did not catch "
                                f"up in {timeout_ms} ms ({exc.seen}); writes unpaused, "
                                f"{master.name} is still the master") from None
        tools.transaction(s, master, [["FAILOVER", "TO", target.address, str(target.port),
                                       "TIMEOUT", "1", "FORCE"], ["CLIENT", "UNPAUSE"]])
    except BaseException:
        with suppress(CommandFailed):
            tools.call(s, master, "CLIENT", "UNPAUSE")
        raise
    d = _wait(s, master, lambda d: d.get("master_failover_state") == "no-failover",
              "done with FAILOVER", timeout_ms / 1000 + 10)
    if d.get("role") != "slave":
        raise CommandFailed(f"FAILOVER to {target.name} did not happen ({master.name} is still "
                         f"{d.get('role')}; the target did not catch up in {timeout_ms} ms?)")
    tools.call(s, master, "CONFIG", "REWRITE")  # FAILOVER itself does not persist the roles


def persist(s: Session, i: Instance) -> None:
    tools.call(s, i, "CONFIG", "REWRITE")


def bgsave(s: Session, i: Instance, timeout: float = 300.0) -> dict[str, object]:
    """BGSAVE and wait until LASTSAVE moves and the save says ok; the RDB file and size."""
    before = int(tools.call(s, i, "LASTSAVE"))
    reply = tools.call(s, i, "BGSAVE", "SCHEDULE")
    t0 = time.monotonic()

    def probe() -> tuple[bool, dict[str, str]]:
        d = info.parse(tools.call(s, i, "INFO", "persistence"))
        saved = (info.as_int(d, "rdb_last_save_time") or 0) > before
        return saved and d.get("rdb_bgsave_in_progress") == "0", d

    d = wait.until(probe, what=f"BGSAVE on {i.name} to finish", timeout=timeout, interval=0.1)
    last = info.as_int(d, "rdb_last_save_time") or 0
    if d.get("rdb_last_bgsave_status") != "ok":
        raise CommandFailed(f"{i.name}: BGSAVE failed (rdb_last_bgsave_status "
                         f"{d.get('rdb_last_bgsave_status')})")
    folder = tools.call(s, i, "CONFIG", "GET", "dir").split()[-1]
    name = tools.call(s, i, "CONFIG", "GET", "dbfilename").split()[-1]
    path = f"{folder.rstrip('/')}/{name}"
    size = s.run(f"stat -c %s {shlex.quote(path)}", check=False).stdout.strip()
    return {"instance": i.name, "reply": reply, "lastsave": last, "rdb": path,
            "bytes": int(size) if size.isdigit() else None,
            "seconds": round(time.monotonic() - t0, 3)}


def publish(s: Session, host: Host, pub: Publish, master: Instance) -> str:
    """Write {"host", "port"} of the master to the apps' file (atomically), then reload."""
    doc = json.dumps({"host": master.address, "port": master.port, "name": master.name}) + "\n"
    # Not a fixed "<file>.opskit-tmp": a symlink planted there was written through.
    remote_file.replace(s, pub.file, doc.encode(), sudo=False)
    if pub.reload:
        s.run(f"sh -c {shlex.quote(pub.reload)}")
    return f"{host.name}: {pub.file} -> {master.endpoint}"
