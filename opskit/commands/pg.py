"""``opskit pg``: PostgreSQL cluster status and the failover runbooks (repmgr + PgBouncer)."""

from __future__ import annotations

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


@click.group("pg", epilog="""\b
Examples:
  opskit pg status -l db
  opskit pg failover -l db --dry-run
  opskit pg switchover -l db --to db2 --yes
""")
def command() -> None:
    """PostgreSQL + repmgr + PgBouncer: status, failover, switchover, rejoin (docs/postgres.md)."""


def _cluster(app: AppContext) -> config.Cluster:
    return config.load(app.inventory(), app.select(default="db"))


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
                                    f"the PostgreSQL cluster {c.name}"))


@command.command("status", epilog="""\b
Examples:
  opskit pg status -l db
  opskit pg status -l db --json | jq '.warnings'
Exit status: 0 healthy, 2 warnings (two primaries, lag, paused replay, a
standby off the primary's timeline, PgBouncer elsewhere), 3 a node unreachable.
""")
@shared_options
@pass_app
def status(app: AppContext) -> int:
    """One table for the cluster: role from the server, upstream, timeline, LSN, lag, replay
    paused, repmgr's view and where PgBouncer sends clients."""
    return runbook_cmd.status(app, VIEW)


@command.command("failover", epilog="""\b
Examples:
  opskit pg failover -l db --dry-run
  opskit pg failover -l db --yes
  opskit pg failover -l db --to db3 --yes
  opskit pg failover -l db --continue 20261201T031502Z-4f1c2a9e --yes
Exit status: 0 done, 2 a step failed, 4 refused by a preflight check,
130 interrupted (the output says the state left and the --continue command).
""")
@click.option("--to", "to", metavar="NODE", help="The standby to promote (default: the one "
              "with the most WAL replayed). Example: --to db2")
@click.option("--force", is_flag=True, help="Promote despite failed preflight checks (lag, "
              "paused replay, timeline); journaled. Example: --force")
@click.option("--continue", "continue_id", metavar="RUN_ID", help="Finish the failover of "
              "that run (interrupted or failed): the steps it left undone, each only if "
              "still needed. Example: --continue 20261201T031502Z-4f1c2a9e")
@mutating("pg failover", locked=True)
@shared_options
def failover_cmd(app: AppContext, change: Change, to: str | None, force: bool,
                 continue_id: str | None) -> int:
    """Primary down (or must go now): check, fence the old primary, promote a standby, make
    the others follow, re-point PgBouncer, verify a write."""
    opts = failover.FailoverOptions(to=to, force=force, yes=change.yes)
    if continue_id is None:
        return runbook_cmd.runbook(change, VIEW,
                                   "Fail over now (stop the old primary, promote a standby)?",
                                   lambda c, p, rb: failover.run(c, p, rb, opts))
    if to is not None:
        raise UsageError("--continue takes the target from the journal; --to is not allowed",
                         hint="drop --to")
    return runbook_cmd.runbook(
        change, VIEW, f"Continue the failover of run {continue_id}?",
        lambda c, p, rb: failover_continue.run(c, p, rb, continue_id, opts))


@command.command("switchover", epilog="""\b
Examples:
  opskit pg switchover -l db --to db2 --dry-run
  opskit pg switchover -l db --to db2 --yes
Exit status: 0 done, 2 a step failed (PgBouncer is resumed), 4 refused.
""")
@click.option("--to", "to", required=True, metavar="NODE",
              help="The standby to become primary. Example: --to db2")
@mutating("pg switchover", locked=True)
@shared_options
def switchover_cmd(app: AppContext, change: Change, to: str) -> int:
    """Planned change of primary: PAUSE PgBouncer, clean stop, promote, old primary rejoins,
    re-point, RESUME (always)."""
    return runbook_cmd.runbook(change, VIEW, f"Switch the primary over to {to}?",
                               lambda c, p, rb: switchover.run(c, p, rb, to))


@command.command("rejoin", epilog="""\b
Examples:
  opskit pg rejoin -l db db1 --dry-run
  opskit pg rejoin -l db db1 --yes
""")
@click.argument("node")
@mutating("pg rejoin", locked=True)
@shared_options
def rejoin_cmd(app: AppContext, change: Change, node: str) -> int:
    """Bring a former primary back as a standby of the current primary (repmgr node rejoin,
    pg_rewind when its history forked)."""
    return runbook_cmd.runbook(change, VIEW,
                               f"Rejoin {node} as a standby (its postgres is restarted)?",
                               lambda c, p, rb: rejoin.run(c, p, rb, node))
