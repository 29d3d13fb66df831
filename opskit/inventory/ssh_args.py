"""``ansible_ssh_common_args`` / ``ansible_ssh_extra_args``: the ssh options opskit honours.

Ansible hands these words to the ssh program; opskit connects with paramiko, so it reads the
few options that say where and how to connect and refuses the rest (an ignored ProxyCommand
or ``StrictHostKeyChecking=no`` would connect differently from what the inventory says):

- ``-o Port=N``, ``-o User=U``, ``-i KEY`` / ``-o IdentityFile=KEY``: like ansible_port,
  ansible_user, ansible_ssh_private_key_file (a different value there too is a conflict);
- ``-o UserKnownHostsFile=PATH [PATH…]``: extra known_hosts files, like opskit_known_hosts
  (opskit reads them *in addition to* the user's and the system's files);
- ``-o StrictHostKeyChecking=yes``: opskit's default; any other value is refused.

``-J`` / ``-o ProxyJump`` are refused with a pointer to ~/.ssh/config, where opskit does
honour ProxyJump (transport/connection.py).
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from dataclasses import dataclass

COMMON, EXTRA = "ansible_ssh_common_args", "ansible_ssh_extra_args"
_PROXY_HINT = ("opskit honours ProxyJump from ~/.ssh/config: put `ProxyJump` in a Host block "
               "there and remove it here")


class SshArgsError(ValueError):
    """An option opskit does not honour, or a malformed one; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class SshOptions:
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    known_hosts: tuple[str, ...] = ()


_OPTION = re.compile(r"\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$", re.S)


def options(common: object, extra: object) -> SshOptions:
    """Both vars' options merged; the same option with two values is refused."""
    merged: dict[str, object] = {}
    for var, text in ((COMMON, common), (EXTRA, extra)):
        if text is None or text == "":
            continue
        if not isinstance(text, str):
            raise SshArgsError(f"{var} must be a string (got {text!r})", "quote the value")
        found = parse(text)
        for name in ("port", "user", "key_file"):
            new = getattr(found, name)
            if new is not None and merged.get(name) not in (None, new):
                raise SshArgsError(f"{var} sets {name} {new!r}, another ssh args var sets "
                                   f"{merged[name]!r}", "keep one of them")
            if new is not None:
                merged[name] = new
        merged["known_hosts"] = (*merged.get("known_hosts", ()), *found.known_hosts)  # type: ignore[misc]
    return SshOptions(**merged)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def parse(text: str) -> SshOptions:
    """The honoured options in one var's text; cached: a group's args apply to many hosts."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SshArgsError(f"cannot split {text!r} into words: {exc}",
                           "check the quotes") from None
    found: dict[str, object] = {}
    known: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        flag, attached = word[:2], word[2:]
        if flag in ("-o", "-i", "-J") and word.startswith("-"):
            if attached:
                value = attached
            elif i + 1 < len(words):
                i += 1
                value = words[i]
            else:
                raise SshArgsError(f"{flag} without a value", "e.g. -o Port=2222")
            if flag == "-J":
                raise SshArgsError(f"-J {value} (a jump host) is not supported here",
                                   _PROXY_HINT)
            if flag == "-i":
                _set(found, "key_file", os.path.expanduser(value), word)
            else:
                _option(value, found, known)
        else:
            raise SshArgsError(
                f"ssh argument {word!r} is not supported by opskit",
                "opskit honours only -o Port=, -o User=, -i KEY, -o UserKnownHostsFile=, "
                "-o StrictHostKeyChecking=yes; use ansible_port / ansible_user / "
                "ansible_ssh_private_key_file or ~/.ssh/config instead")
        i += 1
    return SshOptions(known_hosts=tuple(known), **found)  # type: ignore[arg-type]


def _option(text: str, found: dict[str, object], known: list[str]) -> None:
    match = _OPTION.fullmatch(text)
    if not match or not match.group(2):
        raise SshArgsError(f"-o {text!r} is not an ssh option (Name=value)", "e.g. -o Port=2222")
    name, value = match.group(1).lower(), match.group(2)
    if name == "port":
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise SshArgsError(f"-o Port={value} is not a port 1-65535", "e.g. -o Port=2222")
        _set(found, "port", int(value), f"-o {text}")
    elif name == "user":
        _set(found, "user", value, f"-o {text}")
    elif name == "identityfile":
        _set(found, "key_file", os.path.expanduser(value), f"-o {text}")
    elif name == "userknownhostsfile":
        known.extend(os.path.expanduser(p) for p in value.split())
    elif name == "stricthostkeychecking":
        if value.lower() != "yes":
            raise SshArgsError(
                f"-o StrictHostKeyChecking={value} is refused: opskit always checks host keys",
                "remove it; an unknown host is accepted only for one run with "
                "--insecure-accept-unknown-host-keys")
    elif name in ("proxyjump", "proxycommand"):
        raise SshArgsError(f"-o {text} is not supported here", _PROXY_HINT)
    else:
        raise SshArgsError(
            f"ssh option {match.group(1)} is not supported by opskit",
            "opskit honours only Port, User, IdentityFile, UserKnownHostsFile and "
            "StrictHostKeyChecking=yes; put other ssh settings in ~/.ssh/config")


def _set(found: dict[str, object], name: str, value: object, word: str) -> None:
    # ssh keeps the first value of an option; two different ones are a mistake either way.
    if found.get(name) not in (None, value):
        raise SshArgsError(f"{word} contradicts an earlier {name} {found[name]!r}",
                           "give each option once")
    found[name] = value
