"""Single steps shared by the runbooks (promote, follow, fence, wait, verify)."""

from __future__ import annotations

from collections.abc import Sequence

from opskit.pg import state, tools
from opskit.pg.config import BouncerNode, Cluster, PgNode
from opskit.runner import wait
from opskit.runner.hostpool import HostPool
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session


def wait_role(s: Session, node: PgNode, primary: bool, timeout: float = 30.0) -> None:
    """Poll until the server answers and is (not) in recovery."""
    want = "f" if primary else "t"

    def probe() -> tuple[bool, str]:
        rows = tools.psql(s, node, "select pg_is_in_recovery()", check=False, timeout=10)
        return (bool(rows) and rows[0][0] == want,
                f"in recovery: {rows[0][0]}" if rows else "no answer")

    role = "primary" if primary else "standby"
    wait.until(probe, what=f"{node.name} to be a running {role}", timeout=timeout)


def stop(s: Session, node: PgNode) -> str:
    """Stop the server: fast (roll back sessions, checkpoint), immediate if that fails."""
    if not tools.is_running(s, node):
        return "already stopped"
    if tools.pg_ctl(s, node, "stop", "-m", "fast", timeout=30, check=False) == 0:
        return "stopped (fast)"
    tools.pg_ctl(s, node, "stop", "-m", "immediate", timeout=30)
    return "stopped (immediate, fast did not finish)"


def promote(s: Session, node: PgNode) -> None:
    tools.repmgr(s, node, "standby", "promote", "--verbose")
    wait_role(s, node, primary=True)


def follow(s: Session, node: PgNode, upstream: PgNode) -> None:
    """Make a standby stream from ``upstream`` (repmgr restarts it with the new conninfo)."""
    tools.repmgr(s, node, "standby", "follow", "--verbose")
    wait_streaming(s, node, upstream)


def follow_all(pool: HostPool, cluster: Cluster, standbys: Sequence[PgNode],
               upstream: PgNode) -> None:
    """Make every standby follow ``upstream``, in parallel; CommandFailed naming each that
    did not, once all have run (a failed follow is a failed step, never a silent one)."""
    pool.each([n.host for n in standbys],
              lambda s: follow(s, cluster.node(s.host.name), upstream), strict=True)


def wait_streaming(s: Session, node: PgNode, upstream: PgNode, timeout: float = 30.0) -> None:
    def probe() -> tuple[bool, object]:
        rows = tools.psql(s, node, "select sender_host, status from pg_stat_wal_receiver",
                          check=False, timeout=10)
        done = bool(rows) and rows[0][0] == upstream.address and rows[0][1] == "streaming"
        return done, f"receiver {rows[0]}" if rows else "no WAL receiver"

    wait.until(probe, what=f"{node.name} to stream from {upstream.name}", timeout=timeout)


def write_through(s: Session, b: BouncerNode, cluster: Cluster, expect: PgNode,
                  timeout: float = 15.0) -> str:
    """A write (an assigned transaction id) as a client of PgBouncer; must land on ``expect``."""
    user = expect.app_user
    db = b.databases[0]

    def probe() -> tuple[bool, str]:
        rows = tools.through_bouncer(
            s, b, db, user, "select inet_server_addr(), pg_is_in_recovery(), txid_current()")
        addr, recovering, xid = rows[0][0], rows[0][1], rows[0][2]
        if addr.split("/")[0] == expect.address and recovering == "f":
            return True, f"{db}@{b.name} wrote xid {xid} on {expect.name}"
        return False, f"answered from {addr} (in recovery: {recovering})"

    return wait.until(probe, what=f"a write through PgBouncer {b.name} to reach {expect.name}",
                      timeout=timeout, interval=0.3, retry=(CommandFailed,))


def verify_writes(cluster: Cluster, pool: HostPool, target: PgNode,
                  timeline_before: int | None) -> str:
    """A write through every PgBouncer lands on ``target``, and (when ``timeline_before`` is
    known) its timeline went above it: the detail of a verify step; CommandFailed if not."""
    by_name = {b.name: b for b in cluster.bouncers}
    wrote = pool.each([b.host for b in cluster.bouncers],
                      lambda s: write_through(s, by_name[s.host.name], cluster, target),
                      strict=True)
    detail = "; ".join(str(v) for v in wrote.values())
    if timeline_before is None:
        return detail
    after = state.probe_node(pool.get(target.host), target)
    if (after.timeline or 0) <= timeline_before:
        raise CommandFailed(f"{target.name} is on timeline {after.timeline}, expected above "
                            f"{timeline_before}")
    return f"{detail}; timeline {timeline_before} -> {after.timeline}"
