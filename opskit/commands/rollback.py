"""``opskit rollback``: switch `current` back to the previous (or a named) release."""

from __future__ import annotations

import click

from opskit import deploy as deploy_mod
from opskit import journal
from opskit.commands.options import (
    AppContext,
    confirm,
    dry_run_option,
    pass_app,
    shared_options,
    yes_option,
)
from opskit.commands.render import render_fleet_result
from opskit.errors import EXIT_BAD_INPUT
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
@dry_run_option
@yes_option
@shared_options
@pass_app
def command(app: AppContext, to: str | None, dry_run: bool, yes: bool) -> int:
    """Switch `current` back on the selected hosts (default group `app`), reload, check health.

    Exit status: 0 ok, 2 some host failed (e.g. no such release), 3 some unreachable.
    """
    env = app.env
    hosts = app.select(default="app")
    deploy_mod.load_configs(hosts)
    target = to or "the previous release"
    if dry_run:
        if env.json:
            env.emit_json({"dry_run": True, "to": to, "hosts": [h.name for h in hosts]})
        else:
            env.line(f"dry run: would switch {len(hosts)} hosts to {target}, reload and "
                     f"health-check: {' '.join(h.name for h in hosts)}")
        return 0
    if not confirm(app, f"Roll back {len(hosts)} hosts to {target}?", yes):
        env.line("cancelled; nothing was changed")
        return EXIT_BAD_INPUT
    with env.progress(len(hosts), "rollback") as observer:
        observer.on_finish.append(lambda r: _render_host(env, r))
        result = deploy_mod.rollback(hosts, to, app.run_options(), observer=observer)
    journal.record_fleet("rollback", app.argv, result, details={"to": to})
    render_fleet_result(env, result, extra={"to": to})
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
