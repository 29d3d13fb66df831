"""The ``nginx:`` settings of an lb host (read by :mod:`opskit.lb.status`).

Every path reaches the host as one argument of the probe (never through a shell); the status
URL is fetched there over plain HTTP. This module imports pydantic: import it only through
:func:`opskit.settings.of`.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from opskit.settings.base import AbsPath, Field, Settings

# http://HOST[:PORT]/PATH, printable ASCII without spaces: it goes into one request line.
_URL = re.compile(r"http://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?/[!-~]*\Z")


def _url(value: str) -> str:
    if not _URL.match(value):
        raise ValueError(f"must be an http://HOST[:PORT]/PATH URL without spaces, got {value!r}")
    return value


HttpUrl = Annotated[str, AfterValidator(_url)]


class NginxSettings(Settings):
    """nginx on an lb host: where its config, master pid and upstream include are."""

    upstream_file: AbsPath = Field(description="The file included in the app hosts' "
                                   "`upstream` block: one `server ADDRESS[:PORT] [PARAMS];` "
                                   "line per app host (opskit reads it, and marks app hosts "
                                   "down there).")
    conf: AbsPath = Field("/etc/nginx/nginx.conf", description="The main config file "
                          "(`nginx -t -c` tests it).")
    binary: AbsPath = Field("/usr/sbin/nginx", description="The nginx program.")
    pid_file: AbsPath = Field("/run/nginx.pid", description="The master's pid file (the "
                              "`pid` directive of the config).")
    status_url: HttpUrl = Field("http://127.0.0.1/nginx_status", description="Its "
                                "stub_status page, fetched on the host (active connections).")
