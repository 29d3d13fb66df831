"""Redis Sentinel: what the Sentinels watching a group say, and handing a promotion to them.

A group with Sentinels must not be promoted behind their back: two deciders would fight (each
REPLICAOF the other undoes). opskit asks them instead (``SENTINEL MASTER``, ``CKQUORUM``) and
a promote becomes ``SENTINEL FAILOVER``. Sentinels are reached like instances (redis-cli on
their own inventory host), plain TCP without AUTH: a Sentinel with requirepass or TLS is not
supported yet (docs/redis.md).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from opskit.redis import info, tools
from opskit.redis.config import Instance, Topology
from opskit.runner import wait
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session

# Sentinel names its connections to the instances it watches sentinel-<first 8 of its id>-
# cmd / -pubsub (CLIENT SETNAME): the pub/sub one, one per Sentinel.
_CLIENT = re.compile(r"\bname=sentinel-([0-9a-f]{8})-pubsub\b")


def connected_ids(client_list: str) -> set[str]:
    """The Sentinels connected to an instance, from its ``CLIENT LIST TYPE pubsub``."""
    return set(_CLIENT.findall(client_list))


def watchers(topo: Topology) -> list[Instance]:
    """The group's Sentinels as instances redis-cli can talk to (no AUTH, no TLS)."""
    s = topo.sentinel
    if s is None:
        return []
    cli = topo.instances[0].cli
    return [Instance(h, port, cli, 0.0, None, group=topo.name) for h, port in s.endpoints]


@dataclass
class SentinelView:
    name: str  # inventory host:port of the Sentinel
    answering: bool
    error: str | None = None
    master: str | None = None  # ip:port it holds for the group's master
    flags: str | None = None  # e.g. "master", "s_down,master", "o_down,master"
    quorum: int | None = None
    other_sentinels: int | None = None
    failover_state: str | None = None
    ckquorum: str | None = None  # its CKQUORUM reply: "OK 3 usable Sentinels..."

    @property
    def quorum_ok(self) -> bool:
        return bool(self.ckquorum and self.ckquorum.startswith("OK"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_pairs(reply: str) -> dict[str, str]:
    """redis-cli's plain rendering of a flat key/value array: one element per line."""
    lines = reply.splitlines()
    return {lines[k]: lines[k + 1] for k in range(0, len(lines) - 1, 2)}


def view(s: Session, w: Instance, master: str) -> SentinelView:
    """What the Sentinel ``w`` says of the group it knows as ``master``."""
    body = "; ".join([f"{tools.argv_text(w, 'SENTINEL', 'MASTER', master)} 2>&1",
                      f"echo {tools.SEP}",
                      f"{tools.argv_text(w, 'SENTINEL', 'CKQUORUM', master)} 2>&1"])
    out = tools.run(s, w, body, timeout=15)
    head, _, quorum = out.stdout.partition(tools.SEP)
    d = parse_pairs(head.strip())
    if "ip" not in d:
        said = (head.strip().splitlines() or [f"exit status {out.exit_status}"])[-1]
        return SentinelView(w.name, False, error=said[:200])
    return SentinelView(
        w.name, True, master=f"{d['ip']}:{d.get('port', '?')}", flags=d.get("flags"),
        quorum=_int(d.get("quorum")), other_sentinels=_int(d.get("num-other-sentinels")),
        failover_state=d.get("failover-state"), ckquorum=quorum.strip()[:200] or None)


def _int(text: str | None) -> int | None:
    return int(text) if text and text.lstrip("-").isdigit() else None


def warnings(views: list[SentinelView], master: str | None, declared: bool,
             connected: int) -> list[str]:
    """What is wrong with the Sentinels' view of a group whose master (endpoint) is
    ``master``: unanswering or disagreeing Sentinels, no quorum; Sentinels connected to the
    group that its settings do not declare."""
    out: list[str] = []
    if not declared:
        if connected:
            out.append(f"{connected} Sentinel(s) watch this group but redis.sentinel does not "
                       "declare them: promote and switchover refuse (declare master and "
                       "hosts to let opskit hand promotions to them)")
        return out
    for v in views:
        if not v.answering:
            out.append(f"Sentinel {v.name} does not answer: {v.error}")
        elif v.flags and ("s_down" in v.flags or "o_down" in v.flags):
            out.append(f"Sentinel {v.name} sees the master {v.master} down ({v.flags})")
    seen = {v.master for v in views if v.answering}
    if len(seen) > 1:
        out.append("the Sentinels disagree on the master: "
                   + ", ".join(f"{v.name} says {v.master}" for v in views if v.answering))
    elif seen and master is not None and master not in seen:
        out.append(f"the Sentinels hold {next(iter(seen))} as the master, the instances say "
                   f"{master} (a failover in progress?)")
    if views and not any(v.quorum_ok for v in views if v.answering):
        said = next((v.ckquorum for v in views if v.ckquorum), None) or "no Sentinel answers"
        out.append(f"the Sentinels cannot reach their quorum: {said}")
    return out


def failover(s: Session, w: Instance, master: str) -> str:
    """SENTINEL FAILOVER: the Sentinel promotes a replica of its choice (lowest
    replica-priority, largest offset) and re-points the others, without asking the rest."""
    return tools.call(s, w, "SENTINEL", "FAILOVER", master)


def master_addr(s: Session, w: Instance, master: str) -> str | None:
    reply = tools.call(s, w, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master).split()
    return f"{reply[0]}:{reply[1]}" if len(reply) == 2 else None


def wait_new_master(s: Session, w: Instance, master: str, old: str | None,
                    timeout: float) -> str:
    """The endpoint the Sentinel ``w`` names as master once it is no longer ``old`` and its
    failover is over."""
    def probe() -> tuple[bool, str | None]:
        now = master_addr(s, w, master)
        d = parse_pairs(tools.call(s, w, "SENTINEL", "MASTER", master))
        done = "failover_in_progress" not in d.get("flags", "")
        return now is not None and now != old and done, now

    try:
        found = wait.until(probe, what=f"the Sentinels to name a new master of {master}",
                           timeout=timeout, interval=0.1, retry=(CommandFailed,))
    except wait.WaitTimedOut as exc:
        raise CommandFailed(f"Sentinel {w.name}: no new master of {master} after "
                            f"{timeout:g}s (still {exc.seen})") from None
    assert found is not None
    return found


def wait_role_master(s: Session, i: Instance, timeout: float) -> None:
    """Until ``i`` itself says role:master (the Sentinel's word is not the server's)."""
    def probe() -> tuple[bool, str]:
        role = info.parse(tools.call(s, i, "INFO", "replication")).get("role", "?")
        return role == "master", role

    try:
        wait.until(probe, what=f"{i.name} to be a master", timeout=timeout, interval=0.1,
                   retry=(CommandFailed,))
    except wait.WaitTimedOut as exc:
        raise CommandFailed(f"{i.name}: not a master after {timeout:g}s (role {exc.seen})"
                            ) from None


def wait_follows(s: Session, i: Instance, master: Instance, timeout: float) -> None:
    """Until ``i`` replicates from ``master`` with its link up: the Sentinels re-point the
    other replicas at once, a live old master only after it reports itself (seconds)."""
    def probe() -> tuple[bool, str]:
        d = info.parse(tools.call(s, i, "INFO", "replication"))
        ok = (d.get("role") == "slave" and d.get("master_host") == master.address
              and d.get("master_port") == str(master.port)
              and d.get("master_link_status") == "up")
        return ok, f"role {d.get('role')}, master {d.get('master_host')}:{d.get('master_port')}"

    try:
        wait.until(probe, what=f"{i.name} to replicate from {master.name}", timeout=timeout,
                   interval=0.2, retry=(CommandFailed,))
    except wait.WaitTimedOut as exc:
        raise CommandFailed(f"{i.name}: the Sentinels did not re-point it at {master.name} in "
                            f"{timeout:g}s ({exc.seen})") from None
