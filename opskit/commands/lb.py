"""``opskit lb``: the nginx tier in front of the app hosts (docs/lb.md)."""

from __future__ import annotations

import click

from opskit.commands import runbook_cmd
from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.errors import UsageError
from opskit.lb import status as lb_status
from opskit.runner import hostpool

# Without -l: every host with nginx settings.
DEFAULT_SELECTION = "all"


@click.group("lb", epilog="""\b
Examples:
  opskit lb status
  opskit lb status -l lb1 --json
""")
def command() -> None:
    """The nginx tier: its hosts and the app hosts in their upstreams (docs/lb.md)."""


@command.command("status", epilog="""\b
Examples:
  opskit lb status
  opskit lb status -l lb --json | jq '.hosts[] | {name, active_connections}'
Per lb host (a host with nginx: settings): nginx running (its master's pid
file), `nginx -t`, active connections (stub_status) and every app host of its
upstream include, up or down. Exit status: 0 all well, 2 warnings (nginx
down, a failing config, an app host out of rotation, an unreadable upstream
file), 3 an lb host unreachable.
""")
@shared_options
@pass_app
def status(app: AppContext) -> int:
    """Each lb host's nginx and the app hosts its upstream holds, up or down."""
    env = app.env
    inventory = app.inventory()
    hosts = lb_status.lb_hosts(app.select(default=DEFAULT_SELECTION))
    if not hosts:
        raise UsageError("no host of the selection has nginx: settings",
                         hint="give the lb hosts `nginx: {upstream_file: ...}` (docs/lb.md), "
                              "or select them with -l")
    with hostpool.pool(app.run_options()) as pool:
        states = lb_status.gather(hosts, pool,
                                  lb_status.names_by_address(list(inventory.hosts.values())))
    warns = [w for st in states for w in st.warnings()]
    code = runbook_cmd.exit_code(any(not st.reachable for st in states), warns)
    if env.json:
        env.emit_json({"hosts": [st.to_dict() for st in states], "warnings": warns,
                       "exit_code": code})
        return code
    rows = []
    for st in states:
        up = [st.host_of(s) or s.address for s in st.servers if not s.down]
        down = [st.host_of(s) or s.address for s in st.servers if s.down]
        rows.append((st.name,
                     "unreachable" if not st.reachable else "running" if st.running else "DOWN",
                     "-" if st.config_ok is None else "ok" if st.config_ok else "FAILS",
                     "-" if st.stub is None else str(st.stub.active),
                     f"{len(up)} up" + (f", {len(down)} down" if down else ""),
                     " ".join(up + [f"{a} (down)" for a in down]) or "-"))
    env.table(("lb host", "nginx", "nginx -t", "active", "upstream", "app hosts"), rows,
              styles=[None if not st.warnings() else "bold yellow" for st in states])
    for w in warns:
        env.line(f"WARNING: {w}", style="bold yellow")
    if not warns:
        env.line(f"healthy: {len(states)} lb host{'' if len(states) == 1 else 's'}, nginx "
                 "running, config valid, every app host in rotation")
    return code
