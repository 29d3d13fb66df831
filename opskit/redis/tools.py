"""redis-cli run on the instance's own host over opskit's SSH session (no Redis port needs to
be open to the operator). Arguments are shell-quoted; replies come back raw (no TTY).

AUTH: the password reaches redis-cli only through REDISCLI_AUTH, set by the shell on the host
from the instance's ``password_file`` there, or from the first line of stdin (a
``secret_file`` here): never in an argv (``ps`` on the host would show it), a journal or
output. TLS: ``--tls`` with the CA, cert and key paths of the settings (paths, no secret)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from opskit.redis.config import Instance
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session, StepOutput

SEP = "--opskit--"
# Replies (or redis-cli's own words) that mean the command did not happen.
_REFUSED = ("ERR", "WRONGTYPE", "NOAUTH", "WRONGPASS", "NOPERM", "READONLY",
            "Could not connect", "AUTH failed", "Error:")


def argv(i: Instance, *args: str) -> list[str]:
    """redis-cli's words for ``i`` (its password is not among them)."""
    words = [i.cli, "-h", i.address, "-p", str(i.port)]
    if i.tls is not None:
        words += ["--tls", "--cacert", i.tls.ca]
        if i.tls.cert and i.tls.key:
            words += ["--cert", i.tls.cert, "--key", i.tls.key]
    if i.auth is not None and i.auth.user:
        words += ["--user", i.auth.user]
    return [*words, *args]


def argv_text(i: Instance, *args: str) -> str:
    return shlex.join(argv(i, *args))


@dataclass(frozen=True)
class Script:
    """Shell text for the host and the bytes its stdin starts with (the password line when
    the secret is ours to send)."""

    text: str
    stdin: bytes = b""


def script(i: Instance, body: str) -> Script:
    """``body`` (shell text that runs redis-cli through :func:`argv`) with the password put
    where redis-cli reads it."""
    auth = i.auth
    if auth is None:
        return Script(body)
    # `read` fails on a last line without a newline, but sets the variable: test it instead.
    get = 'IFS= read -r REDISCLI_AUTH; [ -n "$REDISCLI_AUTH" ]'
    if auth.password_file is not None:
        get = f"{{ IFS= read -r REDISCLI_AUTH < {shlex.quote(auth.password_file)}; " \
              '[ -n "$REDISCLI_AUTH" ]; }'
    fail = f"echo {shlex.quote('Error: no Redis password read for ' + i.name)}; exit 3"
    prelude = f"{{ {get}; }} || {{ {fail}; }}; export REDISCLI_AUTH; "
    return Script(prelude + body, auth.secret.line() if auth.secret is not None else b"")


def run(s: Session, i: Instance, body: str, *, stdin: bytes = b"",
        timeout: float = 15.0) -> StepOutput:
    """``body`` on ``i``'s host with its password in place (never raises on exit status)."""
    sc = script(i, body)
    data = sc.stdin + stdin
    if not data:
        return s.run(sc.text, check=False, timeout=timeout)
    return s.run_input(sc.text, data, check=False, timeout=timeout)


def call(s: Session, i: Instance, *args: str, timeout: float = 15.0) -> str:
    """One command; its raw reply. An error reply or no connection raises CommandFailed."""
    # -e: redis-cli exits non-zero on an error reply (it exits 0 on them otherwise).
    words = argv(i, *args)
    out = run(s, i, shlex.join([words[0], "-e", *words[1:]]), timeout=timeout)
    reply = out.stdout.strip()
    if out.exit_status != 0 or reply.startswith(_REFUSED):
        why = reply or out.stderr.strip() or f"exit status {out.exit_status}"
        raise CommandFailed(f"{i.name}: {' '.join(args[:2])}: {why.splitlines()[-1][:200]}",
                            out.exit_status, out.stderr)
    return reply


def transaction(s: Session, i: Instance, commands: Sequence[Sequence[str]],
                timeout: float = 15.0) -> list[str]:
    """MULTI, the commands, EXEC in one connection (all or nothing); the EXEC replies."""
    lines = ["MULTI", *(shlex.join(c) for c in commands), "EXEC"]
    out = run(s, i, shlex.join(argv(i)), stdin=("\n".join(lines) + "\n").encode(),
              timeout=timeout)
    replies = [x.strip() for x in out.stdout.splitlines() if x.strip()]
    # Replies: OK (MULTI), QUEUED per command, then one line per EXEC result.
    queued = replies[1:1 + len(commands)]
    results = replies[1 + len(commands):]
    if out.exit_status != 0 or replies[:1] != ["OK"] or any(q != "QUEUED" for q in queued) \
            or any(r.startswith(("ERR", "EXECABORT")) for r in results) or not results:
        said = " | ".join(replies)[-300:] or out.stderr
        raise CommandFailed(f"{i.name}: transaction failed: {said}",
                            out.exit_status, out.stderr)
    return results


def probe_body(i: Instance) -> str:
    """INFO, replica-priority, dir, host RAM, and the Sentinels connected (their pub/sub
    connections name themselves sentinel-ID-pubsub): one round trip per instance."""
    q = shlex.join
    return "; ".join([
        f"{q(argv(i, 'INFO'))} 2>&1", f"echo {SEP}",
        f"{q(argv(i, 'CONFIG', 'GET', 'replica-priority'))} 2>&1", f"echo {SEP}",
        f"{q(argv(i, 'CONFIG', 'GET', 'dir'))} 2>&1", f"echo {SEP}",
        "grep MemTotal /proc/meminfo", f"echo {SEP}",
        f"{q(argv(i, 'CLIENT', 'LIST', 'TYPE', 'pubsub'))} 2>&1",
    ])
