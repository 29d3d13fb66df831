"""``opskit releases``: current release per host, available releases, drift."""

from __future__ import annotations

import click

from opskit import deploy as deploy_mod
from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.runner.fleet import OK


@click.command(
    "releases",
    epilog="""\b
Examples:
  opskit releases
  opskit releases -l 'app0*' --json | jq '.drift'
""",
)
@shared_options
@pass_app
def command(app: AppContext) -> int:
    """Show each host's current release and its releases; hosts off the majority are drift.

    Exit status: 0 (also with drift), 3 if some host was unreachable.
    """
    env = app.env
    hosts = app.select(default="app")
    with env.progress(len(hosts), "releases") as observer:
        result = deploy_mod.list_releases(hosts, app.run_options(), observer=observer,
                                          note=env.note)
    majority, drifted = deploy_mod.drift(result)
    if env.json:
        env.emit_json({"majority": majority, "drift": drifted, **result.to_dict()})
        return result.exit_code
    rows, styles = [], []
    for r in result.results:
        if r.status != OK:
            rows.append((r.host, "?", "", r.error or r.status))
            styles.append("bold magenta")
            continue
        v = r.value
        mark = "DRIFT" if r.host in drifted else ""
        rows.append((r.host, v["current"] or "-", mark, " ".join(v["releases"][-5:])))
        styles.append("bold yellow" if mark else None)
    env.table(("host", "current", "drift", "releases (newest last)"), rows, styles=styles)
    env.line(f"majority: {majority or '-'}; drift: {', '.join(drifted) or 'none'}")
    return result.exit_code
