"""The lab's sample app: a stdlib-only WSGI app that says which release it is serving.

``opskit deploy`` writes ``RELEASE`` (release id) and ``REVISION`` (git sha) into each
release dir; this app reads them from its own directory, so ``GET /`` or ``/health`` shows
which release a worker imported (after a graceful reload: the new one).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterable

VERSION = "1"

HERE = os.path.dirname(os.path.abspath(__file__))


def _read(name: str) -> str | None:
    try:
        with open(os.path.join(HERE, name)) as fh:
            return fh.read().strip() or None
    except OSError:
        return None


# Read once at import: a worker serves the release it imported, which is what a reload test
# must see (a worker re-reading files per request would hide a stale import).
RELEASE = _read("RELEASE") or os.path.basename(HERE)
REVISION = _read("REVISION")


def info() -> dict[str, object]:
    return {
        "release": RELEASE,
        "revision": REVISION,
        "version": VERSION,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def application(
    environ: dict[str, object], start_response: Callable[..., object]
) -> Iterable[bytes]:
    path = environ.get("PATH_INFO") or "/"
    if path not in ("/", "/health"):
        body = b'{"error": "not found"}\n'
        start_response("404 Not Found", _headers(body))
        return [body]
    body = (json.dumps(info()) + "\n").encode()
    start_response("200 OK", _headers(body))
    return [body]


def _headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
