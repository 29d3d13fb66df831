"""``opskit inventory``: show the selected hosts, their groups and vars, or the group tree;
``opskit inventory check``: validate every setting of every host without connecting."""

from __future__ import annotations

from typing import Any

import click

from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.output import Environment
from opskit.redact import mask_data


@click.group(
    "inventory", invoke_without_command=True,
    epilog="""\b
Examples:
  opskit -i inventory/production.yml inventory -l 'db:&pg_primary'
  opskit -i inventory/production.yml inventory --graph
  opskit -i inventory/ inventory --json | jq '.hosts | keys'
  opskit -i inventory/production.yml inventory check
""",
)
@click.option("--graph", is_flag=True, help="Print the group tree with its hosts. Example: --graph")
@click.option("--vars", "show_vars", is_flag=True,
              help="Include each host's merged vars in the table. Example: --vars -l app01")
@shared_options
@pass_app
@click.pass_context
def command(ctx: click.Context, app: AppContext, graph: bool, show_vars: bool) -> int | None:
    """List the hosts selected by --limit (all by default), or the group tree."""
    if ctx.invoked_subcommand is not None:
        return None
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


@command.command("check", epilog="""\b
Examples:
  opskit -i inventory/production.yml inventory check
  opskit -i inventory/ inventory check -l db
  opskit -i inventory/production.yml inventory check --json | jq '.problems[]'
Exit codes: 0 every setting is valid, 1 one line per problem (or the inventory does not load).
""")
@click.option("--discover", is_flag=True,
              help="Also query AWS for the hosts of EC2 sources (else their files and vars are "
                   "checked without any call). Example: --discover")
@shared_options
@pass_app
def check(app: AppContext, discover: bool) -> int:
    """Validate every setting of every selected host against its schema; connect nowhere.

    Loads the inventory (its own checks: YAML, ranges, groups, connection vars), then checks
    each host's domain vars (deploy:, snapshot:, postgres:, pgbouncer:, redis:, cache:, aws:,
    health:, lab:) against docs/settings.md: unknown keys (with the closest valid one), types,
    values, the inventory patterns they name, and what each domain derives from them.
    A problem shared by many hosts (a group's var) is reported once, where it is declared.
    An EC2 source is parsed and its vars checked without calling AWS, unless --discover.
    """
    from opskit import settings  # the schemas (pydantic) only for this subcommand

    inv = app.inventory(discover=discover)
    hosts = app.select() if inv.hosts else []
    problems = settings.check(hosts, inv)
    env = app.env
    if env.json:
        env.emit_json({"sources": inv.sources, "hosts": len(hosts), "ok": not problems,
                       "problems": [{"where": p.where, "key": p.key, "message": p.message,
                                     "hint": p.hint, "line": str(p)} for p in problems]})
    else:
        for p in problems:
            env.line(str(p))
        if not problems:
            unasked = (f" ({len(inv.undiscovered)} EC2 source(s) checked without asking AWS "
                       "for hosts: --discover)" if inv.undiscovered else "")
            env.line(f"{len(hosts)} hosts, every setting valid{unasked} "
                     f"({', '.join(inv.sources)})")
    return 1 if problems else 0
