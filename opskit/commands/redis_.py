"""``opskit redis``: master/replica status, promote, switchover, rejoin, backups, per
replication group (``redis.group``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from opskit.commands import runbook_cmd
from opskit.commands.mutating import Change, mutating
from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.inventory import Host
from opskit.output import Environment
from opskit.redis import checks, config, runbooks, state
from opskit.runner import lease
from opskit.units import human_bytes

F = TypeVar("F", bound=Callable[..., object])


@click.group("redis", epilog="""\b
Examples:
  opskit redis status                      # every group of the inventory
  opskit redis promote --group feed --dry-run
  opskit redis switchover --to redis2:6379 --yes
  opskit redis backup --group feed --yes
""")
def command() -> None:
    """Redis master/replica runbooks per replication group; groups watched by Sentinel are
    handed to it (docs/redis.md)."""


def _fleet(app: AppContext) -> config.Fleet:
    return config.fleet(app.inventory(), app.select(default="redis"))


def _topology(app: AppContext) -> config.Topology:
    return _fleet(app).one()


def _one(app: AppContext, group: str | None, *named: str | None) -> config.Topology:
    """The one group a runbook acts on: --group, else the group of the instances named
    (--to, an INSTANCE argument), else the selection's only one; a span is refused."""
    return _fleet(app).one(group=group, specs=[n for n in named if n])


def group_option(example: str) -> Callable[[F], F]:
    return click.option(
        "--group", "group", metavar="NAME", help="The replication group (its redis.group) "
        f"to act on, when the selection spans several. Example: {example}")


def _publish_hosts(app: AppContext, topo: config.Topology) -> list[Host]:
    pub = topo.publish
    return app.inventory().select(pub.hosts) if pub else []


def _age(now: float, t: int | None) -> str:
    return "-" if not t else f"{max(0, now - t) / 60:.0f} min ago"


def headline(topo: config.Topology, fs: state.TopologyState, warns: list[str]) -> str:
    """What the fleet summary says of a group that is not healthy: the worst first."""
    masters = fs.masters
    if len(masters) > 1:
        return f"{len(masters)} masters"
    if not masters:
        return "no master"
    for role in (state.UNREACHABLE, state.DOWN):
        gone = [x.name for x in fs.instances if x.role == role]
        if gone:
            return f"{', '.join(gone)} {role}"
    return warns[0] if len(warns) == 1 else f"{len(warns)} warnings"


def title(topo: config.Topology) -> str:
    i = topo.instances[0]
    how = [w for w, on in (("TLS", i.tls), ("AUTH" + (f" as {i.auth.user}" if i.auth and
                                                       i.auth.user else ""), i.auth)) if on]
    watched = f", Sentinels {', '.join(topo.sentinel.names())}" if topo.sentinel else ""
    return f"{len(topo.instances)} instances{', ' if how else ''}{', '.join(how)}{watched}"


def render(env: Environment, fs: state.TopologyState) -> None:
    import time

    now = time.time()
    rows, styles = [], []
    for x in fs.instances:
        mem = human_bytes(x.used_memory)
        if x.maxmemory:
            mem += f" / {human_bytes(x.maxmemory)}"
        rows.append((x.name, x.role.upper() if x.role == "master" else x.role,
                     x.master or "-", x.link or "-", x.offset if x.offset is not None else "-",
                     human_bytes(x.lag_bytes) if x.role == "replica" else "-",
                     x.priority if x.priority is not None else "-",
                     _age(now, x.last_save), x.clients if x.clients is not None else "-",
                     mem, human_bytes(x.host_ram)))
        styles.append("bold" if x.role == "master" else None if x.up else "bold magenta")
    env.table(("instance", "role", "master", "link", "offset", "lag", "prio", "last save",
               "clients", "memory / max", "host RAM"), rows, styles=styles)
    if fs.sentinels:
        env.table(("sentinel", "master", "flags", "quorum", "others", "ckquorum"),
                  [(v.name, v.master or "-", v.flags or "-",
                    v.quorum if v.quorum is not None else "-",
                    v.other_sentinels if v.other_sentinels is not None else "-",
                    v.ckquorum or v.error or "-") for v in fs.sentinels],
                  styles=[None if v.answering and v.quorum_ok else "bold magenta"
                          for v in fs.sentinels])


VIEW = runbook_cmd.View(
    load=_topology, gather=lambda t, pool: state.gather(t, pool),
    render=lambda env, _topo, fs: render(env, fs),
    unreachable=lambda fs: any(x.role == state.UNREACHABLE for x in fs.instances),
    warnings=checks.group_warnings,
    healthy="healthy: one master, every replica linked", final_key="final_topology",
    lock=lambda t: (lease.scope("redis", t.name), t.lock_hosts,
                    f"the Redis group {t.name}"),
    hosts=lambda t: t.lock_hosts, title=title, headline=headline)


@command.command("status", epilog="""\b
Examples:
  opskit redis status                     # every group, one view
  opskit redis status -l redis01a         # redis01a's whole group
  opskit redis status --group feed
  opskit redis status --json | jq '.groups[] | select(.verdict != "healthy") | .name'
Each group is judged on its own (one master, replicas linked, its Sentinels);
the last line sums up the fleet. Exit status, the worst group's: 0 healthy,
2 warnings (two masters, a link down, ...), 3 unreachable.
""")
@group_option("--group feed")
@shared_options
@pass_app
def status(app: AppContext, group: str | None) -> int:
    """Every group the selection touches, whole: per instance its role, master, link,
    offset and lag, priority, last save, clients, memory against maxmemory and the host's
    RAM; the Sentinels' view where they watch a group; one summary line for the fleet."""
    fleet = _fleet(app)
    if group is not None:
        fleet = fleet.only(group)
    members = [runbook_cmd.Member(g.name, g, fleet.added.get(g.name, ()))
               for g in fleet.groups]
    return runbook_cmd.fleet_status(app, VIEW, members, kind="group")


@command.command("promote", epilog="""\b
Examples:
  opskit redis promote --group feed --dry-run
  opskit redis promote --group feed --yes
  opskit redis promote --to redis3:6379 --yes     # redis3:6379's group
In a group its Sentinels watch (redis.sentinel), the promotion is
SENTINEL FAILOVER: the Sentinels choose the replica (--to is refused).
Exit status: 0 done, 1 the selection spans groups, 2 a step failed, 4
refused (master up, no fresh replica, undeclared Sentinels).
""")
@click.option("--to", metavar="HOST:PORT", help="The replica to promote (default: Sentinel's "
              "choice: lowest replica-priority, largest offset, smallest run id). "
              "Example: --to redis2:6379")
@click.option("--force", is_flag=True, help="Promote even when no candidate has a recent "
              "link to the master (journaled). Example: --force")
@group_option("--group feed")
@mutating("redis promote", locked=True)
@shared_options
def promote(app: AppContext, change: Change, to: str | None, force: bool,
            group: str | None) -> int:
    """Master down: promote the best replica, point the others at it, publish it (or hand
    it to the group's Sentinels)."""
    one = _one(app, group, to)
    return runbook_cmd.runbook(
        change, VIEW, f"Promote a replica to master in the group {one.name}?",
        lambda f, p, rb: runbooks.promote(f, p, rb, to=to, force=force,
                                          publish_hosts=_publish_hosts(app, f)), cfg=one)


@command.command("switchover", epilog="""\b
Examples:
  opskit redis switchover --to redis2:6379 --dry-run   # redis2:6379's group
  opskit redis switchover --group feed --to redis01b --yes
Refused in a group its Sentinels watch: promote hands it to them.
Exit status: 0 done, 1 the selection spans groups, 2 a step failed, 4 refused.
""")
@click.option("--to", required=True, metavar="HOST:PORT",
              help="The replica to become master. Example: --to redis2:6379")
@click.option("--timeout-ms", type=click.IntRange(100, 600000), default=5000, show_default=True,
              help="How long FAILOVER may pause writes for the target to catch up. "
              "Example: --timeout-ms 10000")
@group_option("--group feed")
@mutating("redis switchover", locked=True)
@shared_options
def switchover(app: AppContext, change: Change, to: str, timeout_ms: int,
               group: str | None) -> int:
    """Master alive: Redis FAILOVER TO the replica (no acknowledged write lost), re-point the
    other replicas, publish; the old master ends as a replica."""
    one = _one(app, group, to)
    return runbook_cmd.runbook(
        change, VIEW, f"Switch the master of the group {one.name} over to {to}?",
        lambda f, p, rb: runbooks.switchover(f, p, rb, to=to,
                                             timeout_ms=timeout_ms,
                                             publish_hosts=_publish_hosts(app, f)), cfg=one)


@command.command("rejoin", epilog="""\b
Examples:
  opskit redis rejoin redis1:6379 --yes     # redis1:6379's group
""")
@click.argument("instance", metavar="HOST:PORT")
@group_option("--group main")
@mutating("redis rejoin", locked=True)
@shared_options
def rejoin(app: AppContext, change: Change, instance: str, group: str | None) -> int:
    """Make a returned old master a replica of the current master (never two masters).
    INSTANCE names the group too."""
    one = _one(app, group, instance)
    return runbook_cmd.runbook(
        change, VIEW, f"Make {instance} a replica (its data is replaced)?",
        lambda f, p, rb: runbooks.rejoin(f, p, rb, spec=instance), cfg=one)


@command.command("backup", epilog="""\b
Examples:
  opskit redis backup --group feed --yes
  opskit redis backup --group feed --allow-master --yes
Exit status: 0 done, 1 the selection spans groups, 2 a save failed, 4 refused.
""")
@click.option("--allow-master", is_flag=True, help="Also BGSAVE on masters (a fork of the "
              "busiest process). Example: --allow-master")
@group_option("--group feed")
@mutating("redis backup", locked=True)
@shared_options
def backup(app: AppContext, change: Change, allow_master: bool, group: str | None) -> int:
    """BGSAVE on the selected replicas of one group (never a master unless --allow-master);
    waits until LASTSAVE moves and the save is ok; reports each RDB file and its size."""
    fleet = _fleet(app)
    one = fleet.one(group=group)
    # Saved: the instances the selection names (-l redis1: redis1's), not those brought in
    # to judge the group whole.
    named = [i.name for i in one.instances if i.name not in fleet.added.get(one.name, ())]
    return runbook_cmd.runbook(
        change, VIEW, f"BGSAVE on the replicas of the group {one.name}?",
        lambda f, p, rb: runbooks.backup(f, p, rb, allow_master=allow_master, only=named),
        cfg=one)
