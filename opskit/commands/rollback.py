"""``opskit rollback``: switch `current` back to the previous (or a named) release."""

from __future__ import annotations

import click

from opskit import deploy as deploy_mod
from opskit.commands.mutating import Change, mutating
from opskit.commands.options import AppContext, shared_options
from opskit.commands.render import render_fleet_result
from opskit.output import STATUS_STYLE, Environment
from opskit.runner.fleet import HostResult


@click.command(
    "rollback",
    epilog="""\b
Examples:
  opskit rollback --yes                          # every app host back one release
  opskit rollback -l app07 --to 20261124031500123-3f2a9c1 --yes
  opskit rollback --dry-run
""",
)
@click.option("--to", "to", metavar="RELEASE",
              help="Release id to switch to (see `opskit releases`); default: the one before "
              "current on each host. Example: --to 20261124031500123-3f2a9c1")
@mutating("rollback", locked=True)
@shared_options
def command(app: AppContext, change: Change, to: str | None) -> int:
    """Switch `current` back on the selected hosts (default group `app`), reload, check health.

    Exit status: 0 ok, 2 some host failed (e.g. no such release), 3 some unreachable.
    """
    env = app.env
    if to is not None:
        # Also in a dry run: the plan must not name what the run would refuse.
        deploy_mod.check_release_name(to)
    hosts = app.select(default="app")
    deploy_mod.load_configs(hosts)
    target = to or "the previous release"
    names = [h.name for h in hosts]
    if change.dry_run:
        return change.planned(
            {"dry_run": True, "to": to, "hosts": names},
            lambda: env.line(f"dry run: would switch {len(hosts)} hosts to {target}, reload "
                             f"and health-check: {' '.join(names)}"), names)
    change.begin(f"Roll back {len(hosts)} hosts to {target}?", targets=names,
                 plan={"to": to})
    with change.leases(deploy_mod.leases(hosts)), \
            env.progress(len(hosts), "rollback") as observer:
        observer.on_finish.append(lambda r: _render_host(env, r))
        result = deploy_mod.rollback(hosts, to, app.run_options(), observer=observer,
                                     note=env.note)
    change.record_fleet(result, details={"to": to})
    render_fleet_result(env, result, extra={"to": to})
    if result.interrupted:
        text, hint = deploy_mod.rollback_interrupted_summary(result)
        env.note(f"stopped: {text}")
        env.note(f"continue: {hint}")
    return result.exit_code


def _render_host(env: Environment, r: HostResult) -> None:
    v = r.value if isinstance(r.value, dict) else {}
    what = f"{v.get('from')} -> {v.get('to')}" if v else ""
    if v and not v.get("changed"):
        what += " (already current)"
    env.line(f"{r.host} | {r.status} | {what} | {r.duration:.2f}s".replace(" |  |", " |"),
             style=STATUS_STYLE.get(r.status))
    if r.error:
        env.line(f"  error: {r.error}", style="red")
