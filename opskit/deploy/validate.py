"""What the deploy accepts from outside: release ids, pids, host words, shared paths.

Release ids come back from hosts (the ``releases/`` listing, ``current``'s target) and from
``--to``; a host is not trusted to name its releases, so only the grammar opskit generates
(``artifact.release_id``: UTC time to the millisecond, ``-``, 7 hex digits of the revision)
is a release. Host names and addresses end up in the inventory's command templates; with the
EC2 source the name is a ``Name`` tag anyone with ec2:CreateTags can set.
"""

from __future__ import annotations

import re

from opskit.errors import UsageError

RELEASE_ID = re.compile(r"[0-9]{17}-[0-9a-f]{7}")
RELEASE_HINT = "release ids look like 20261124034512123-3f2a9c1 (see `opskit releases`)"
# A DNS name, an IPv4 or IPv6 address, an inventory name like app07 or web-1.example.com: what
# shlex.quote leaves alone, minus what could change the meaning of a URL (@ / + = , %); never a
# leading "-" (it would be an option to the command it is pasted into).
_HOST_WORD = re.compile(r"[A-Za-z0-9_.:][A-Za-z0-9_.:-]{0,252}")


def is_release_id(name: str) -> bool:
    return RELEASE_ID.fullmatch(name) is not None


def check_release_id(name: str, what: str = "release name") -> str:
    """``name`` if it is a release id opskit could have made; UsageError (exit 1) otherwise."""
    if not is_release_id(name):
        raise UsageError(f"bad {what} {name!r}", hint=RELEASE_HINT)
    return name


def is_host_word(value: str) -> bool:
    """Whether a host name or address may be pasted into a command or URL template."""
    return _HOST_WORD.fullmatch(value) is not None


def pid(text: str) -> int | None:
    """A process id read from a pid file: a plain decimal integer > 1, else None.

    0 and negative numbers address process groups or every process of the user with kill(2)
    (-1 as root: the whole host), 1 is init.
    """
    if not text.isascii() or not text.isdigit() or text.startswith("0"):
        return None
    value = int(text)
    return value if value > 1 else None


def is_inside_path(value: str) -> bool:
    """A relative path with no ``..`` (and no empty, ``.``-only or NUL-containing path)."""
    if not value or value.startswith("/") or "\0" in value:
        return False
    parts = [p for p in value.split("/") if p not in ("", ".")]
    return bool(parts) and ".." not in parts
