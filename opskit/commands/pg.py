"""``opskit pg``: PostgreSQL cluster status and the failover runbooks (repmgr + PgBouncer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from opskit.commands import runbook_cmd
from opskit.commands.mutating import Change, mutating
from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.errors import UsageError
from opskit.output import Environment
from opskit.pg import checks, config, failover, failover_continue, rejoin, state, switchover
from opskit.pg.lsn import fmt
from opskit.runner import lease
from opskit.units import human_bytes

F = TypeVar("F", bound=Callable[..., Any])


@click.group("pg", epilog="""\b
Examples:
  opskit pg status                    # every cluster of the inventory
  opskit pg status -l pg07a           # pg07a's whole cluster
  opskit pg failover pg07a --dry-run  # the failover of pg07a's cluster
  opskit pg switchover --cluster shard07 --to pg07b --yes
""")
def command() -> None:
    """PostgreSQL + repmgr + PgBouncer: status, failover, switchover, rejoin (docs/postgres.md)."""


# Without -l: every host with postgres settings (the clusters are told apart by
# postgres.cluster; a runbook still acts on one only).
DEFAULT_SELECTION = "all"


def _fleet(app: AppContext) -> config.Fleet:
    return config.fleet(app.inventory(), app.select(default=DEFAULT_SELECTION))


def _cluster(app: AppContext) -> config.Cluster:
    return _fleet(app).one()


def _one(app: AppContext, cluster: str | None, *named: str | None) -> config.Cluster:
    """The one cluster a runbook acts on: --cluster, else the cluster of the hosts named (a
    host argument, --to), else the selection's only one; a span of several is refused."""
    return _fleet(app).one(cluster=cluster, hosts=[h for h in named if h])


def cluster_option(example: str) -> Callable[[F], F]:
    return click.option(
        "--cluster", "cluster", metavar="NAME", help="The PostgreSQL cluster (its "
        "postgres.cluster) to act on, when the selection spans several. Example: "
        f"{example}")


def headline(cluster: config.Cluster, cs: state.ClusterState, warns: list[str]) -> str:
    """What the fleet summary says of a cluster that is not healthy: the worst first."""
    prims = cs.primaries
    if len(prims) > 1:
        return f"{len(prims)} primaries"
    if not prims:
        return "no primary"
    for role in (state.UNREACHABLE, state.DOWN):
        gone = [n.name for n in cs.nodes if n.role == role]
        if gone:
            return f"{', '.join(gone)} {role}"
    return warns[0] if len(warns) == 1 else f"{len(warns)} warnings"


def title(cluster: config.Cluster) -> str:
    bouncers = ", ".join(b.name for b in cluster.bouncers)
    where = {"per-node": f"a PgBouncer on each node ({bouncers})",
             "central": f"PgBouncer on {bouncers}", "none": "no PgBouncer"}[cluster.layout]
    return f"{len(cluster.nodes)} nodes, {where}"


def render_status(env: Environment, cluster: config.Cluster, cs: state.ClusterState) -> None:
    pointed: dict[str, list[str]] = {}
    for b in cs.bouncers:
        for db, target in b.targets.items():
            pointed.setdefault(target, []).append(f"{b.name}/{db}")
    rows, styles = [], []
    for n in cs.nodes:
        node = cluster.node(n.name)
        repmgr = f"{n.repmgr_role or '?'}/{n.repmgr_status or '?'}" if n.repmgr_role else "-"
        rows.append((n.name, f"{n.address}:{node.port}", n.role.upper() if n.role == "primary"
                     else n.role, n.upstream or "-", n.timeline or "-", fmt(n.lsn),
                     human_bytes(n.lag_bytes) if n.role == "standby" else "-",
                     "-" if n.replay_age_s is None or n.role != "standby"
                     else f"{n.replay_age_s:.1f}s",
                     {True: "PAUSED", False: "no", None: "-"}[n.replay_paused], repmgr,
                     ", ".join(pointed.get(f"{n.address}:{node.port}", [])) or "-"))
        styles.append("bold" if n.role == "primary" else
                      "bold magenta" if not n.up else None)
    env.table(("node", "address", "role", "upstream", "TL", "LSN", "lag", "last replay",
               "paused", "repmgr", "pgbouncer"), rows, styles=styles)


VIEW = runbook_cmd.View(
    load=_cluster, gather=lambda c, pool: state.gather(c, pool), render=render_status,
    unreachable=lambda cs: any(n.role == state.UNREACHABLE for n in cs.nodes),
    warnings=lambda c, cs: checks.warnings(cs, c.max_lag_bytes),
    healthy="healthy: one primary, every standby streaming on its timeline",
    final_key="final_status", lock=lambda c: (lease.scope("pg", c.name), c.lock_hosts,
                                    f"the PostgreSQL cluster {c.name}"),
    hosts=lambda c: [*(n.host for n in c.nodes),
                     *(b.host for b in c.bouncers if not c.has(b.name))],
    title=title, headline=headline)


@command.command("status", epilog="""\b
Examples:
  opskit pg status                       # every cluster, one view
  opskit pg status -l db
  opskit pg status -l pg07a              # pg07a's whole cluster (pg07b added)
  opskit pg status --cluster shard07
  opskit pg status --json | jq '.clusters[] | select(.verdict != "healthy") | .name'
Each cluster is judged on its own (its primary, lag, PgBouncers); the last
line sums up the fleet. Exit status, the worst cluster's: 0 healthy,
2 warnings (no primary, two primaries, lag, paused replay, a standby off
the primary's timeline, PgBouncer elsewhere), 3 a node unreachable.
""")
@cluster_option("--cluster shard07")
@shared_options
@pass_app
def status(app: AppContext, cluster: str | None) -> int:
    """Every cluster the selection touches, whole: per node its role from the server,
    upstream, timeline, LSN, lag, replay paused, repmgr's view and where PgBouncer sends
    clients; then one summary line for the fleet."""
    fleet = _fleet(app)
    if cluster is not None:
        fleet = fleet.only(cluster)
    members = [runbook_cmd.Member(c.name, c, fleet.added.get(c.name, ()))
               for c in fleet.clusters]
    return runbook_cmd.fleet_status(app, VIEW, members)


@command.command("failover", epilog="""\b
Examples:
  opskit pg failover pg07a --dry-run       # pg07a's cluster (any node of it)
  opskit pg failover --cluster shard07 --yes
  opskit pg failover -l db --yes           # the selection's only cluster
  opskit pg failover -l db --to db3 --yes
  opskit pg failover -l db --continue 20261201T031502Z-4f1c2a9e --yes
A selection spanning several clusters is refused (exit 1) unless a host,
--to or --cluster names one. Exit status: 0 done, 2 a step failed, 4
refused by a preflight check, 130 interrupted (the output says the state
left and the --continue command).
""")
@click.argument("host", required=False, metavar="[HOST]")
@click.option("--to", "to", metavar="NODE", help="The standby to promote (default: the one "
              "with the most WAL replayed). Example: --to db2")
@click.option("--force", is_flag=True, help="Promote despite failed preflight checks (lag, "
              "paused replay, timeline); journaled. Example: --force")
@click.option("--continue", "continue_id", metavar="RUN_ID", help="Finish the failover of "
              "that run (interrupted or failed): the steps it left undone, each only if "
              "still needed. Example: --continue 20261201T031502Z-4f1c2a9e")
@cluster_option("--cluster shard07")
@mutating("pg failover", locked=True)
@shared_options
def failover_cmd(app: AppContext, change: Change, host: str | None, to: str | None,
                 force: bool, continue_id: str | None, cluster: str | None) -> int:
    """Primary down (or must go now): check, fence the old primary, promote a standby, make
    the others follow, re-point PgBouncer, verify a write. HOST (optional): any node of the
    cluster to fail over, e.g. the primary that is down."""
    decided = None
    if continue_id is not None and cluster is None and host is None:
        # The run's own decision names its cluster (its continue command may have lost the
        # --to that named it).
        target = (failover_continue.decision_of(continue_id) or {}).get("target")
        decided = target if isinstance(target, str) else None
    one = _one(app, cluster, host, to, decided)
    opts = failover.FailoverOptions(to=to, force=force, yes=change.yes)
    if continue_id is None:
        return runbook_cmd.runbook(change, VIEW,
                                   f"Fail over the cluster {one.name} now (stop the old "
                                   "primary, promote a standby)?",
                                   lambda c, p, rb: failover.run(c, p, rb, opts), cfg=one)
    if to is not None:
        raise UsageError("--continue takes the target from the journal; --to is not allowed",
                         hint="drop --to")
    return runbook_cmd.runbook(
        change, VIEW, f"Continue the failover of run {continue_id}?",
        lambda c, p, rb: failover_continue.run(c, p, rb, continue_id, opts), cfg=one)


@command.command("switchover", epilog="""\b
Examples:
  opskit pg switchover --to db2 --dry-run     # db2's cluster
  opskit pg switchover -l db --to db2 --yes
  opskit pg switchover --cluster shard07 --to pg07b --yes
Exit status: 0 done, 1 the selection spans clusters, 2 a step failed
(PgBouncer is resumed), 4 refused.
""")
@click.option("--to", "to", required=True, metavar="NODE",
              help="The standby to become primary (it names the cluster too). Example: "
              "--to db2")
@cluster_option("--cluster shard07")
@mutating("pg switchover", locked=True)
@shared_options
def switchover_cmd(app: AppContext, change: Change, to: str, cluster: str | None) -> int:
    """Planned change of primary: PAUSE PgBouncer, clean stop, promote, old primary rejoins,
    re-point, RESUME (always)."""
    one = _one(app, cluster, to)
    return runbook_cmd.runbook(change, VIEW, f"Switch the primary over to {to}?",
                               lambda c, p, rb: switchover.run(c, p, rb, to), cfg=one)


@command.command("rejoin", epilog="""\b
Examples:
  opskit pg rejoin db1 --dry-run
  opskit pg rejoin -l db db1 --yes
""")
@click.argument("node")
@cluster_option("--cluster main")
@mutating("pg rejoin", locked=True)
@shared_options
def rejoin_cmd(app: AppContext, change: Change, node: str, cluster: str | None) -> int:
    """Bring a former primary back as a standby of the current primary (repmgr node rejoin,
    pg_rewind when its history forked). NODE names the cluster too."""
    one = _one(app, cluster, node)
    return runbook_cmd.runbook(change, VIEW,
                               f"Rejoin {node} as a standby (its postgres is restarted)?",
                               lambda c, p, rb: rejoin.run(c, p, rb, node), cfg=one)
