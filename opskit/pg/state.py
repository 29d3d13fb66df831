"""What every node and PgBouncer says right now, gathered in parallel over SSH.

The role comes from the server (``pg_is_in_recovery()``), not from repmgr's metadata, which
is shown beside it: the two disagree exactly when something is wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from opskit.pg import lsn, tools
from opskit.pg.config import BouncerNode, Cluster, PgNode
from opskit.runner.hostpool import HostPool
from opskit.transport.errors import ConnectFailed
from opskit.transport.session import Session

PRIMARY, STANDBY, DOWN, UNREACHABLE = "primary", "standby", "down", "unreachable"

# One row per node. The timeline of a primary is in the name of the WAL file it writes; a
# standby's is the one it receives. With no WAL receiver (its upstream is down) it is the
# newest timeline history file in pg_wal: the control file's timeline only moves at the next
# restartpoint, so right after a timeline switch it still names the old one.
NODE_SQL = r"""
select pg_is_in_recovery()::int,
  case when pg_is_in_recovery() then coalesce(
      (select nullif(received_tli, 0) from pg_stat_wal_receiver),
      greatest(
        (select max(('x' || substr(name, 1, 8))::bit(32)::int) from pg_ls_waldir()
         where name ~ '^[0-9A-F]{8}\.history$'),
        (select timeline_id from pg_control_checkpoint())))
    else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end,
  case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end,
  coalesce(pg_last_wal_receive_lsn()::text, ''),
  case when pg_is_in_recovery() then pg_get_wal_replay_pause_state() else 'n/a' end,
  coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp())::text, ''),
  coalesce((select sender_host || ':' || sender_port from pg_stat_wal_receiver
            where status = 'streaming'), ''),
  (select count(*) from pg_stat_replication),
  current_setting('server_version')
""".strip()


@dataclass
class NodeState:
    name: str
    address: str
    role: str  # primary | standby | down | unreachable
    error: str | None = None
    timeline: int | None = None
    lsn: int | None = None  # primary: current write position; standby: replayed up to
    receive_lsn: int | None = None
    replay_paused: bool | None = None
    replay_age_s: float | None = None  # since the last replayed transaction committed
    upstream: str | None = None  # host:port the standby streams from
    standbys: int | None = None  # walsenders on this node
    version: str | None = None
    lag_bytes: int | None = None  # behind the primary (or the most advanced node)
    repmgr_role: str | None = None
    repmgr_status: str | None = None
    repmgr_upstream: str | None = None

    @property
    def up(self) -> bool:
        return self.role in (PRIMARY, STANDBY)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lsn"], d["receive_lsn"] = lsn.fmt(self.lsn), lsn.fmt(self.receive_lsn)
        return d


@dataclass
class BouncerState:
    name: str
    reachable: bool
    error: str | None = None
    targets: dict[str, str] = field(default_factory=dict)  # database -> host:port
    paused: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClusterState:
    nodes: list[NodeState]
    bouncers: list[BouncerState]
    repmgr_error: str | None = None

    def node(self, name: str) -> NodeState:
        return next(n for n in self.nodes if n.name == name)

    @property
    def primaries(self) -> list[NodeState]:
        return [n for n in self.nodes if n.role == PRIMARY]

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [n.to_dict() for n in self.nodes],
                "pgbouncer": [b.to_dict() for b in self.bouncers],
                "repmgr_error": self.repmgr_error}


def probe_node(s: Session, node: PgNode) -> NodeState:
    st = NodeState(node.name, node.address, DOWN)
    rows = tools.psql(s, node, NODE_SQL, check=False)
    if not rows or len(rows[0]) < 9:
        lines = [x.strip() for x in s.stderr_tail().splitlines() if x.strip()]
        errs = [x for x in lines if "error" in x.lower()] or lines or ["not answering"]
        st.error = errs[-1].removeprefix("psql: error: ")[:200]
        return st
    r = rows[0]
    st.role = STANDBY if r[0] == "1" else PRIMARY
    st.timeline = int(r[1]) if r[1].isdigit() else None
    st.lsn, st.receive_lsn = lsn.parse(r[2]), lsn.parse(r[3])
    st.replay_paused = None if r[4] == "n/a" else r[4] != "not paused"
    st.replay_age_s = round(float(r[5]), 3) if r[5] else None
    st.upstream = r[6] or None
    st.standbys = int(r[7])
    st.version = r[8]
    return st


def repmgr_view(s: Session, node: PgNode) -> dict[str, dict[str, str]]:
    """``repmgr cluster show --csv``, per node name: role (repmgr's metadata), status and
    what repmgr found when it connected, and the registered upstream."""
    out = tools.repmgr(s, node, "cluster", "show", "--csv", check=False, timeout=30)
    meta = _repmgr_nodes(s, node)
    view: dict[str, dict[str, str]] = {}
    # --csv rows: node_id,connection status (0 up, -1 not),recovery type (0 primary,
    # 1 standby, -1 unknown) -- names, roles and upstreams come from repmgr.nodes.
    for line in out.splitlines():
        parts = line.strip().split(",")
        if len(parts) != 3 or parts[0] not in meta:
            continue
        name, role, upstream = meta[parts[0]]
        found = {"0": "primary", "1": "standby"}.get(parts[2], "unknown")
        view[name] = {
            "role": role,
            "status": "running" if parts[1] == "0" else "unreachable",
            "found": found if parts[1] == "0" else "unknown",
            "upstream": upstream,
        }
    return view


def _repmgr_nodes(s: Session, node: PgNode) -> dict[str, tuple[str, str, str]]:
    rows = tools.psql(s, node, "select n.node_id, n.node_name, n.type, "
                                "coalesce(u.node_name, '') from repmgr.nodes n "
                                "left join repmgr.nodes u on u.node_id = n.upstream_node_id",
                       check=False)
    return {r[0]: (r[1], r[2], r[3]) for r in rows if len(r) == 4}


def probe_bouncer(s: Session, b: BouncerNode) -> BouncerState:
    st = BouncerState(b.name, True)
    for r in tools.admin(s, b, "SHOW DATABASES"):
        if r.get("name") in b.databases:
            st.targets[r["name"]] = f"{r.get('host')}:{r.get('port')}"
            st.paused[r["name"]] = r.get("paused") == "1"
    missing = [d for d in b.databases if d not in st.targets]
    if missing:
        st.error = f"no [databases] entry for {', '.join(missing)}"
    return st


def gather(cluster: Cluster, pool: HostPool, *, with_repmgr: bool = True) -> ClusterState:
    """Every node and PgBouncer, probed at once; lag computed against the primary."""
    nodes = pool.each([n.host for n in cluster.nodes],
                      lambda s: probe_node(s, cluster.node(s.host.name)))
    states: list[NodeState] = []
    for n in cluster.nodes:
        got = nodes[n.name]
        if isinstance(got, ConnectFailed):
            states.append(NodeState(n.name, n.address, UNREACHABLE, error=got.message))
        elif isinstance(got, Exception):
            states.append(NodeState(n.name, n.address, DOWN, error=str(got)))
        else:
            states.append(got)
    bouncers: list[BouncerState] = []
    if cluster.bouncers:
        got_b = pool.each([b.host for b in cluster.bouncers],
                          lambda s: probe_bouncer(s, _bouncer(cluster, s.host.name)))
        for b in cluster.bouncers:
            r = got_b[b.name]
            if isinstance(r, ConnectFailed):
                bouncers.append(BouncerState(b.name, False, error=r.message))
            elif isinstance(r, Exception):
                bouncers.append(BouncerState(b.name, True, error=str(r)))
            else:
                bouncers.append(r)
    state = ClusterState(states, bouncers)
    compute_lag(state)
    if with_repmgr:
        _add_repmgr(cluster, pool, state)
    return state


def _bouncer(cluster: Cluster, name: str) -> BouncerNode:
    return next(b for b in cluster.bouncers if b.name == name)


def compute_lag(state: ClusterState) -> None:
    """Bytes each standby has replayed less than the primary (or than the most advanced
    node seen, when there is no single live primary)."""
    primaries = state.primaries
    if len(primaries) == 1 and primaries[0].lsn is not None:
        head = primaries[0].lsn
    else:
        seen = [max(x for x in (n.lsn, n.receive_lsn) if x is not None)
                for n in state.nodes if n.up and (n.lsn or n.receive_lsn)]
        head = max(seen) if seen else None
    for n in state.nodes:
        if n.role == STANDBY and head is not None and n.lsn is not None:
            n.lag_bytes = max(0, head - n.lsn)
        elif n.role == PRIMARY and head is not None and n.lsn is not None:
            n.lag_bytes = max(0, head - n.lsn)


def _add_repmgr(cluster: Cluster, pool: HostPool, state: ClusterState) -> None:
    source = next((n for n in state.nodes if n.role == PRIMARY), None) or next(
        (n for n in state.nodes if n.up), None)
    if source is None:
        state.repmgr_error = "no node answers: repmgr's view unavailable"
        return
    node = cluster.node(source.name)
    try:
        view = repmgr_view(pool.get(node.host), node)
    except Exception as exc:  # the status table still shows the servers' own view
        state.repmgr_error = str(exc)
        return
    by_name = {cluster.node(n.name).node_name: n for n in state.nodes}
    for name, v in view.items():
        if name in by_name:
            n = by_name[name]
            n.repmgr_role, n.repmgr_status, n.repmgr_upstream = (v["role"], v["status"],
                                                                 v["upstream"] or None)
