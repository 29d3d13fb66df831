"""Single steps shared by the runbooks (promote, follow, fence, wait, verify)."""

from __future__ import annotations

import time

from opskit.pg import remote
from opskit.pg.config import BouncerNode, Cluster, PgNode
from opskit.session import Session, StepFailed


def wait_role(s: Session, node: PgNode, primary: bool, timeout: float = 30.0) -> None:
    """Poll until the server answers and is (not) in recovery."""
    want = "f" if primary else "t"
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        rows = remote.psql(s, node, "select pg_is_in_recovery()", check=False, timeout=10)
        if rows and rows[0][0] == want:
            return
        last = rows[0][0] if rows else "no answer"
        if time.monotonic() > deadline:
            role = "primary" if primary else "standby"
            raise StepFailed(f"{node.name} is not a running {role} after {timeout:g}s "
                             f"(in recovery: {last})")
        time.sleep(0.2)


def stop(s: Session, node: PgNode) -> str:
    """Stop the server: fast (roll back sessions, checkpoint), immediate if that fails."""
    if not remote.is_running(s, node):
        return "already stopped"
    if remote.pg_ctl(s, node, "stop", "-m", "fast", timeout=30, check=False) == 0:
        return "stopped (fast)"
    remote.pg_ctl(s, node, "stop", "-m", "immediate", timeout=30)
    return "stopped (immediate, fast did not finish)"


def promote(s: Session, node: PgNode) -> None:
    remote.repmgr(s, node, "standby", "promote", "--verbose")
    wait_role(s, node, primary=True)


def follow(s: Session, node: PgNode, upstream: PgNode) -> None:
    """Make a standby stream from ``upstream`` (repmgr restarts it with the new conninfo)."""
    remote.repmgr(s, node, "standby", "follow", "--verbose")
    wait_streaming(s, node, upstream)


def wait_streaming(s: Session, node: PgNode, upstream: PgNode, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = remote.psql(s, node, "select sender_host, status from pg_stat_wal_receiver",
                           check=False, timeout=10)
        if rows and rows[0][0] == upstream.address and rows[0][1] == "streaming":
            return
        if time.monotonic() > deadline:
            got = rows[0] if rows else "no WAL receiver"
            raise StepFailed(f"{node.name} does not stream from {upstream.name} after "
                             f"{timeout:g}s (receiver: {got})")
        time.sleep(0.2)


def write_through(s: Session, b: BouncerNode, cluster: Cluster, expect: PgNode,
                  timeout: float = 15.0) -> str:
    """A write (an assigned transaction id) as a client of PgBouncer; must land on ``expect``."""
    user = expect.app_user
    db = b.databases[0]
    deadline = time.monotonic() + timeout
    while True:
        try:
            rows = remote.through_bouncer(
                s, b, db, user,
                "select inet_server_addr(), pg_is_in_recovery(), txid_current()")
            addr, recovering, xid = rows[0][0], rows[0][1], rows[0][2]
            if addr.split("/")[0] == expect.address and recovering == "f":
                return f"{db}@{b.name} wrote xid {xid} on {expect.name}"
            last = f"answered from {addr} (in recovery: {recovering})"
        except StepFailed as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise StepFailed(f"no write through PgBouncer {b.name} reached {expect.name} in "
                             f"{timeout:g}s: {last}")
        time.sleep(0.3)
