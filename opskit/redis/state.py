"""Every instance's replication view, gathered at once over SSH (one round trip each)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from opskit.redis import info, sentinel, tools
from opskit.redis.config import Instance, Topology
from opskit.runner.hostpool import HostPool
from opskit.transport.errors import ConnectFailed
from opskit.transport.session import Session

MASTER, REPLICA, DOWN, UNREACHABLE = "master", "replica", "down", "unreachable"


@dataclass
class InstanceState:
    name: str
    endpoint: str
    role: str  # master | replica | down | unreachable
    error: str | None = None
    run_id: str | None = None
    master: str | None = None  # host:port a replica replicates from
    link: str | None = None  # up | down
    link_down_s: float | None = None  # seconds since the link to the master went down
    last_io_s: float | None = None  # seconds since the last interaction with the master
    offset: int | None = None  # master_repl_offset / slave_repl_offset
    lag_bytes: int | None = None  # behind its master's offset
    priority: int | None = None  # replica-priority (0: never promote)
    replicas: int | None = None
    failover_state: str | None = None
    last_save: int | None = None  # unix time
    bgsave_status: str | None = None
    bgsave_in_progress: bool | None = None
    clients: int | None = None
    used_memory: int | None = None
    maxmemory: int | None = None
    host_ram: int | None = None
    rdb_file: str | None = None
    # Sentinels connected to it (distinct ids of their pub/sub connections): a group they
    # watch, declared in redis.sentinel or not.
    sentinels_connected: int | None = None

    @property
    def up(self) -> bool:
        return self.role in (MASTER, REPLICA)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_probe(i: Instance, out: str) -> InstanceState:
    parts = out.split(tools.SEP)
    st = InstanceState(i.name, i.endpoint, DOWN)
    raw = parts[0]
    if "redis_version" not in raw:
        st.error = (raw.strip().splitlines() or ["no answer"])[-1][:200]
        return st
    d = info.parse(raw)
    st.role = MASTER if d.get("role") == "master" else REPLICA
    st.run_id = d.get("run_id")
    if st.role == REPLICA:
        st.master = f"{d.get('master_host')}:{d.get('master_port')}"
        st.link = d.get("master_link_status")
        down = info.as_int(d, "master_link_down_since_seconds")
        st.link_down_s = float(down) if down is not None and down >= 0 else (
            0.0 if st.link == "up" else None)
        io = info.as_int(d, "master_last_io_seconds_ago")
        st.last_io_s = float(io) if io is not None and io >= 0 else None
        st.offset = info.as_int(d, "slave_repl_offset")
    else:
        st.offset = info.as_int(d, "master_repl_offset")
    st.replicas = info.as_int(d, "connected_slaves")
    st.failover_state = d.get("master_failover_state")
    st.last_save = info.as_int(d, "rdb_last_save_time")
    st.bgsave_status = d.get("rdb_last_bgsave_status")
    st.bgsave_in_progress = d.get("rdb_bgsave_in_progress") == "1"
    st.clients = info.as_int(d, "connected_clients")
    st.used_memory = info.as_int(d, "used_memory")
    st.maxmemory = info.as_int(d, "maxmemory")
    if len(parts) > 1:
        prio = parts[1].split()
        st.priority = int(prio[-1]) if prio and prio[-1].isdigit() else None
    if len(parts) > 2:
        words = parts[2].split()
        if len(words) >= 2:
            st.rdb_file = words[-1]  # the dir; the file name is added by backup
    if len(parts) > 3:
        kb = parts[3].split()
        if len(kb) >= 2 and kb[1].isdigit():
            st.host_ram = int(kb[1]) * 1024
    if len(parts) > 4:
        st.sentinels_connected = len(sentinel.connected_ids(parts[4]))
    return st


def probe(s: Session, i: Instance) -> InstanceState:
    out = tools.run(s, i, tools.probe_body(i), timeout=20)
    return parse_probe(i, out.stdout)


@dataclass
class TopologyState:
    instances: list[InstanceState]
    sentinels: list[sentinel.SentinelView] = field(default_factory=list)

    def get(self, name: str) -> InstanceState:
        return next(x for x in self.instances if x.name == name)

    @property
    def masters(self) -> list[InstanceState]:
        return [x for x in self.instances if x.role == MASTER]

    def to_dict(self) -> dict[str, Any]:
        return {"instances": [x.to_dict() for x in self.instances],
                "sentinels": [x.to_dict() for x in self.sentinels]}


def gather(topo: Topology, pool: HostPool) -> TopologyState:
    """Every instance's INFO and every declared Sentinel's view, one round trip per host
    (a host that runs both answers both in the same step)."""
    by_host: dict[str, list[Instance]] = {}
    for i in topo.instances:
        by_host.setdefault(i.host.name, []).append(i)
    watchers = sentinel.watchers(topo)
    ends: dict[str, list[Instance]] = {}
    for w in watchers:
        ends.setdefault(w.host.name, []).append(w)
    hosts = {i.host.name: i.host for i in [*topo.instances, *watchers]}
    master = topo.sentinel.master if topo.sentinel else ""

    def ask(s: Session) -> tuple[list[InstanceState], list[sentinel.SentinelView]]:
        return ([probe(s, i) for i in by_host.get(s.host.name, [])],
                [sentinel.view(s, w, master) for w in ends.get(s.host.name, [])])

    got = pool.each(list(hosts.values()), ask)
    out: list[InstanceState] = []
    views: list[sentinel.SentinelView] = []
    for name in hosts:
        r = got[name]
        insts, sents = by_host.get(name, []), ends.get(name, [])
        if isinstance(r, Exception):
            role = UNREACHABLE if isinstance(r, ConnectFailed) else DOWN
            why = r.message if isinstance(r, ConnectFailed) else str(r)
            out += [InstanceState(i.name, i.endpoint, role, error=why) for i in insts]
            views += [sentinel.SentinelView(w.name, False, error=why) for w in sents]
        else:
            out += r[0]
            views += r[1]
    order = {i.name: n for n, i in enumerate(topo.instances)}
    out.sort(key=lambda x: order[x.name])
    worder = {w.name: n for n, w in enumerate(watchers)}
    views.sort(key=lambda x: worder[x.name])
    fs = TopologyState(out, views)
    compute_lag(fs)
    return fs


def compute_lag(fs: TopologyState) -> None:
    by_endpoint = {x.endpoint: x for x in fs.instances}
    for x in fs.instances:
        m = by_endpoint.get(x.master or "")
        if x.role == REPLICA and m is not None and m.role == MASTER and None not in (
                m.offset, x.offset):
            x.lag_bytes = max(0, m.offset - x.offset)  # type: ignore[operator]
