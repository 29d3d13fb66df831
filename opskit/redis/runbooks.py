"""The Redis runbooks: promote (master down), switchover (master alive), rejoin, backup.

Each prints and journals its steps through ``opskit.runner.runbook`` and ends with the topology;
a ``--dry-run`` is the same code with only the preflight executed (``Runbook.step``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from opskit.errors import SafetyError, StepError
from opskit.inventory import Host
from opskit.redis import actions, checks, sentinel, state
from opskit.redis.config import Instance, Topology
from opskit.redis.state import MASTER, REPLICA, TopologyState
from opskit.runner import interrupts
from opskit.runner.hostpool import HostPool
from opskit.runner.runbook import Runbook, Step
from opskit.transport.errors import CommandFailed


def _gather(topo: Topology, pool: HostPool, rb: Runbook, title: str) -> TopologyState:
    def ask(st: Step) -> TopologyState:
        fs = state.gather(topo, pool)
        st.detail = "; ".join(f"{x.name} {x.role}"
                              + (f" of {x.master} link {x.link} offset {x.offset}"
                                 if x.role == REPLICA else f" offset {x.offset}" if x.up else "")
                              for x in fs.instances)
        return fs

    return rb.check(title, *sorted({i.host.name for i in topo.instances}), run=ask)


def _repoint_others(topo: Topology, pool: HostPool, rb: Runbook, fs: TopologyState,
                    new: Instance, skip: set[str]) -> None:
    others = [topo.find(x.name) for x in fs.instances
              if x.up and x.name != new.name and x.name not in skip]
    if not others:
        return

    def repoint(st: Step) -> None:
        pool.each([o.host for o in others],
                  lambda s: [actions.replicate(s, o, new) for o in others
                             if o.host.name == s.host.name], strict=True)
        st.detail = ", ".join(o.name for o in others) + f" replicate from {new.name}, link up"

    rb.step(f"point the other replicas at {new.name} and wait for their link",
            *[o.host.name for o in others],
            does=f"{', '.join(o.name for o in others)}: MULTI; REPLICAOF {new.address} "
                 f"{new.port}; CONFIG REWRITE; EXEC; wait for master_link_status:up",
            run=repoint)


def _publish(topo: Topology, pool: HostPool, rb: Runbook, hosts: list[Host],
             new: Instance) -> None:
    pub = topo.publish
    if pub is None or not hosts:
        return

    def publish(st: Step) -> None:
        res = pool.each(hosts, lambda s: actions.publish(s, s.host, pub, new), strict=True)
        st.detail = "; ".join(str(v) for v in res.values())

    rb.step(f"publish the new master to the apps ({pub.file}, then reload)",
            *[h.name for h in hosts], does=f"{pub.file} <- {new.endpoint}; {pub.reload}",
            run=publish)


@dataclass
class _Progress:
    """How far a promote/switchover got (the paragraph after an interrupt says it)."""

    master: bool = False
    replicas: bool = False
    published: bool = False


def _state_left(p: _Progress, new: str, old: str | None, publish: bool) -> str:
    if not p.master:
        return (f"{new} was not made master; {old or 'the old master'} is still the master "
                "of record: nothing was changed")
    said = [f"{new} is the master and takes writes",
            "the other replicas replicate from it" if p.replicas
            else "the other replicas do NOT yet replicate from it"]
    if publish:
        said.append("the apps were told" if p.published
                    else "the apps were NOT told (the publish step did not run)")
    return "; ".join(said)


def _interrupted(what: str, p: _Progress, new: Instance, old: str | None,
                 topo: Topology, rb: Runbook) -> interrupts.Stopped:
    publish = topo.publish is not None
    hint = "`opskit redis status` shows the topology"
    if p.master and not p.replicas:
        hint = (f"`opskit redis rejoin INSTANCE --yes` for each replica not following "
                f"{new.name}; " + hint)
    elif p.master and publish and not p.published and topo.publish is not None:
        hint = (f"write {new.endpoint} to {topo.publish.file} on the apps and run "
                f"`{topo.publish.reload}`; " + hint)
    elif not p.master:
        hint = f"run `{shlex.join(['opskit', *rb.argv])}` again"
    return interrupts.Stopped(f"{what} interrupted: {_state_left(p, new.name, old, publish)}.",
                              hint=hint)


def _refuse_undeclared_sentinels(topo: Topology, fs: TopologyState, what: str) -> None:
    """Sentinels watch the group but its settings do not say so: acting behind their back
    would fight them (each REPLICAOF undone by the other)."""
    watched = [x for x in fs.instances if x.sentinels_connected]
    if topo.sentinel is None and watched:
        raise SafetyError(f"refusing to {what} the group {topo.name}: Sentinels watch it "
                          f"({', '.join(f'{x.name}: {x.sentinels_connected}' for x in watched)}"
                          " connected) and would fight opskit over the master",
                          hint="declare them in redis.sentinel (master, hosts) so that "
                          "promote hands the failover to them, or let them fail over")


def _refuse_sentinel_group(topo: Topology, what: str) -> None:
    if topo.sentinel is not None:
        raise SafetyError(f"refusing to {what} in the group {topo.name}: its Sentinels "
                          f"({', '.join(topo.sentinel.names())}) manage the master",
                          hint=f"`opskit redis promote --group {topo.name}` hands a failover "
                          "to them (SENTINEL FAILOVER); they re-point a returning master "
                          "themselves")


def promote(topo: Topology, pool: HostPool, rb: Runbook, *, to: str | None, force: bool,
            publish_hosts: list[Host]) -> dict[str, Any]:
    fs = _gather(topo, pool, rb, "preflight: INFO from every instance")
    _refuse_undeclared_sentinels(topo, fs, "promote in")
    if topo.sentinel is not None:
        return _sentinel_promote(topo, pool, rb, fs, to=to, publish_hosts=publish_hosts)
    limit = min(i.max_link_down_seconds for i in topo.instances)
    d = checks.decide_promote(fs, to, limit)
    if d.target is None:
        raise SafetyError("no replica to promote: " + "; ".join(d.refusals or ["none"]),
                          hint="`opskit redis status` shows every instance")
    if d.refusals and not force:
        raise SafetyError("refusing to promote: " + "; ".join(d.refusals),
                          hint="fix the cause, choose another --to, or --force (journaled)")
    new = topo.find(d.target.name)
    if d.refusals:
        rb.env.note("FORCED past: " + "; ".join(d.refusals))
    offset, notes = d.target.offset, f"; {'; '.join(d.notes)}" if d.notes else ""

    p = _Progress()

    def make_master(st: Step) -> None:
        # Asked again under the lease, right before: did a master appear meanwhile?
        assert d.target is not None
        why = checks.changed_before_promote(state.gather(topo, pool), d.target.endpoint)
        if why:
            raise SafetyError(f"not promoting {new.name}, the topology changed since the "
                              "preflight: " + "; ".join(why),
                              hint="nothing was promoted; `opskit redis status` shows it")
        actions.make_master(pool.get(new.host), new)
        p.master = True
        st.detail = f"role:master (was offset {offset})" + notes

    try:
        with rb.critical("promote -> re-point the other replicas",
                         leaves=lambda: _state_left(p, new.name, d.old, False)):
            rb.step(f"promote {new.name} (REPLICAOF NO ONE + CONFIG REWRITE in MULTI/EXEC)",
                    new.host.name,
                    does=f"MULTI; REPLICAOF NO ONE; CONFIG REWRITE; EXEC (offset "
                         f"{offset}, priority {d.target.priority}); wait for "
                         "role:master" + notes, run=make_master)
            _repoint_others(topo, pool, rb, fs, new, skip=set())
            p.replicas = True
        _publish(topo, pool, rb, publish_hosts, new)
        p.published = True
    except CommandFailed as exc:
        raise StepError(f"promote stopped: {exc}",
                        hint="`opskit redis status` shows the topology now") from None
    except (KeyboardInterrupt, interrupts.Stopped):
        raise _interrupted("redis promote", p, new, d.old, topo, rb) from None
    return {"target": new.name, "old_master": d.old, "forced": bool(d.refusals)}


def switchover(topo: Topology, pool: HostPool, rb: Runbook, *, to: str, timeout_ms: int,
               publish_hosts: list[Host]) -> dict[str, Any]:
    _refuse_sentinel_group(topo, "switch over")
    fs = _gather(topo, pool, rb, "preflight: INFO from every instance")
    _refuse_undeclared_sentinels(topo, fs, "switch over")
    target = topo.find(to)
    masters = fs.masters
    refusals = []
    if len(masters) != 1:
        refusals.append(f"{len(masters)} masters answer: a switchover needs exactly one live "
                        "master (use `opskit redis promote` when it is down)")
    t = fs.get(target.name)
    refusals += checks.problems(t, masters[0].endpoint if len(masters) == 1 else None,
                                min(i.max_link_down_seconds for i in topo.instances))
    if t.role == REPLICA and t.link != "up":
        refusals.append(f"{t.name}: link to the master is {t.link}")
    if refusals:
        raise SafetyError("refusing to switch over: " + "; ".join(refusals),
                          hint="`opskit redis status`")
    old = topo.find(masters[0].name)

    p = _Progress()

    def failover(st: Step) -> None:
        actions.failover_to(pool.get(old.host), old, target, timeout_ms)
        p.master = True
        actions.persist(pool.get(target.host), target)
        st.detail = f"{target.name} is master, {old.name} its replica (configs rewritten)"

    try:
        with rb.critical("FAILOVER -> re-point the other replicas",
                         leaves=lambda: _state_left(p, target.name, old.name, False)):
            rb.step(f"FAILOVER TO {target.name} on {old.name} (no acknowledged write lost)",
                    old.host.name, target.host.name,
                    does=f"CLIENT PAUSE WRITE + ROLE on {old.name}; wait (<= {timeout_ms} "
                         f"ms) until {target.name} has replayed that offset; FAILOVER TO "
                         f"{target.address} {target.port} TIMEOUT 1 FORCE + CLIENT UNPAUSE: "
                         "writes paused until the target has every acknowledged write; roles "
                         "swap; then CONFIG REWRITE on both",
                    run=failover)
            _repoint_others(topo, pool, rb, fs, target, skip={old.name})
            p.replicas = True
        _publish(topo, pool, rb, publish_hosts, target)
        p.published = True
    except CommandFailed as exc:
        raise StepError(f"switchover stopped: {exc}", hint="`opskit redis status`") from None
    except (KeyboardInterrupt, interrupts.Stopped):
        raise _interrupted("redis switchover", p, target, old.name, topo, rb) from None
    return {"target": target.name, "old_master": old.name}


def _sentinel_promote(topo: Topology, pool: HostPool, rb: Runbook, fs: TopologyState, *,
                      to: str | None, publish_hosts: list[Host]) -> dict[str, Any]:
    """SENTINEL FAILOVER on the first Sentinel that answers: it picks the replica (its own
    order: replica-priority, offset, run id) and re-points the others; opskit waits until
    the Sentinel names the new master and that instance says role:master, then publishes.
    Works with the master up too (the Sentinels' manual failover)."""
    assert topo.sentinel is not None
    name = topo.sentinel.master
    if to is not None:
        raise SafetyError(f"--to is refused in the group {topo.name}: its Sentinels choose "
                          "the replica to promote",
                          hint="steer them with replica-priority (lower wins, 0 never), or "
                          "drop --to")
    answering = [v for v in fs.sentinels if v.answering]
    if not answering:
        raise SafetyError(f"no Sentinel of the group {topo.name} answers: "
                          + "; ".join(f"{v.name}: {v.error}" for v in fs.sentinels),
                          hint="start a Sentinel, or check redis.sentinel.hosts")
    busy = [v.name for v in answering if v.flags and "failover_in_progress" in v.flags]
    if busy:
        raise SafetyError(f"a Sentinel failover of {name} is already in progress "
                          f"({', '.join(busy)})", hint="`opskit redis status` shows when it "
                          "is done")
    w = next(x for x in sentinel.watchers(topo) if x.name == answering[0].name)
    old = answering[0].master
    p = _Progress()
    out: dict[str, Any] = {}

    def ask(st: Step) -> None:
        s = pool.get(w.host)
        sentinel.failover(s, w, name)
        new = sentinel.wait_new_master(s, w, name, old, timeout=60)
        inst = next((i for i in topo.instances if i.endpoint == new), None)
        if inst is None:
            raise CommandFailed(f"the Sentinels promoted {new}, not an instance of the group "
                                f"{topo.name} in the inventory")
        sentinel.wait_role_master(pool.get(inst.host), inst, timeout=30)
        p.master = True
        out["target"] = inst.name
        st.detail = f"{w.name} promoted {inst.name} (was {old}); role:master"

    def followed(st: Step) -> None:
        new = topo.find(out["target"])
        others = [topo.find(x.name) for x in fs.instances if x.up and x.name != new.name]
        pool.each(list({o.host.name: o.host for o in others}.values()),
                  lambda s: [sentinel.wait_follows(s, o, new, timeout=60) for o in others
                             if o.host.name == s.host.name], strict=True)
        p.replicas = True
        st.detail = (", ".join(o.name for o in others) + f" replicate from {new.name}, link up"
                     if others else "no other instance answers")

    old_name = next((x.name for x in fs.instances if x.endpoint == old), old)
    try:
        with rb.critical("SENTINEL FAILOVER -> new master", leaves=lambda: _state_left(
                p, out.get("target", "a replica"), old_name, False)):
            rb.step(f"SENTINEL FAILOVER {name} on {w.name} (the Sentinels choose and "
                    "re-point)", w.host.name,
                    does=f"SENTINEL FAILOVER {name}; wait until the Sentinel names a master "
                         f"other than {old} and it says role:master",
                    run=ask)
            rb.step("wait for the Sentinels to re-point the other instances (a live old "
                    "master too)", *sorted({x.name.rsplit(":", 1)[0] for x in fs.instances
                                            if x.up}),
                    does="INFO replication on each instance that answered the preflight: "
                         "role:slave of the new master, link up (up to 60 s)",
                    run=followed)
        if not rb.dry_run:
            new = topo.find(out["target"])
            _publish(topo, pool, rb, publish_hosts, new)
        p.published = True
    except CommandFailed as exc:
        raise StepError(f"promote stopped: {exc}",
                        hint="`opskit redis status` shows the topology and the Sentinels' "
                        "view") from None
    except (KeyboardInterrupt, interrupts.Stopped):
        said = (f"the Sentinels promoted {out['target']}; the apps were "
                f"{'' if p.published else 'NOT '}told" if p.master else
                "SENTINEL FAILOVER may have been sent: the Sentinels finish a failover they "
                "started on their own")
        raise interrupts.Stopped(f"redis promote interrupted: {said}.",
                                 hint="`opskit redis status` shows the topology and the "
                                 "Sentinels' view") from None
    return {"target": out.get("target"), "old_master": old, "forced": False,
            "sentinel": w.name}


def rejoin(topo: Topology, pool: HostPool, rb: Runbook, *, spec: str) -> dict[str, Any]:
    node = topo.find(spec)
    _refuse_sentinel_group(topo, "rejoin an instance")
    fs = _gather(topo, pool, rb, "preflight: INFO from every instance")
    _refuse_undeclared_sentinels(topo, fs, "rejoin an instance in")
    me = fs.get(node.name)
    if not me.up:
        raise SafetyError(f"{node.name} is {me.role}: start it first ({me.error})")
    # The current master: the one the replicas follow (not counting the node itself).
    followed = checks.old_master(state.TopologyState([x for x in fs.instances
                                                   if x.name != node.name]))
    current = next((x for x in fs.instances if x.endpoint == followed and x.role == MASTER),
                   None)
    if current is None or current.name == node.name:
        others = [m for m in fs.masters if m.name != node.name]
        if len(others) != 1:
            raise SafetyError(f"cannot tell the current master to rejoin {node.name} to "
                              f"(masters answering: {', '.join(m.name for m in fs.masters)})",
                              hint="`opskit redis status`")
        current = others[0]
    master = topo.find(current.name)
    if me.role == REPLICA and me.master == master.endpoint and me.link == "up":
        return {"node": node.name, "master": master.name, "changed": False}

    def replicate(st: Step) -> None:
        actions.replicate(pool.get(node.host), node, master)
        st.detail = f"was {me.role}; now replicating, link up"

    try:
        rb.step(f"{node.name} becomes a replica of {master.name}", node.host.name,
                does=f"MULTI; REPLICAOF {master.address} {master.port}; CONFIG REWRITE; EXEC; "
                     "wait for master_link_status:up (its own data is replaced)",
                run=replicate)
    except CommandFailed as exc:
        raise StepError(f"rejoin stopped: {exc}", hint="`opskit redis status`") from None
    return {"node": node.name, "master": master.name, "changed": not rb.dry_run}


def backup(topo: Topology, pool: HostPool, rb: Runbook, *, allow_master: bool,
           only: list[str] | None = None) -> dict[str, Any]:
    """BGSAVE on the group's replicas (``only``: of these instances)."""
    fs = _gather(topo, pool, rb, "preflight: INFO from every instance")
    chosen = [x for x in fs.instances if (only is None or x.name in only)
              and (x.role == REPLICA or (allow_master and x.role == MASTER))]
    skipped = [x.name for x in fs.instances if x not in chosen]
    if not chosen:
        raise SafetyError("no replica to save from (BGSAVE on a master forks the busiest "
                          "process)", hint="add --allow-master to save on a master anyway")
    saved: list[dict[str, Any]] = []
    insts = [topo.find(x.name) for x in chosen]

    def bgsave(st: Step) -> None:
        res = pool.each(list({i.host.name: i.host for i in insts}.values()),
                        lambda s: [actions.bgsave(s, i) for i in insts
                                   if i.host.name == s.host.name])
        bad = {k: v for k, v in res.items() if isinstance(v, Exception)}
        for v in res.values():
            if isinstance(v, list):
                saved.extend(v)
        st.detail = "; ".join(f"{r['instance']}: {r['rdb']} {r['bytes']} bytes" for r in saved)
        if bad:
            raise StepError("BGSAVE failed: " + "; ".join(f"{k}: {v}" for k, v in bad.items()))

    rb.step("BGSAVE on " + ", ".join(i.name for i in insts) + " and wait for LASTSAVE",
            *sorted({i.host.name for i in insts}),
            does="BGSAVE SCHEDULE; wait until LASTSAVE moves and rdb_last_bgsave_status:ok",
            run=bgsave)
    return {"saved": saved, "skipped": skipped}
