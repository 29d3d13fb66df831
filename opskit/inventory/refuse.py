"""Inventory constructs opskit refuses instead of ignoring.

An Ansible inventory may say things opskit cannot honour: a Jinja template (opskit has no
template engine, so ``{{ db_host }}`` would become the literal address), a vaulted secret
(opskit has no vault password), ``ansible_become`` (opskit elevates per command, with
``--sudo``), a password, an ``ansible_*`` var of a connection plugin opskit does not use. Read
silently, each would make opskit act differently from what the inventory says; so each is a
one-line error naming the file, line and var, with a hint (docs/inventory.md, "Refused").

The var names opskit reads live here, in the inventory layer, because the inventory may not
import the layers that use them (``opskit_lease_dir`` is read by runner/lease.py).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from opskit.errors import InventoryError

# The ansible_* vars opskit honours (model.Host reads them; ssh_args.py parses the last two).
HONOURED_ANSIBLE = frozenset({
    "ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file",
    "ansible_connection", "ansible_ssh_common_args", "ansible_ssh_extra_args",
})
# Accepted and ignored, because ignoring them cannot make opskit act differently from what the
# inventory means: opskit's on-host programs are standard-library Python 3 run as
# `python3 -I -S` from PATH; a host without a python3 on PATH fails loudly ("python3: not
# found"), it never runs something else silently.
IGNORED_ANSIBLE = frozenset({"ansible_python_interpreter"})
# opskit's own vars: opskit_known_hosts (model.Host.known_hosts), opskit_lease_dir
# (runner/lease.py DIR_VAR). A new one must be added here, or inventories using it are refused.
OPSKIT_VARS = frozenset({"opskit_known_hosts", "opskit_lease_dir"})

VAULT_HINT = "decrypt it with ansible-vault, or give opskit `ansible-inventory --list` output"
TEMPLATE_HINT = ("opskit does not evaluate Jinja templates: write the value out, or give opskit "
                 "`ansible-inventory --list` output (Ansible renders nothing there either, so "
                 "check the value)")
VAULT_MARK = "$ANSIBLE_VAULT;"
TEMPLATE_MARKS = ("{{", "{%", "{#")

_BECOME_HINT = ("opskit does not escalate from inventory vars: commands that need root take "
                "--sudo (or connect as root); remove it")
_PASSWORD_HINT = ("opskit authenticates with SSH keys only (agent, ~/.ssh/config or "
                  "ansible_ssh_private_key_file); remove the password")
_SSH_BINARY_HINT = ("opskit connects with paramiko, not the ssh program, so ssh program "
                    "settings do not apply; remove it (ProxyJump and the rest come from "
                    "~/.ssh/config)")
_SPECIFIC_HINTS: dict[str, str] = {
    "ansible_ssh_host": "write ansible_host (the old name is not read by opskit)",
    "ansible_ssh_port": "write ansible_port (the old name is not read by opskit)",
    "ansible_ssh_user": "write ansible_user (the old name is not read by opskit)",
    "ansible_ssh_pass": _PASSWORD_HINT,
    "ansible_password": _PASSWORD_HINT,
    "ansible_ssh_password": _PASSWORD_HINT,
    "ansible_ssh_executable": _SSH_BINARY_HINT,
    "ansible_ssh_pipelining": _SSH_BINARY_HINT,
    "ansible_pipelining": _SSH_BINARY_HINT,
    "ansible_ssh_args": _SSH_BINARY_HINT,
    "ansible_group_priority": "opskit orders groups by depth then name only; remove it and "
                              "nest the group that must win deeper",
}


class Unsafe(str):
    """A value Ansible never templates (YAML ``!unsafe``, ``__ansible_unsafe`` in JSON)."""

    __slots__ = ()


class Vaulted:
    """A ``!vault`` value: kept only long enough to refuse it with its key and line."""

    __slots__ = ("line",)

    def __init__(self, line: int | None) -> None:
        self.line = line

    def __repr__(self) -> str:
        return "<!vault>"


def check_name(key: str, at: str, owner: str) -> None:
    """Refuse an ansible_* var opskit does not honour and an unknown opskit_* var."""
    if key.startswith("ansible_"):
        if key in HONOURED_ANSIBLE or key in IGNORED_ANSIBLE:
            return
        if key.startswith(("ansible_become", "ansible_sudo", "ansible_su_")) or \
                key == "ansible_su":
            hint = _BECOME_HINT
        elif key.endswith(("_pass", "_password")):
            hint = _PASSWORD_HINT
        else:
            hint = _SPECIFIC_HINTS.get(key) or _did_you_mean(
                key, HONOURED_ANSIBLE,
                "opskit does not honour it; remove it (keep Ansible-only vars in an inventory "
                "only Ansible reads)")
        raise InventoryError(f"{at}: {key} of {owner} is not supported by opskit", hint=hint)
    if key.startswith("opskit_") and key not in OPSKIT_VARS:
        raise InventoryError(f"{at}: unknown opskit var {key} of {owner}",
                             hint=_did_you_mean(key, OPSKIT_VARS,
                                                f"known: {', '.join(sorted(OPSKIT_VARS))}"))


def _did_you_mean(key: str, known: frozenset[str], otherwise: str) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return f"did you mean {close[0]}?" if close else otherwise


def offence(value: Any, path: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str] | None:
    """The first template or vaulted value in ``value`` (nested too): (key path, what)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, path)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            what = _string_offence(item)
            if what:
                return at, what
        elif isinstance(item, Vaulted):
            return at, "vault"
        elif isinstance(item, Mapping):
            for key, sub in reversed(list(item.items())):
                if isinstance(key, str) and _string_offence(key):
                    return (*at, key), _string_offence(key)  # type: ignore[return-value]
                stack.append((sub, (*at, key)))
        elif isinstance(item, (list, tuple)):
            stack.extend((sub, (*at, i)) for i, sub in reversed(list(enumerate(item))))
    return None


def _string_offence(text: str) -> str | None:
    if isinstance(text, Unsafe):
        return None  # Ansible uses it literally, and so does opskit
    if VAULT_MARK in text:
        return "vault"
    if any(mark in text for mark in TEMPLATE_MARKS):
        return "template"
    return None


def refuse_value(what: str, at: str, owner: str, path: tuple[Any, ...]) -> InventoryError:
    """The error for :func:`offence`'s finding at ``path`` (its first item is the var)."""
    name = ".".join(str(p) for p in path)
    if what == "vault":
        return InventoryError(f"{at}: {name} of {owner} is vault-encrypted", hint=VAULT_HINT)
    return InventoryError(f"{at}: {name} of {owner} is a Jinja template, which opskit does not "
                          "evaluate", hint=TEMPLATE_HINT)


def refuse_vaulted_file(path: str, text: str) -> None:
    """A whole file encrypted with ansible-vault."""
    if text.lstrip().startswith(VAULT_MARK):
        raise InventoryError(f"{path} line 1: the file is vault-encrypted", hint=VAULT_HINT)
