"""``opskit redis``: master/replica status, promote, switchover, rejoin, backups."""

from __future__ import annotations

import click

from opskit.commands import runbook_cmd
from opskit.commands.mutating import Change, mutating
from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.inventory import Host
from opskit.output import Environment
from opskit.redis import checks, config, runbooks, state
from opskit.runner import lease
from opskit.units import human_bytes


@click.group("redis", epilog="""\b
Examples:
  opskit redis status -l redis
  opskit redis promote -l redis --dry-run
  opskit redis switchover -l redis --to redis2:6379 --yes
  opskit redis backup -l redis --yes
""")
def command() -> None:
    """Redis master/replica runbooks without Sentinel (docs/redis.md)."""


def _topology(app: AppContext) -> config.Topology:
    return config.load(app.inventory(), app.select(default="redis"))


def _publish_hosts(app: AppContext, topo: config.Topology) -> list[Host]:
    pub = topo.publish
    return app.inventory().select(pub.hosts) if pub else []


def _age(now: float, t: int | None) -> str:
    return "-" if not t else f"{max(0, now - t) / 60:.0f} min ago"


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


VIEW = runbook_cmd.View(
    load=_topology, gather=lambda t, pool: state.gather(t, pool),
    render=lambda env, _topo, fs: render(env, fs),
    unreachable=lambda fs: any(x.role == state.UNREACHABLE for x in fs.instances),
    warnings=lambda _topo, fs: checks.warnings(fs),
    healthy="healthy: one master, every replica linked", final_key="final_topology",
    lock=lambda t: (lease.scope("redis", "replication"), t.lock_hosts,
                    "the Redis replication group"))


@command.command("status", epilog="""\b
Examples:
  opskit redis status -l redis
  opskit redis status -l redis --json | jq '.instances[] | {name, role, lag_bytes}'
Exit status: 0 healthy, 2 warnings (two masters, a link down, ...), 3 unreachable.
""")
@shared_options
@pass_app
def status(app: AppContext) -> int:
    """Topology per instance: role, master, link, offset and lag, priority, last save,
    clients, memory against maxmemory and the host's RAM."""
    return runbook_cmd.status(app, VIEW)


@command.command("promote", epilog="""\b
Examples:
  opskit redis promote -l redis --dry-run
  opskit redis promote -l redis --yes
  opskit redis promote -l redis --to redis3:6379 --yes
Exit status: 0 done, 2 a step failed, 4 refused (master up, no fresh replica).
""")
@click.option("--to", metavar="HOST:PORT", help="The replica to promote (default: Sentinel's "
              "choice: lowest replica-priority, largest offset, smallest run id). "
              "Example: --to redis2:6379")
@click.option("--force", is_flag=True, help="Promote even when no candidate has a recent "
              "link to the master (journaled). Example: --force")
@mutating("redis promote", locked=True)
@shared_options
def promote(app: AppContext, change: Change, to: str | None, force: bool) -> int:
    """Master down: promote the best replica, point the others at it, publish it."""
    return runbook_cmd.runbook(
        change, VIEW, "Promote a replica to master?",
        lambda f, p, rb: runbooks.promote(f, p, rb, to=to, force=force,
                                          publish_hosts=_publish_hosts(app, f)))


@command.command("switchover", epilog="""\b
Examples:
  opskit redis switchover -l redis --to redis2:6379 --dry-run
  opskit redis switchover -l redis --to redis2:6379 --yes
""")
@click.option("--to", required=True, metavar="HOST:PORT",
              help="The replica to become master. Example: --to redis2:6379")
@click.option("--timeout-ms", type=click.IntRange(100, 600000), default=5000, show_default=True,
              help="How long FAILOVER may pause writes for the target to catch up. "
              "Example: --timeout-ms 10000")
@mutating("redis switchover", locked=True)
@shared_options
def switchover(app: AppContext, change: Change, to: str, timeout_ms: int) -> int:
    """Master alive: Redis FAILOVER TO the replica (no acknowledged write lost), re-point the
    other replicas, publish; the old master ends as a replica."""
    return runbook_cmd.runbook(
        change, VIEW, f"Switch the master over to {to}?",
        lambda f, p, rb: runbooks.switchover(f, p, rb, to=to,
                                             timeout_ms=timeout_ms,
                                             publish_hosts=_publish_hosts(app, f)))


@command.command("rejoin", epilog="""\b
Examples:
  opskit redis rejoin -l redis redis1:6379 --yes
""")
@click.argument("instance", metavar="HOST:PORT")
@mutating("redis rejoin", locked=True)
@shared_options
def rejoin(app: AppContext, change: Change, instance: str) -> int:
    """Make a returned old master a replica of the current master (never two masters)."""
    return runbook_cmd.runbook(
        change, VIEW, f"Make {instance} a replica (its data is replaced)?",
        lambda f, p, rb: runbooks.rejoin(f, p, rb, spec=instance))


@command.command("backup", epilog="""\b
Examples:
  opskit redis backup -l redis --yes
  opskit redis backup -l redis1 --allow-master --yes
""")
@click.option("--allow-master", is_flag=True, help="Also BGSAVE on masters (a fork of the "
              "busiest process). Example: --allow-master")
@mutating("redis backup", locked=True)
@shared_options
def backup(app: AppContext, change: Change, allow_master: bool) -> int:
    """BGSAVE on the replicas (never a master unless --allow-master); waits until LASTSAVE
    moves and the save is ok; reports each RDB file and its size."""
    return runbook_cmd.runbook(
        change, VIEW, "BGSAVE on the replicas?",
        lambda f, p, rb: runbooks.backup(f, p, rb, allow_master=allow_master))
