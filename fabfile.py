"""Fabric tasks over opskit's library: the same functions the CLI calls.

    fab -H 127.10.0.2:2222,127.10.0.3:2222 exec --command uptime
    fab exec --inventory inventory/lab.yml --limit app --command uptime
    fab inventory --inventory inventory/lab.yml

With ``-H`` each host is reached with opskit's connection rules (known_hosts checked, never
auto-added); without it, hosts come from the inventory and run in parallel through opskit's
runner, exactly as ``opskit exec`` does.
"""

from __future__ import annotations

import os
import sys

from fabric import Connection, task
from invoke import Context
from invoke.exceptions import Exit

from opskit import adhoc, journal
from opskit import inventory as inventory_mod
from opskit.commands.render import render_fleet_result, render_host_block
from opskit.errors import OpskitError
from opskit.fleet import RunOptions
from opskit.inventory import Host
from opskit.output import Environment


def _hosts(c: Context, inventory: str | None, limit: str | None) -> list[Host]:
    if isinstance(c, Connection):
        # `fab -H`: one host per task call, described by Fabric's own connection.
        host_vars = {"ansible_host": c.host, "ansible_port": c.port, "ansible_user": c.user}
        keys = c.connect_kwargs.get("key_filename")
        if keys:  # fab -i KEY
            host_vars["ansible_ssh_private_key_file"] = keys if isinstance(keys, str) else keys[0]
        return [Host(name=c.host, vars=host_vars, groups=("all",))]
    path = inventory or os.environ.get("OPSKIT_INVENTORY")
    if not path:
        raise Exit("error: no inventory (pass --inventory PATH or set OPSKIT_INVENTORY)", code=1)
    return inventory_mod.load(path).select(limit)


@task(help={
    "command": "Shell command to run on each host, e.g. uptime",
    "inventory": "Inventory file or directory (default $OPSKIT_INVENTORY)",
    "limit": "Host pattern, e.g. 'app:!app07'",
    "sudo": "Run with sudo",
    "forks": "At most N hosts in flight (default 50)",
    "timeout": "Per-host command timeout in seconds",
})
def exec(c, command, inventory=None, limit=None, sudo=False, forks=50, timeout=None):  # noqa: A001
    """Run a shell command on hosts with opskit's runner (journaled, like `opskit exec`)."""
    env = Environment()
    try:
        hosts = _hosts(c, inventory, limit)
    except OpskitError as exc:
        env.error(exc)
        raise Exit(code=exc.exit_code) from None
    options = RunOptions(forks=int(forks), command_timeout=float(timeout) if timeout else None)
    with env.progress(len(hosts), "exec") as observer:
        observer.on_finish.append(lambda r: render_host_block(env, r))
        result = adhoc.run_command(hosts, command, sudo=sudo, options=options, observer=observer)
    journal.record_fleet("fab exec", sys.argv[1:], result, details={"command": command})
    render_fleet_result(env, result, extra={"command": command})
    if result.exit_code:
        raise Exit(code=result.exit_code)


@task(help={"inventory": "Inventory file or directory", "limit": "Host pattern"})
def inventory(c, inventory=None, limit=None):
    """List inventory hosts with their address and groups."""
    env = Environment()
    try:
        hosts = _hosts(c, inventory, limit)
    except OpskitError as exc:
        env.error(exc)
        raise Exit(code=exc.exit_code) from None
    env.table(("host", "address", "port", "groups"),
              [(h.name, h.address, h.port or 22, ",".join(h.groups)) for h in hosts])
