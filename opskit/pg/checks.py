"""Decisions over a gathered ClusterState: warnings for ``pg status``, and for a failover the
old primary, the expected timeline, the target and every reason to refuse.

Pure functions (no I/O) so each rule is unit-tested; the runbooks act on their answers.
The checks follow what Patroni and pg_auto_failover look at before promoting: the target must
be in recovery, on the primary's timeline, replaying (not paused) and close enough to the
primary; two primaries means stop and look, never add a third.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from opskit.pg.state import PRIMARY, STANDBY, ClusterState, NodeState
from opskit.units import human_bytes


def warnings(state: ClusterState, max_lag_bytes: int) -> list[str]:
    out: list[str] = []
    prims = state.primaries
    if len(prims) > 1:
        out.append(f"{len(prims)} primaries: {', '.join(p.name for p in prims)} (split brain: "
                   "fence one before anything else)")
    elif not prims:
        out.append("no primary answers: `opskit pg failover` promotes a standby")
    expected = expected_timeline(state)
    for n in state.nodes:
        if not n.up:
            out.append(f"{n.name} is {n.role}: {n.error or 'no answer'}")
            continue
        if n.role == STANDBY and expected is not None and n.timeline not in (None, expected):
            out.append(f"{n.name} is on timeline {n.timeline}, the primary on {expected}")
        if n.role == STANDBY and n.lag_bytes is not None and n.lag_bytes > max_lag_bytes:
            out.append(f"{n.name} lags {human_bytes(n.lag_bytes)} (over "
                       f"{human_bytes(max_lag_bytes)})")
        if n.replay_paused:
            out.append(f"{n.name} has WAL replay paused (pg_wal_replay_resume() to resume)")
        if n.role == STANDBY and not n.upstream:
            out.append(f"{n.name} is a standby that is not streaming")
        if n.repmgr_role and n.repmgr_role != n.role:
            out.append(f"{n.name}: repmgr's metadata says {n.repmgr_role}, the server is "
                       f"{n.role}")
    targets = {t for b in state.bouncers for t in b.targets.values()}
    if len(targets) > 1:
        out.append(f"PgBouncer hosts disagree on the primary: {', '.join(sorted(targets))}")
    for b in state.bouncers:
        if b.error:
            out.append(f"PgBouncer {b.name}: {b.error}")
        for db, target in b.targets.items():
            if prims and not any(target == f"{p.address}:{_port(target)}" for p in prims):
                out.append(f"PgBouncer {b.name} sends {db} to {target}, not to the primary")
        for db, paused in b.paused.items():
            if paused:
                out.append(f"PgBouncer {b.name} has {db} paused (RESUME {db})")
    if state.repmgr_error:
        out.append(f"repmgr: {state.repmgr_error}")
    return out


def _port(target: str) -> str:
    return target.rpartition(":")[2]


def expected_timeline(state: ClusterState) -> int | None:
    """The primary's timeline; without a single live primary, the standbys' common one."""
    prims = [p for p in state.primaries if p.timeline is not None]
    if len(prims) == 1:
        return prims[0].timeline
    tls = Counter(n.timeline for n in state.nodes if n.role == STANDBY and n.timeline)
    if not tls:
        return None
    (best, count), *rest = tls.most_common()
    if rest and rest[0][1] == count:
        return None  # a tie: no way to tell which history is the primary's
    return best


def old_primary(state: ClusterState, bouncer_targets: dict[str, str]) -> NodeState | None:
    """The node to fail over from: the live primary, else the one PgBouncer sends clients
    to, else the one repmgr registered as primary."""
    prims = state.primaries
    if len(prims) == 1:
        return prims[0]
    by_addr = {n.address: n for n in state.nodes}
    pointed = Counter(t.rpartition(":")[0] for t in bouncer_targets.values())
    for addr, _count in pointed.most_common():
        if addr in by_addr and by_addr[addr].role != STANDBY:
            return by_addr[addr]
    for n in state.nodes:
        if n.repmgr_role == PRIMARY and n.role != STANDBY:
            return n
    return None


@dataclass
class Decision:
    """The failover's target and old primary, and what stands against it."""

    target: NodeState | None
    old: NodeState | None
    timeline: int | None
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.target is not None and not self.refusals


def candidate_problems(n: NodeState, timeline: int | None, max_lag_bytes: int) -> list[str]:
    """Why ``n`` must not be promoted (empty: it may)."""
    if not n.up:
        return [f"{n.name} is {n.role} ({n.error or 'no answer'})"]
    problems = []
    if n.role != STANDBY:
        problems.append(f"{n.name} is not in recovery (it is a {n.role})")
        return problems
    if timeline is not None and n.timeline is not None and n.timeline != timeline:
        problems.append(f"{n.name} is on timeline {n.timeline}, the primary was on {timeline}")
    if n.replay_paused:
        problems.append(f"{n.name} has WAL replay paused")
    if n.lag_bytes is not None and n.lag_bytes > max_lag_bytes:
        problems.append(f"{n.name} lags {human_bytes(n.lag_bytes)}, over the "
                        f"{human_bytes(max_lag_bytes)} allowed (postgres.max_lag_bytes)")
    return problems


def decide_failover(state: ClusterState, to: str | None, max_lag_bytes: int,
                    bouncer_targets: dict[str, str]) -> Decision:
    old = old_primary(state, bouncer_targets)
    timeline = expected_timeline(state)
    d = Decision(None, old, timeline)
    prims = state.primaries
    if len(prims) > 1:
        d.refusals.append(f"{len(prims)} nodes are already primary "
                          f"({', '.join(p.name for p in prims)}): resolve the split first")
    tls = sorted({n.timeline for n in state.nodes if n.role == STANDBY and n.timeline})
    if len(prims) != 1 and len(tls) > 1:
        d.refusals.append(f"the standbys are on different timelines ({', '.join(map(str, tls))})"
                          f": their histories forked, promoting one loses the other's")
    if to is not None:
        target = next((n for n in state.nodes if n.name == to), None)
        if target is None:
            d.refusals.append(f"no node {to!r}")
            return d
        if old is not None and target.name == old.name:
            d.refusals.append(f"{to} is the primary being failed over from")
        d.target = target
        d.refusals += candidate_problems(target, timeline, max_lag_bytes)
        ahead = [n for n in state.nodes if n.role == STANDBY and n.name != target.name
                 and n.lsn is not None and target.lsn is not None and n.lsn > target.lsn
                 and (n.lsn - target.lsn) > max_lag_bytes]
        for n in ahead:
            d.refusals.append(f"{n.name} has replayed {human_bytes(n.lsn - target.lsn)} "  # type: ignore[operator]
                              f"more than {to}: promoting {to} would lose it")
        return d
    standbys = [n for n in state.nodes if n.role == STANDBY]
    good = [n for n in standbys if not candidate_problems(n, timeline, max_lag_bytes)]
    if not good:
        if not standbys:
            d.refusals.append("no standby answers: nothing to promote")
        for n in state.nodes:
            if old is not None and n.name == old.name:
                continue
            d.refusals += candidate_problems(n, timeline, max_lag_bytes)
        # Still name the best standby, so --force has a target.
        d.target = min(standbys, key=lambda n: (-(n.lsn or 0), n.name), default=None)
        return d
    # Most WAL replayed first: it loses the least and the others can follow it.
    d.target = min(good, key=lambda n: (-(n.lsn or 0), n.name))
    others = [n.name for n in good if n.name != d.target.name]
    if others:
        d.notes.append(f"chose {d.target.name} (most WAL replayed) over {', '.join(others)}")
    return d


def changed_before_promote(state: ClusterState, target: str, timeline: int | None) -> list[str]:
    """Why promoting ``target`` is no longer safe, judged again right before it, under the
    cluster lease: a node that is primary now (another operator, repmgrd, a hand
    ``pg_ctl promote``), or a target that is no longer the standby the preflight chose."""
    why = [f"{n.name} is already primary (timeline {n.timeline}): someone else promoted it"
           for n in state.nodes if n.role == PRIMARY]
    t = next((n for n in state.nodes if n.name == target), None)
    if t is None or t.role != STANDBY:
        why.append(f"the target {target} is {t.role if t else 'gone'} now, not a standby")
    elif timeline is not None and t.timeline is not None and t.timeline != timeline:
        why.append(f"the target {target} moved to timeline {t.timeline} (was {timeline})")
    return why
