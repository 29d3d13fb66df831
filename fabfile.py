"""Fabric tasks over opskit's library: the same functions the CLI calls.

    fab -H 127.10.0.2:2222,127.10.0.3:2222 exec --command uptime
    fab exec --inventory inventory/lab.yml --limit app --command uptime
    fab inventory --inventory inventory/lab.yml
    fab deploy --inventory inventory/lab.yml --ref v2 --batch 1,50%
    fab rollback --inventory inventory/lab.yml
    fab releases --inventory inventory/lab.yml

With ``-H`` each host is reached with opskit's connection rules (known_hosts checked, never
auto-added); without it, hosts come from the inventory and run in parallel through opskit's
runner, exactly as ``opskit exec`` does.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from fabric import Connection, task
from invoke import Context
from invoke.exceptions import Exit

from opskit import deploy as deploy_mod
from opskit import inventory as inventory_mod
from opskit import journal
from opskit.commands.render import render_fleet_result, render_host_block
from opskit.errors import OpskitError
from opskit.inventory import Host
from opskit.output import Environment
from opskit.runner import adhoc
from opskit.runner.fleet import RunOptions


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


def _inventory_hosts(inventory: str | None, limit: str | None, default: str) -> list[Host]:
    path = inventory or os.environ.get("OPSKIT_INVENTORY")
    if not path:
        raise Exit("error: no inventory (pass --inventory PATH or set OPSKIT_INVENTORY)", code=1)
    return inventory_mod.load(path).select(limit or default)


def _fail(env: Environment, exc: OpskitError) -> Exit:
    env.error(exc)
    return Exit(code=exc.exit_code)


@task(help={
    "ref": "Git ref of deploy.repo to deploy, e.g. v2",
    "artifact": "A ready .tar.gz instead of --ref",
    "inventory": "Inventory file or directory (default $OPSKIT_INVENTORY)",
    "limit": "Host pattern (default: app)",
    "batch": "Rolling batches, e.g. 1,5,25% (default 1,25%)",
    "max_fail_percent": "Stop when more than P% of a batch failed (default 0)",
    "no_auto_rollback": "Leave failed hosts on the new release",
    "forks": "At most N hosts in flight (default 50)",
})
def deploy(c, ref=None, artifact=None, inventory=None, limit=None, batch="1,25%",
           max_fail_percent=0, no_auto_rollback=False, forks=50):
    """Deploy a release with opskit's rolling deploy (journaled, like `opskit deploy --yes`)."""
    env = Environment()
    try:
        hosts = _inventory_hosts(inventory, limit, "app")
        deploy_mod.load_configs(hosts)
        options = deploy_mod.DeployOptions(batch, float(max_fail_percent), not no_auto_rollback)
        with tempfile.TemporaryDirectory(prefix="opskit-deploy-") as tmp:
            art = deploy_mod.build(hosts, ref, artifact, Path(tmp))
            with env.progress(len(hosts), "deploy") as observer:
                observer.on_finish.append(lambda r: render_host_block(env, r))
                result = deploy_mod.deploy(hosts, art, options, RunOptions(forks=int(forks)),
                                           observer=observer, note=env.note)
    except OpskitError as exc:
        raise _fail(env, exc) from None
    journal.record_fleet("fab deploy", sys.argv[1:], result.fleet,
                         details={"release": art.release, "revision": art.revision})
    render_fleet_result(env, result.fleet, extra={"release": art.release})
    if result.exit_code:
        raise Exit(code=result.exit_code)


@task(help={"to": "Release id (default: the previous one)", "inventory": "Inventory",
            "limit": "Host pattern (default: app)"})
def rollback(c, to=None, inventory=None, limit=None):
    """Switch current back to the previous (or a named) release, reload, check health."""
    env = Environment()
    try:
        hosts = _inventory_hosts(inventory, limit, "app")
        result = deploy_mod.rollback(hosts, to, RunOptions())
    except OpskitError as exc:
        raise _fail(env, exc) from None
    journal.record_fleet("fab rollback", sys.argv[1:], result, details={"to": to})
    render_fleet_result(env, result, extra={"to": to})
    if result.exit_code:
        raise Exit(code=result.exit_code)


@task(help={"inventory": "Inventory", "limit": "Host pattern (default: app)"})
def releases(c, inventory=None, limit=None):
    """Current release per host, and the hosts that drift from the majority."""
    env = Environment()
    try:
        result = deploy_mod.list_releases(_inventory_hosts(inventory, limit, "app"),
                                          RunOptions())
    except OpskitError as exc:
        raise _fail(env, exc) from None
    majority, drifted = deploy_mod.drift(result)
    env.table(("host", "status", "current"),
              [(r.host, r.status, (r.value or {}).get("current")) for r in result.results])
    env.line(f"majority: {majority}; drift: {', '.join(drifted) or 'none'}")
