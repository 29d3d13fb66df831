"""redis-cli run on the instance's own host over opskit's SSH session (no Redis port needs to
be open to the operator). Arguments are shell-quoted; replies come back raw (no TTY)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from opskit.redis.config import Instance
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session

SEP = "--opskit--"


def argv(i: Instance, *args: str) -> list[str]:
    return [i.cli, "-h", i.address, "-p", str(i.port), *args]


def call(s: Session, i: Instance, *args: str, timeout: float = 15.0) -> str:
    """One command; its raw reply. An error reply or no connection raises CommandFailed."""
    # -e: redis-cli exits non-zero on an error reply (it exits 0 on them otherwise).
    out = s.run(shlex.join([*argv(i)[:1], "-e", *argv(i)[1:], *args]), check=False,
                timeout=timeout)
    reply = out.stdout.strip()
    if out.exit_status != 0 or reply.startswith(("ERR", "WRONGTYPE", "NOAUTH", "READONLY",
                                                 "Could not connect")):
        why = reply or out.stderr.strip() or f"exit status {out.exit_status}"
        raise CommandFailed(f"{i.name}: {' '.join(args[:2])}: {why.splitlines()[-1][:200]}",
                         out.exit_status, out.stderr)
    return reply


def transaction(s: Session, i: Instance, commands: Sequence[Sequence[str]],
                timeout: float = 15.0) -> list[str]:
    """MULTI, the commands, EXEC in one connection (all or nothing); the EXEC replies."""
    lines = ["MULTI", *(shlex.join(c) for c in commands), "EXEC"]
    out = s.run_input(shlex.join(argv(i)), ("\n".join(lines) + "\n").encode(), check=False,
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


def probe_script(i: Instance) -> str:
    """INFO, replica-priority, dir+dbfilename, host RAM: one round trip per instance."""
    q = shlex.join
    return "; ".join([
        f"{q(argv(i, 'INFO'))} 2>&1", f"echo {SEP}",
        f"{q(argv(i, 'CONFIG', 'GET', 'replica-priority'))} 2>&1", f"echo {SEP}",
        f"{q(argv(i, 'CONFIG', 'GET', 'dir'))} 2>&1", f"echo {SEP}",
        "grep MemTotal /proc/meminfo",
    ])
