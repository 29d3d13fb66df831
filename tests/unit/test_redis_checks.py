"""Redis decisions over hand-made topologies, and INFO parsing."""

from __future__ import annotations

import pytest

from opskit.redis import checks, info
from opskit.redis.state import DOWN, MASTER, REPLICA, InstanceState, TopologyState, compute_lag

M = "10.0.0.1:6379"


def inst(name: str, role: str, *, offset: int = 1000, prio: int = 100, run_id: str = "b",
         link: str = "up", down_s: float | None = None, master: str = M) -> InstanceState:
    x = InstanceState(name, f"10.0.0.{name[-1]}:6379", role)
    if role in (MASTER, REPLICA):
        x.offset, x.priority, x.run_id = offset, prio, run_id
    if role == REPLICA:
        x.master, x.link = master, link
        x.link_down_s = 0.0 if link == "up" else down_s
    return x


def topo(*xs: InstanceState) -> TopologyState:
    fs = TopologyState(list(xs))
    compute_lag(fs)
    return fs


def test_sentinel_order_priority_then_offset_then_run_id() -> None:
    fs = topo(inst("r1", DOWN), inst("r2", REPLICA, offset=900, prio=10),
               inst("r3", REPLICA, offset=1000, prio=100))
    assert checks.decide_promote(fs, None, 60).target.name == "r2"  # lower priority wins
    fs = topo(inst("r1", DOWN), inst("r2", REPLICA, offset=900),
               inst("r3", REPLICA, offset=1000))
    assert checks.decide_promote(fs, None, 60).target.name == "r3"  # then the larger offset
    fs = topo(inst("r1", DOWN), inst("r2", REPLICA, run_id="b"),
               inst("r3", REPLICA, run_id="a"))
    assert checks.decide_promote(fs, None, 60).target.name == "r3"  # then the smaller run id


def test_priority_zero_is_never_chosen() -> None:
    fs = topo(inst("r1", DOWN), inst("r2", REPLICA, prio=0, offset=5000),
               inst("r3", REPLICA, offset=10))
    d = checks.decide_promote(fs, None, 60)
    assert d.target.name == "r3" and not d.refusals
    assert any("priority 0" in r for r in checks.decide_promote(fs, "r2", 60).refusals)


@pytest.mark.parametrize(
    ("xs", "why"),
    [
        ((inst("r1", DOWN), inst("r2", REPLICA, link="down", down_s=600)), "no link"),
        ((inst("r1", MASTER), inst("r2", REPLICA)), "is up: use"),
        ((inst("r1", DOWN),), "no replica answers"),
    ],
)
def test_refusals(xs: tuple[InstanceState, ...], why: str) -> None:
    d = checks.decide_promote(topo(*xs), None, 60)
    assert any(why in r for r in d.refusals), d.refusals


def test_a_recent_link_loss_is_still_a_candidate() -> None:
    fs = topo(inst("r1", DOWN), inst("r2", REPLICA, link="down", down_s=5))
    d = checks.decide_promote(fs, None, 60)
    assert d.target.name == "r2" and not d.refusals


def test_warnings_two_masters_and_link_down() -> None:
    fs = topo(inst("r1", MASTER), inst("r2", MASTER), inst("r3", REPLICA, link="down",
                                                             down_s=30))
    text = " | ".join(checks.warnings(fs))
    assert "2 masters" in text and "link to its master is down" in text
    healthy = topo(inst("r1", MASTER, offset=2000), inst("r2", REPLICA, offset=1500))
    assert checks.warnings(healthy) == []
    assert healthy.get("r2").lag_bytes == 500


def test_info_parsing() -> None:
    text = ("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"
            "slave0:ip=10.0.0.2,port=6379,state=online,offset=123,lag=0\r\n"
            "master_repl_offset:123\r\n")
    d = info.parse(text)
    assert d["role"] == "master" and info.as_int(d, "master_repl_offset") == 123
    assert info.replicas(d) == [{"ip": "10.0.0.2", "port": "6379", "state": "online",
                                 "offset": "123", "lag": "0"}]


def test_changed_before_promote_sees_a_new_master_or_a_moved_target() -> None:
    calm = topo(inst("r1", DOWN), inst("r2", REPLICA), inst("r3", REPLICA))
    assert checks.changed_before_promote(calm, "10.0.0.2:6379") == []
    raced = topo(inst("r1", DOWN), inst("r2", REPLICA), inst("r3", MASTER))
    assert checks.changed_before_promote(raced, "10.0.0.2:6379") == [
        "r3 is a master now: someone else promoted it"]
    taken = topo(inst("r1", DOWN), inst("r2", MASTER), inst("r3", REPLICA))
    assert checks.changed_before_promote(taken, "10.0.0.2:6379") == [
        "the target r2 is master now, not a replica"]
