"""Write the lab's Ansible-compatible inventory (inventory/lab.yml by default).

Every group (lb, app, db > pg_primary/pg_replica, redis > redis_master/redis_replica, and
the PostgreSQL cluster's top-level ``postgres`` and ``pgbouncer``, see layout.py) is always
present, empty when the lab is too small to have such a host, so patterns and fabfile tasks
can name a group without checking the lab's size first.

Vars beyond the connection ones come from the lab (each host's ``aws:``) and its services
(e.g. ``deploy:`` of ``app``): group vars go under their group, host vars under
``all.hosts.<name>`` (every mention's vars are merged), so the group sections keep only
addresses. ``all.hosts`` lists hosts in the groups' order, since a host's first mention sets
its place in the inventory.

Two more files beside it hold the same with another login: ``ops_path`` (lab-ops.yml,
``ansible_user: ops``, passwordless sudo) and ``dev_path`` (lab-dev.yml, ``ansible_user: dev``,
whose sudo wants the password in ``accounts.dev_password_path``: never in an inventory), so a
test picks root, ops or dev by the file it passes to -i.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import yaml

from opskit.lab import accounts, keys
from opskit.lab.layout import CLUSTER_GROUPS, ROLES, SUBGROUPS, HostSpec
from opskit.lab.services import InventoryVars


def user_path(path: pathlib.Path, user: str) -> pathlib.Path:
    """The inventory beside ``path`` for another login (lab.yml -> lab-ops.yml)."""
    return path.with_name(f"{path.stem}-{user}{path.suffix}")


def ops_path(path: pathlib.Path) -> pathlib.Path:
    """The second inventory beside ``path`` (lab.yml -> lab-ops.yml): the same hosts and vars,
    reached as the non-root ``ops`` user (accounts.py) instead of root."""
    return user_path(path, accounts.OPS_USER)


def dev_path(path: pathlib.Path) -> pathlib.Path:
    """The third (lab.yml -> lab-dev.yml): reached as ``dev``, whose sudo wants a password."""
    return user_path(path, accounts.DEV_USER)


HEADER = "# Written by `opskit lab up` -- the local lab fleet. Do not edit; it is regenerated.\n"


def render(
    specs: Sequence[HostSpec],
    *,
    port: int,
    state_dir: pathlib.Path,
    extra: InventoryVars | None = None,
    user: str = "root",
) -> dict[str, Any]:
    extra = extra or InventoryVars()
    known = keys.known_hosts(state_dir)
    all_vars = {
        "ansible_user": user,
        "ansible_port": port,
        "ansible_ssh_private_key_file": str(keys.client_key(state_dir)),
        "opskit_known_hosts": str(known),
        # Lets Ansible (benchmarks) check host keys against the lab's own known_hosts.
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes",
        "lab": {"state_dir": str(state_dir)},
    }
    children: dict[str, Any] = {}
    for role in ROLES:
        members = [s for s in specs if s.role == role]
        if role in SUBGROUPS:
            children[role] = {
                "children": {
                    sub: _hosts(s for s in members if sub in s.groups) for sub in SUBGROUPS[role]
                }
            }
        else:
            children[role] = _hosts(members)
    for group in CLUSTER_GROUPS:  # after the roles: a host's first mention stays its role's
        children[group] = _hosts(s for s in specs if group in s.groups)
    for group, group_vars in extra.group_vars.items():
        if group_vars:
            _find_group(children, group)["vars"] = dict(group_vars)
    top: dict[str, Any] = {"vars": all_vars, "children": children}
    # Group order (lb, app, db, redis; growth order inside a role), as in ``children``.
    names = [s.name for s in sorted(specs, key=lambda s: (ROLES.index(s.role), s.index))]
    host_vars = {n: dict(extra.host_vars[n]) for n in names if extra.host_vars.get(n)}
    if host_vars:
        top["hosts"] = host_vars
    return {"all": top}


class _PlainDumper(yaml.SafeDumper):
    """Every value written out where it is used: hosts may share a settings dict (the second
    cluster's witnesses, its PgBouncers), and `&id001` anchors would make lab.yml hard to read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _find_group(children: dict[str, Any], name: str) -> dict[str, Any]:
    """The body of group ``name`` at any depth (a role, or a subgroup such as pg_primary)."""
    if name in children:
        return children[name]  # type: ignore[no-any-return]
    for body in children.values():
        if name in body.get("children", {}):
            return body["children"][name]  # type: ignore[no-any-return]
    raise KeyError(f"no group {name} in the lab inventory")


def _hosts(specs: Any) -> dict[str, Any]:
    return {"hosts": {s.name: {"ansible_host": s.address} for s in specs}}


def write(
    path: pathlib.Path,
    specs: Sequence[HostSpec],
    *,
    port: int,
    state_dir: pathlib.Path,
    extra: InventoryVars | None = None,
    user: str = "root",
) -> pathlib.Path:
    """Write the inventory atomically (readers never see half a file); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = render(specs, port=port, state_dir=state_dir, extra=extra, user=user)
    body = yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, width=1000)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(HEADER + body)
    os.replace(tmp, path)
    return path
