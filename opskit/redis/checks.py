"""Decisions over a TopologyState: warnings, the old master, and the promotion candidate in
Sentinel's order (lowest non-zero replica-priority, then the largest replication offset,
then the lexicographically smallest run id)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from opskit.redis import sentinel
from opskit.redis.config import Topology
from opskit.redis.state import MASTER, REPLICA, InstanceState, TopologyState


def old_master(fs: TopologyState) -> str | None:
    """The endpoint most replicas replicate from (the master to replace)."""
    seen = Counter(x.master for x in fs.instances if x.role == REPLICA and x.master)
    return seen.most_common(1)[0][0] if seen else None


def warnings(fs: TopologyState, *, sentinels: bool = False) -> list[str]:
    """``sentinels``: the group's Sentinels re-point a stale master, not opskit."""
    out = []
    masters = fs.masters
    by_endpoint = {x.endpoint: x for x in fs.instances}
    if len(masters) > 1:
        fix = ("its Sentinels re-point the stale one within seconds" if sentinels
               else "`opskit redis rejoin` the stale one")
        out.append(f"{len(masters)} masters: {', '.join(m.name for m in masters)} ({fix})")
    if not masters:
        out.append("no master answers: `opskit redis promote` picks a replica")
    for x in fs.instances:
        if not x.up:
            out.append(f"{x.name} is {x.role}: {x.error or 'no answer'}")
            continue
        if x.role == REPLICA:
            m = by_endpoint.get(x.master or "")
            if m is None:
                out.append(f"{x.name} replicates from {x.master}, not in the selection")
            elif m.role != MASTER:
                out.append(f"{x.name} replicates from {m.name}, which is {m.role}")
            if x.link != "up":
                down = f" for {x.link_down_s:.0f}s" if x.link_down_s else ""
                out.append(f"{x.name}: link to its master is {x.link}{down}")
        if x.bgsave_status and x.bgsave_status != "ok":
            out.append(f"{x.name}: last BGSAVE {x.bgsave_status}")
        if x.maxmemory and x.used_memory and x.used_memory > 0.9 * x.maxmemory:
            out.append(f"{x.name}: used memory at {100 * x.used_memory / x.maxmemory:.0f}% of "
                       "maxmemory")
        if x.host_ram and x.used_memory and x.used_memory > 0.5 * x.host_ram:
            out.append(f"{x.name}: uses over half the host's RAM (a fork for BGSAVE could "
                       "double it)")
    return out


def group_warnings(topo: Topology, fs: TopologyState) -> list[str]:
    """The instances' warnings, then the Sentinels': theirs declared (do they answer, agree
    with the instances, reach their quorum) or not (connected to the group all the same)."""
    masters = fs.masters
    master = masters[0].endpoint if len(masters) == 1 else None
    connected = max((x.sentinels_connected or 0 for x in fs.instances), default=0)
    return warnings(fs, sentinels=topo.sentinel is not None) + sentinel.warnings(
        fs.sentinels, master, topo.sentinel is not None, connected)


def problems(x: InstanceState, master: str | None, max_link_down: float) -> list[str]:
    """Why ``x`` must not be promoted (empty: it may)."""
    if not x.up:
        return [f"{x.name} is {x.role} ({x.error or 'no answer'})"]
    if x.role != REPLICA:
        return [f"{x.name} is a {x.role}, not a replica"]
    out = []
    if master and x.master != master:
        out.append(f"{x.name} replicates from {x.master}, not from the master {master}")
    if x.priority == 0:
        out.append(f"{x.name} has replica-priority 0 (never to be promoted)")
    if x.link != "up" and (x.link_down_s is None or x.link_down_s > max_link_down):
        since = f"{x.link_down_s:.0f}s" if x.link_down_s is not None else "ever"
        out.append(f"{x.name} has had no link to the master for {since} (over "
                   f"{max_link_down:g}s: its data may be stale)")
    return out


def rank(x: InstanceState) -> tuple[int, int, str]:
    """Sentinel's order, as a sort key (smallest first)."""
    return (x.priority if x.priority else 1 << 30, -(x.offset or 0), x.run_id or "")


@dataclass
class Decision:
    target: InstanceState | None
    old: str | None  # endpoint of the master being replaced
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def decide_promote(fs: TopologyState, to: str | None, max_link_down: float) -> Decision:
    old = old_master(fs)
    d = Decision(None, old)
    live = [m for m in fs.masters]
    old_state = next((x for x in fs.instances if x.endpoint == old), None)
    if old_state is not None and old_state.role == MASTER:
        d.refusals.append(f"the master {old_state.name} is up: use `opskit redis switchover` "
                          "(no acknowledged write lost)")
    elif live:
        d.notes.append(f"other master(s) answering: {', '.join(m.name for m in live)}")
    if to is not None:
        x = next((y for y in fs.instances if to in (y.name, y.endpoint)), None)
        if x is None:
            d.refusals.append(f"no instance {to!r}")
            return d
        d.target = x
        d.refusals += problems(x, old, max_link_down)
        return d
    cands = [x for x in fs.instances if x.role == REPLICA]
    good = sorted((x for x in cands if not problems(x, old, max_link_down)), key=rank)
    if not good:
        if not cands:
            d.refusals.append("no replica answers: nothing to promote")
        for x in cands:
            d.refusals += problems(x, old, max_link_down)
        ok_priority = [x for x in cands if x.priority != 0]
        d.target = min(ok_priority, key=rank) if ok_priority else None
        return d
    d.target = good[0]
    if len(good) > 1:
        d.notes.append(f"chose {good[0].name} (priority {good[0].priority}, offset "
                       f"{good[0].offset}) over " + ", ".join(
                           f"{x.name} (priority {x.priority}, offset {x.offset})"
                           for x in good[1:]))
    return d


def changed_before_promote(fs: TopologyState, target: str) -> list[str]:
    """Why promoting ``target`` (an endpoint) is no longer safe, judged again right before it
    under the lease: a master answering now (another operator, Sentinel), or a target that is
    no longer a replica."""
    why = [f"{m.name} is a master now: someone else promoted it" for m in fs.masters
           if m.endpoint != target]
    t = next((x for x in fs.instances if x.endpoint == target), None)
    if t is None or t.role != REPLICA:
        why.append(f"the target {t.name if t else target} is "
                   f"{t.role if t else 'gone'} now, not a replica")
    return why
