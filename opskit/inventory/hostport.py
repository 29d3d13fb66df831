"""A host pattern as an inventory file writes it: ``app[01:25]``, ``db1:2222``, ``[::1]:22``.

Ansible's file plugins (yaml and ini) split an optional ``:PORT`` off a pattern whose host part
is a host name, an IPv4 address or a bracketed address, then expand ranges; anything else is
taken as the literal name. The port becomes ``ansible_port`` of hosts the pattern creates
(Ansible sets it when it first meets the host only, and so does the caller).
"""

from __future__ import annotations

import re

from opskit.errors import InventoryError
from opskit.inventory import hostrange

_RANGE = r"\[[a-z0-9]+:[a-z0-9]+(?::[0-9]+)?\]"
_LABEL = rf"(?:\w|{_RANGE})(?:[\w-]|{_RANGE})*(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.I)
_BRACKETED = re.compile(r"\[(.+)\]:([0-9]+)")
_HOSTPORT = re.compile(r"((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)")
_IPV6 = re.compile(r"[0-9a-f:.\[\]]*:[0-9a-f:.\[\]]*", re.I)
RANGE_HINT = "a range is [begin:end] or [begin:end:stride], e.g. app[01:25] or db[a:c]"


def split_port(pattern: str) -> tuple[str, int | None]:
    """``(host part, port)``; ``(pattern, None)`` when it has no port Ansible would take."""
    bracketed = _BRACKETED.fullmatch(pattern)
    if bracketed:
        host = bracketed.group(1)
        if _HOSTNAME.fullmatch(host) or _IPV6.fullmatch(host):
            return host, int(bracketed.group(2))
        return pattern, None
    match = _HOSTPORT.fullmatch(pattern)
    if match and match.group(1) and _HOSTNAME.fullmatch(match.group(1)):
        return match.group(1), int(match.group(2))
    return pattern, None


def expand(pattern: str, at: str, group: str) -> tuple[list[str], int | None]:
    """The host names and port of one pattern; a bad range is a one-line error."""
    host, port = split_port(pattern)
    if port is not None and not 1 <= port <= 65535:
        raise InventoryError(f"{at}: port {port} of '{pattern}' in group '{group}' is not "
                             "1-65535", hint="e.g. db1:2222")
    try:
        return hostrange.expand(host), port
    except hostrange.RangeError as exc:
        raise InventoryError(f"{at}: {exc} in group '{group}'", hint=RANGE_HINT) from None
