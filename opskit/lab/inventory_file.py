"""Write the lab's Ansible-compatible inventory (inventory/lab.yml by default).

Every group (lb, app, db > pg_primary/pg_replica, redis > redis_master/redis_replica) is
always present, empty when the lab is too small to have such a host, so patterns and
fabfile tasks can name a group without checking the lab's size first.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import yaml

from opskit.lab import keys
from opskit.lab.layout import ROLES, SUBGROUPS, HostSpec

HEADER = "# Written by `opskit lab up` -- the local lab fleet. Do not edit; it is regenerated.\n"


def render(specs: Sequence[HostSpec], *, port: int, state_dir: pathlib.Path) -> dict[str, Any]:
    known = keys.known_hosts(state_dir)
    all_vars = {
        "ansible_user": "root",
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
    return {"all": {"vars": all_vars, "children": children}}


def _hosts(specs: Any) -> dict[str, Any]:
    return {"hosts": {s.name: {"ansible_host": s.address} for s in specs}}


def write(
    path: pathlib.Path, specs: Sequence[HostSpec], *, port: int, state_dir: pathlib.Path
) -> pathlib.Path:
    """Write the inventory atomically (readers never see half a file); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(render(specs, port=port, state_dir=state_dir), sort_keys=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(HEADER + body)
    os.replace(tmp, path)
    return path
