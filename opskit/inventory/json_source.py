"""``ansible-inventory --list`` JSON, as a file or printed by an executable inventory script.

    {"_meta": {"hostvars": {"app01": {"ansible_host": "10.0.0.1"}}},
     "all": {"children": ["ungrouped", "web"]},
     "web": {"hosts": ["app01"], "vars": {"http_port": 8080}, "children": []}}

This is the format of Ansible's script inventory plugin: a group is ``{"hosts": [...],
"vars": {...}, "children": [...]}`` (or just a list of hosts); ``_meta.hostvars`` holds each
host's vars. A script is run as ``SCRIPT --list`` (argv, no shell); when its output has no
``_meta``, as ``SCRIPT --host HOST`` for each host, as Ansible does. A script that fails,
hangs past :data:`SCRIPT_TIMEOUT` or prints something that is not that JSON is a one-line error
naming the script and the last line it wrote on stderr.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from opskit.errors import InventoryError
from opskit.inventory import refuse
from opskit.inventory.collect import Collector, check_vars, kind, origins_of

SCRIPT_TIMEOUT = 60.0  # seconds for one run of an inventory script (Ansible has no limit)
GROUP_KEYS = ("hosts", "vars", "children")
FORMAT_HINT = 'the `ansible-inventory --list` format: {"_meta": {"hostvars": {...}}, ' \
    '"GROUP": {"hosts": [...], "vars": {...}, "children": [...]}}'


def is_list_format(data: Any, json_file: bool) -> bool:
    """Does a parsed document use the --list format rather than Ansible's YAML format?

    ``_meta`` says so; in a .json file, so does a group written as a list or with ``hosts``
    / ``children`` as lists (in a .yml file those are the usual indentation mistake, and
    get the YAML reader's hint).
    """
    if not isinstance(data, Mapping):
        return False
    if "_meta" in data:
        return True
    if not json_file:
        return False
    for body in data.values():
        if isinstance(body, list):
            return True
        if isinstance(body, Mapping) and any(
                isinstance(body.get(k), list) for k in ("hosts", "children")):
            return True
    return False


def add(collector: Collector, data: Any, source: str, host_vars_of: Any = None) -> None:
    """Add one --list document. ``host_vars_of(host)`` supplies vars when there is no
    ``_meta`` (a script's ``--host``); a file without ``_meta`` has no host vars."""
    if not isinstance(data, Mapping):
        raise InventoryError(f"{source}: the top level must be a mapping of groups (got "
                             f"{kind(data)})", hint=FORMAT_HINT)
    hostvars: Mapping[str, Any] | None = None
    members: dict[str, None] = {}  # every host of any group, in order
    for group, body in data.items():
        if group == "_meta":
            if not isinstance(body, Mapping):
                raise InventoryError(f"{_at(source, data, group)}: _meta must be a mapping",
                                     hint=FORMAT_HINT)
            hostvars = body.get("hostvars")
            if hostvars is not None and not isinstance(hostvars, Mapping):
                raise InventoryError(f"{_at(source, body, 'hostvars')}: _meta.hostvars must be "
                                     f"a mapping of host names (got {kind(hostvars)})",
                                     hint=FORMAT_HINT)
            continue
        _add_group(collector, source, data, group, body, members)
    if hostvars is not None:
        stray = [h for h in hostvars if h not in members]
        if stray:
            # Ansible drops these silently; a host that vanishes is a bug in the generator.
            raise InventoryError(f"{_at(source, hostvars, stray[0])}: host '{stray[0]}' has vars "
                                 "in _meta.hostvars but is in no group",
                                 hint="list it under a group's hosts (or under ungrouped)")
    for host in members:
        owner = f"host '{host}'"
        if hostvars is not None:
            got = hostvars.get(host) or {}
            at = _at(source, hostvars, host)
        elif host_vars_of is not None:
            got, at = host_vars_of(host), f"{source} --host {host}"
        else:
            got, at = {}, source
        checked = check_vars(got, at, owner, source=source if hostvars is not None else None)
        collector.set_host_vars(host, checked, origins_of(got, source, owner))


def _at(source: str, mapping: Any, key: Any) -> str:
    lines = getattr(mapping, "key_lines", None) or {}
    return f"{source} line {lines[key]}" if key in lines else source


def _add_group(collector: Collector, source: str, data: Mapping[str, Any], group: Any,
               body: Any, members: dict[str, None]) -> None:
    at = _at(source, data, group)
    if not isinstance(group, str) or not group.strip():
        raise InventoryError(f"{at}: group names must be non-empty strings (got {group!r})",
                             hint=FORMAT_HINT)
    collector.group(group)
    if body is None:
        return
    if isinstance(body, list):
        body = {"hosts": body}  # the old script format: a group is its list of hosts
    if not isinstance(body, Mapping):
        raise InventoryError(f"{at}: group '{group}' must be a mapping or a list of hosts "
                             f"(got {kind(body)})", hint=FORMAT_HINT)
    unknown = [k for k in body if k not in GROUP_KEYS]
    if unknown:
        # Ansible would take {"a": 1} for a host named like the group with vars a=1.
        raise InventoryError(f"{_at(source, body, unknown[0])}: unknown key '{unknown[0]}' in "
                             f"group '{group}'", hint=FORMAT_HINT)
    hosts = body.get("hosts") or []
    if not isinstance(hosts, list):
        raise InventoryError(f"{_at(source, body, 'hosts')}: hosts of group '{group}' must be a "
                             f"list (got {kind(hosts)})", hint=FORMAT_HINT)
    for host in hosts:
        if not isinstance(host, str) or not host:
            raise InventoryError(f"{_at(source, body, 'hosts')}: host names must be non-empty "
                                 f"strings (got {host!r}) in group '{group}'", hint=FORMAT_HINT)
        members.setdefault(host, None)
        collector.add_host(host, group, {})
    if body.get("vars") is not None:
        owner = f"group '{group}'"
        checked = check_vars(body["vars"], _at(source, body, "vars"), owner, source=source)
        collector.set_group_vars(group, checked, origins_of(body["vars"], source, owner))
    children = body.get("children") or []
    if not isinstance(children, list):
        raise InventoryError(f"{_at(source, body, 'children')}: children of group '{group}' "
                             f"must be a list (got {kind(children)})", hint=FORMAT_HINT)
    for child in children:
        if not isinstance(child, str) or not child or child == "all":
            raise InventoryError(f"{_at(source, body, 'children')}: bad child {child!r} of "
                                 f"group '{group}'", hint=FORMAT_HINT)
        collector.add_child(group, child, _at(source, body, "children"))


# --------------------------------------------------------------------------- scripts


def _object_hook(pairs: dict[str, Any]) -> Any:
    # ansible-inventory --list marks values it must not template / could not decrypt.
    unsafe = pairs.get("__ansible_unsafe")
    if len(pairs) == 1 and isinstance(unsafe, str):
        return refuse.Unsafe(unsafe)
    if len(pairs) == 1 and "__ansible_vault" in pairs:
        return refuse.Vaulted(None)
    return pairs


def loads(text: str, what: str, stderr: str = "") -> Any:
    """Parse JSON printed by a script; an error names it and its last stderr line."""
    try:
        return json.loads(text, object_hook=_object_hook)
    except (ValueError, RecursionError) as exc:
        raise InventoryError(f"{what} printed invalid JSON ({exc}){_said(stderr)}",
                             hint="run it by hand to see its output") from None


class NotAProgram(Exception):
    """The executable file has no #! line (ENOEXEC): Ansible then reads it as a file."""


def run(script: str, args: list[str]) -> tuple[str, str]:
    """Run ``script args`` (argv, no shell): (stdout, stderr), or a one-line error."""
    argv = [script, *args]
    what = " ".join([script, *args])
    try:
        # Own session: on timeout the script's children die with it, and nothing is left
        # holding the pipes open.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            raise NotAProgram(script) from None
        raise InventoryError(f"{script}: cannot run the inventory script: {exc.strerror}",
                             hint="check its #! line and that it is executable") from None
    try:
        out, err = proc.communicate(timeout=SCRIPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        raise InventoryError(f"{what} did not finish within {SCRIPT_TIMEOUT:g} s"
                             f"{_said(_text(err))}", hint="run it by hand to see where it "
                             "hangs") from None
    stderr = _text(err)
    if proc.returncode != 0:
        raise InventoryError(f"{what} exited with status {proc.returncode}{_said(stderr)}",
                             hint="run it by hand to see why it fails")
    try:
        return out.decode("utf-8"), stderr
    except UnicodeDecodeError:
        raise InventoryError(f"{what} printed output that is not UTF-8{_said(stderr)}",
                             hint="run it by hand to see its output") from None


def add_script(collector: Collector, script: str, listing: tuple[str, str]) -> None:
    """Add what an inventory script printed for ``--list`` (run again with ``--host`` if its
    output has no ``_meta``)."""
    data = loads(*listing[:1], f"{script} --list", listing[1])

    def host_vars_of(host: str) -> Any:
        text, stderr = run(script, ["--host", host])
        return loads(text, f"{script} --host {host}", stderr) if text.strip() else {}

    add(collector, data, f"{script} --list", host_vars_of)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _said(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f"; it said: {lines[-1][:200]}" if lines else ""
