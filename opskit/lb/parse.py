"""What an lb host sends back, read against a grammar: nginx's stub_status page and the upstream
include file that lists the app hosts. Anything else is reported, never guessed at: the text
comes from a host, and a line that does not parse is not a member of the upstream."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# stub_status, exactly as nginx prints it (ngx_http_stub_status_module.c).
_STUB = re.compile(
    r"\AActive connections: (\d+) \n"
    r"server accepts handled requests\n"
    r" (\d+) (\d+) (\d+) \n"
    r"Reading: (\d+) Writing: (\d+) Waiting: (\d+) \n\Z")

# One server of an upstream include: `server ADDRESS[:PORT] [PARAM ...];` with the
# parameters nginx knows for it; a comment may follow.
_ADDRESS = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?"
_PARAM = (r"(?:down|backup|resolve|weight=\d+|max_fails=\d+|max_conns=\d+"
          r"|fail_timeout=\d+(?:ms|s|m|h)?|slow_start=\d+(?:ms|s|m|h)?|service=[A-Za-z0-9_.-]+"
          r"|route=[A-Za-z0-9_.-]+)")
_SERVER = re.compile(rf"^\s*server\s+({_ADDRESS})((?:\s+{_PARAM})*)\s*;\s*(?:#.*)?$")
_IGNORABLE = re.compile(r"^\s*(?:#.*)?$")


@dataclass(frozen=True)
class StubStatus:
    active: int
    accepts: int
    handled: int
    requests: int
    reading: int
    writing: int
    waiting: int


def stub_status(text: str) -> StubStatus:
    """The counters of a stub_status page; ValueError if it is not one."""
    m = _STUB.match(text)
    if m is None:
        raise ValueError(f"not an nginx stub_status page: {text[:60]!r}")
    return StubStatus(*(int(g) for g in m.groups()))


@dataclass(frozen=True)
class Server:
    address: str
    down: bool
    params: tuple[str, ...]


@dataclass
class Upstream:
    servers: list[Server] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "line N: ..." of what did not parse


def upstream(text: str) -> Upstream:
    """The servers of an upstream include file; lines that are neither a server, a comment
    nor blank are problems (named by line number), not servers."""
    out = Upstream()
    for n, line in enumerate(text.splitlines(), start=1):
        m = _SERVER.match(line)
        if m is not None:
            params = tuple(m.group(2).split())
            out.servers.append(Server(m.group(1), "down" in params, params))
        elif not _IGNORABLE.match(line):
            out.problems.append(f"line {n} is not a `server ADDRESS [PARAMS];` line: "
                                f"{line.strip()[:60]!r}")
    return out
