"""The one place that masks secrets before anything is shown or stored.

Every sink uses it: the journal (argv, details, outcomes), ``--json`` documents, the human
output and error lines (``opskit.output.Environment``), the inventory views. A value is
secret when its name looks secret (``PGPASSWORD``, ``--db-password``, ``REDISCLI_AUTH``,
``aws.secret_access_key``, ``api_token``...) or when it is the password of a URL
(``postgres://app:PW@db1``). Names of files, paths and ids holding a key
(``ansible_ssh_private_key_file``, ``access_key_id``) are not secrets and stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MASK = "***"

# "key" alone is too common a field name ("key" of a health check, a tag's key) to mask.
SECRET_WORDS = re.compile(
    r"pass|pwd|secret|token|credential|auth|(api|private|signing|encryption|master|session)"
    r"[_-]?key", re.IGNORECASE)
# ...unless the name says it holds where the secret is, what kind it is, or a public id,
# or it is a flag that asks for one (--ask-sudo-pass: the word after it is no secret).
_NOT_SECRET = re.compile(r"(file|path|dir|_id|-id|_type|_method|_name)$|^ask[_-]",
                         re.IGNORECASE)

_NAME = r"[A-Za-z_][\w.-]*"
_VALUE = r"(?:\"[^\"]*\"|'[^']*'|[^\s'\"]+)"
# NAME=VALUE (env assignments, --opt=value, key=value pairs in messages)
_ASSIGN = re.compile(rf"(?<![\w.-])(?P<name>-{{0,2}}{_NAME})=(?P<value>{_VALUE})")
# --name VALUE (an option and its separate value)
_OPTION = re.compile(rf"(?<![\w-])(?P<name>--{_NAME})(?P<sep>\s+)(?P<value>(?!-){_VALUE})")
# 'name': 'value' / "name": "value" (a dict's repr or JSON inside a message)
_QUOTED = re.compile(
    rf"(?P<q>['\"])(?P<name>{_NAME})(?P=q)(?P<sep>\s*:\s*)(?P<vq>['\"])(?P<value>.*?)(?P=vq)")
# scheme://user:PASSWORD@host
_URL = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)(?P<value>[^\s@/]+)(?=@)",
                  re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """True for a name whose value must not be shown: ``PGPASSWORD``, ``--api-token``..."""
    bare = name.lstrip("-")
    return bool(SECRET_WORDS.search(bare)) and not _NOT_SECRET.search(bare)


def mask_text(text: str) -> str:
    """``text`` with every secret-looking value replaced by ``***``."""
    if not text:
        return text

    def assign(m: re.Match[str]) -> str:
        return f"{m['name']}={MASK}" if is_secret_name(m["name"]) else m[0]

    def option(m: re.Match[str]) -> str:
        return f"{m['name']}{m['sep']}{MASK}" if is_secret_name(m["name"]) else m[0]

    def quoted(m: re.Match[str]) -> str:
        if not is_secret_name(m["name"]):
            return m[0]
        return f"{m['q']}{m['name']}{m['q']}{m['sep']}{m['vq']}{MASK}{m['vq']}"

    text = _ASSIGN.sub(assign, text)
    text = _OPTION.sub(option, text)
    text = _QUOTED.sub(quoted, text)
    return _URL.sub(lambda m: m["head"] + MASK, text)


def mask_argv(argv: Sequence[str]) -> list[str]:
    """A command line with secret values masked: ``--secret-ish VALUE`` (two arguments),
    ``--secret-ish=VALUE``, ``K=V``, and secrets inside an argument that is itself a shell
    command (``exec -- 'PGPASSWORD=hunter2 psql'``)."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append(MASK)
            mask_next = False
        elif arg.startswith("--") and "=" not in arg and is_secret_name(arg):
            out.append(arg)
            mask_next = True
        else:
            out.append(mask_text(arg))
    return out


def mask_data(value: Any, name: str | None = None) -> Any:
    """A copy of a JSON-like document with secrets masked: the scalar value of a
    secret-looking key, and secrets inside every string (see :func:`mask_text`)."""
    if isinstance(value, Mapping):
        return {k: mask_data(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_data(v) for v in value]
    if name is not None and value is not None and is_secret_name(name) \
            and not isinstance(value, bool):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    return value
