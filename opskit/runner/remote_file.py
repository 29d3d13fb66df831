"""Replace a file on a host: the operator's side of ``onhost/replace_file.py``.

The one way opskit replaces files on hosts (pgbouncer.ini at a failover, the Redis publish
file): an exclusive temp file with an unpredictable name next to the target, the original's
owner and mode, fsync, rename. Never a fixed temp name (a planted symlink there would be
followed, written through and chowned, as root).
"""

from __future__ import annotations

import shlex

from opskit.onhost import script
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session


def replace(s: Session, path: str, data: bytes, *, expect_sha256: str | None = None,
            sudo: bool = True) -> None:
    """Replace ``path`` on the host with ``data`` (``onhost/replace_file.py``: an exclusive,
    unpredictable temp file, owner and mode kept, renamed over), as root with ``sudo``.
    With ``expect_sha256`` the file must still hold what was read before (else refused)."""
    argv = ["python3", "-I", "-S", "-c", script("replace_file"), path,
            *([expect_sha256] if expect_sha256 else [])]
    # On stdin, not argv: an ini's connection strings may hold passwords (ps shows argv).
    out = s.run_input(shlex.join(argv), data, sudo=sudo, check=False)
    if out.exit_status != 0:
        raise CommandFailed(f"{s.host.name}: could not replace {path}: "
                            f"{out.stderr.strip()[-200:]}", out.exit_status, out.stderr)
