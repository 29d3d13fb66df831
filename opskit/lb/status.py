"""The state of the nginx tier: per lb host, its nginx (running, config test, active
connections) and the app hosts its upstream include holds, up or down."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opskit import settings
from opskit.inventory import Host
from opskit.lb import parse
from opskit.lb.settings import NginxSettings
from opskit.onhost import script
from opskit.runner.hostpool import HostPool
from opskit.transport.errors import ConnectFailed
from opskit.transport.session import Session

PROBE_TIMEOUT = 30.0


def nginx_settings(host: Host) -> NginxSettings:
    cfg = settings.of(host, "nginx")
    assert isinstance(cfg, NginxSettings)
    return cfg


def lb_hosts(hosts: Sequence[Host]) -> list[Host]:
    """The hosts of a selection that run nginx for opskit (those with ``nginx:`` settings)."""
    return [h for h in hosts if h.domain("nginx")]


@dataclass
class LbState:
    name: str
    reachable: bool = True
    error: str | None = None  # why nothing else is known (unreachable, the probe failed)
    running: bool = False
    pid: int | None = None
    config_ok: bool | None = None
    config_error: str = ""
    stub: parse.StubStatus | None = None
    stub_error: str | None = None
    upstream_file: str = ""
    servers: list[parse.Server] = field(default_factory=list)
    upstream_problems: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # address -> inventory host

    def host_of(self, server: parse.Server) -> str | None:
        """The inventory host an upstream server is, by its address (None: none, or two)."""
        return self.names.get(address_part(server.address))

    def shown(self, server: parse.Server) -> str:
        name = self.host_of(server)
        return f"{name} ({server.address})" if name else server.address

    def warnings(self) -> list[str]:
        if self.error is not None:
            return [f"{self.name}: {self.error}"]
        out = []
        if not self.running:
            out.append(f"{self.name}: nginx is not running")
        if self.config_ok is False:
            out.append(f"{self.name}: nginx -t fails: {self.config_error}")
        if self.running and self.stub is None:
            out.append(f"{self.name}: no stub_status: {self.stub_error}")
        out += [f"{self.name}: {self.upstream_file} {p}" for p in self.upstream_problems]
        if not self.servers and not self.upstream_problems:
            out.append(f"{self.name}: no app host in {self.upstream_file}")
        down = [self.shown(s) for s in self.servers if s.down]
        if down:
            out.append(f"{self.name}: out of rotation (down): {', '.join(down)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "reachable": self.reachable, "error": self.error,
            "running": self.running, "pid": self.pid, "config_ok": self.config_ok,
            "config_error": self.config_error,
            "active_connections": self.stub.active if self.stub else None,
            "stub_status": vars(self.stub) if self.stub else None,
            "upstream_file": self.upstream_file,
            "upstream": [{"address": s.address, "host": self.host_of(s), "down": s.down,
                          "params": list(s.params)} for s in self.servers],
            "upstream_problems": self.upstream_problems,
        }


def address_part(server: str) -> str:
    """ADDRESS of ADDRESS[:PORT] (an IPv6 one without its brackets)."""
    if server.startswith("["):
        return server[1:].partition("]")[0]
    return server.partition(":")[0]


def names_by_address(hosts: Sequence[Host]) -> dict[str, str]:
    """Inventory hosts by the address opskit reaches them at; an address two hosts share
    names neither (a guess would mislabel one)."""
    seen: dict[str, list[str]] = {}
    for h in hosts:
        seen.setdefault(address_part(h.address) if h.address.startswith("[") else h.address,
                        []).append(h.name)
    return {a: names[0] for a, names in seen.items() if len(names) == 1}


def probe(s: Session, cfg: NginxSettings) -> dict[str, Any]:
    """The probe's answer (``onhost/nginx_probe.py``, as root: the pid file and nginx -t)."""
    argv = ["python3", "-I", "-S", "-c", script("nginx_probe"), cfg.binary, cfg.conf,
            cfg.pid_file, cfg.upstream_file, cfg.status_url]
    out = s.run(shlex.join(argv), sudo=True, check=False, timeout=PROBE_TIMEOUT)
    answer = out.answer()
    if answer is None:
        raise ValueError(f"the nginx probe failed: {out.reason()[:200]}")
    return answer


def judge(host: Host, cfg: NginxSettings, answer: dict[str, Any]) -> LbState:
    """An answer read against its grammar: wrong types or unparsable text are reported."""
    st = LbState(host.name, upstream_file=cfg.upstream_file)
    pid = answer.get("pid")
    st.pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
    st.running = st.pid is not None and answer.get("running") is True
    st.config_ok = answer.get("config_ok") is True
    st.config_error = str(answer.get("config_error") or "")[:300]
    status = answer.get("status") if isinstance(answer.get("status"), dict) else {}
    code, body = status.get("code"), status.get("body")
    if code == 200 and isinstance(body, str):
        try:
            st.stub = parse.stub_status(body)
        except ValueError as exc:
            st.stub_error = str(exc)
    else:
        st.stub_error = f"{cfg.status_url} answered {code}" if isinstance(code, int) else \
            str(body or "no answer")[:200]
    text = answer.get("upstream")
    if isinstance(text, str):
        up = parse.upstream(text)
        st.servers, st.upstream_problems = up.servers, up.problems
    else:
        st.upstream_problems = [f"unreadable: {str(answer.get('upstream_error'))[:200]}"]
    return st


def gather(hosts: Sequence[Host], pool: HostPool,
           names: dict[str, str] | None = None) -> list[LbState]:
    """Every lb host at once; a host that does not answer is reported, not skipped.
    ``names``: inventory hosts by address, to name the upstreams' servers."""
    cfgs = {h.name: nginx_settings(h) for h in hosts}
    answers = pool.each(hosts, lambda s: probe(s, cfgs[s.host.name]))
    out = []
    for h in hosts:
        ans = answers[h.name]
        if isinstance(ans, ConnectFailed):
            out.append(LbState(h.name, reachable=False, error=f"unreachable: {ans.message}",
                               upstream_file=cfgs[h.name].upstream_file))
        elif isinstance(ans, Exception):
            out.append(LbState(h.name, error=str(ans), upstream_file=cfgs[h.name].upstream_file))
        else:
            out.append(judge(h, cfgs[h.name], ans))
        out[-1].names = dict(names or {})
    return out
