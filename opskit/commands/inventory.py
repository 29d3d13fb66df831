"""``opskit inventory``: show the selected hosts, their groups and vars, or the group tree."""

from __future__ import annotations

from typing import Any

import click

from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.output import Environment
from opskit.redact import mask_data


@click.command(
    "inventory",
    epilog="""\b
Examples:
  opskit -i inventory/production.yml inventory -l 'db:&pg_primary'
  opskit -i inventory/production.yml inventory --graph
  opskit -i inventory/ inventory --json | jq '.hosts | keys'
""",
)
@click.option("--graph", is_flag=True, help="Print the group tree with its hosts. Example: --graph")
@click.option("--vars", "show_vars", is_flag=True,
              help="Include each host's merged vars in the table. Example: --vars -l app01")
@shared_options
@pass_app
def command(app: AppContext, graph: bool, show_vars: bool) -> int:
    """List the hosts selected by --limit (all by default), or the group tree."""
    inv = app.inventory()
    env = app.env
    if graph:
        tree = inv.graph()
        if env.json:
            env.emit_json(tree)
        else:
            _print_tree(env, tree, "")
        return 0
    hosts = app.select()
    if env.json:
        env.emit_json({
            "sources": inv.sources,
            "hosts": {h.name: {"address": h.address, "port": h.port, "user": h.user,
                               "connection": h.connection, "groups": list(h.groups),
                               "vars": mask_data(h.vars)} for h in hosts},
        })
        return 0
    rows = []
    for h in hosts:
        groups = ",".join(g for g in h.groups if g not in ("all", "ungrouped"))
        row: list[Any] = [h.name, h.address, h.port or 22, h.user or "", groups]
        if show_vars:
            # aws.secret_access_key and the like are nested: mask by key, not by text.
            shown = mask_data(h.vars)
            row.append(" ".join(f"{k}={v}" for k, v in sorted(shown.items())))
        rows.append(row)
    columns = ["host", "address", "port", "user", "groups"] + (["vars"] if show_vars else [])
    env.table(columns, rows)
    env.line(f"{len(hosts)} hosts")
    return 0


def _print_tree(env: Environment, node: dict[str, Any], indent: str) -> None:
    env.line(f"{indent}@{node['name']}:")
    for child in node.get("children", []):
        _print_tree(env, child, indent + "  ")
    for host in node.get("hosts", []):
        env.line(f"{indent}  {host}")
