"""HTTP probes of lab servers (moto, gunicorn) on loopback addresses."""

from __future__ import annotations

import urllib.error
import urllib.request

# No proxies: an operator's http_proxy must not catch requests to 127.x lab servers.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of GET ``url`` (4xx/5xx included), or None if nothing answers in time."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError, ValueError):
        return None
