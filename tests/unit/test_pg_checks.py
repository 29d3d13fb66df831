"""The failover decisions and status warnings, over hand-made cluster states."""

from __future__ import annotations

import pytest

from opskit.pg import checks, lsn
from opskit.pg.state import (
    DOWN,
    PRIMARY,
    STANDBY,
    UNREACHABLE,
    BouncerState,
    ClusterState,
    NodeState,
    compute_lag,
)

MB = 1024 * 1024


def node(name: str, role: str, *, tl: int = 1, at: int = 100 * MB, paused: bool = False,
         addr: str | None = None, upstream: str | None = "127.10.0.2:5432") -> NodeState:
    n = NodeState(name, addr or f"10.0.0.{name[-1]}", role)
    if role in (PRIMARY, STANDBY):
        n.timeline, n.lsn = tl, at
        n.receive_lsn = at if role == STANDBY else None
        n.replay_paused = paused if role == STANDBY else None
        n.upstream = upstream if role == STANDBY else None
    return n


def cluster(*nodes: NodeState, bouncer_to: str | None = None) -> ClusterState:
    bouncers = [BouncerState("lb1", True, targets={"app": bouncer_to})] if bouncer_to else []
    cs = ClusterState(list(nodes), bouncers)
    compute_lag(cs)
    return cs


def test_lsn_round_trip_and_arithmetic() -> None:
    assert lsn.parse("0/3000148") == 0x3000148
    assert lsn.parse("1/0") == 1 << 32
    assert lsn.fmt(lsn.parse("16/B374D848")) == "16/B374D848"
    assert lsn.parse("") is None
    with pytest.raises(ValueError):
        lsn.parse("garbage")


def test_lag_is_against_the_primary_or_the_most_advanced_node() -> None:
    cs = cluster(node("db1", PRIMARY, at=200 * MB), node("db2", STANDBY, at=150 * MB))
    assert cs.node("db2").lag_bytes == 50 * MB
    down = cluster(node("db1", DOWN), node("db2", STANDBY, at=150 * MB),
                   node("db3", STANDBY, at=120 * MB))
    assert down.node("db3").lag_bytes == 30 * MB and down.node("db2").lag_bytes == 0


def test_auto_target_is_the_standby_with_most_wal_replayed() -> None:
    cs = cluster(node("db1", DOWN, addr="10.0.0.1"), node("db2", STANDBY, at=150 * MB),
                 node("db3", STANDBY, at=151 * MB), bouncer_to="10.0.0.1:5432")
    d = checks.decide_failover(cs, None, 16 * MB, {"lb1/app": "10.0.0.1:5432"})
    assert d.ok and d.target and d.target.name == "db3"
    assert d.old and d.old.name == "db1"  # PgBouncer still points there
    assert d.timeline == 1


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (node("db2", STANDBY, paused=True), "replay paused"),
        (node("db2", STANDBY, tl=2), "different timelines"),
        (node("db2", STANDBY, at=10 * MB), "over the"),
        (node("db2", PRIMARY), "not in recovery"),
        (node("db2", UNREACHABLE), "unreachable"),
    ],
)
def test_refusals_for_an_unfit_target(target: NodeState, why: str) -> None:
    cs = cluster(node("db1", DOWN), target, node("db3", STANDBY, at=100 * MB))
    d = checks.decide_failover(cs, "db2", 16 * MB, {})
    assert not d.ok and any(why in r for r in d.refusals), d.refusals


def test_two_primaries_are_refused_even_with_a_good_target() -> None:
    cs = cluster(node("db1", PRIMARY), node("db2", PRIMARY), node("db3", STANDBY))
    d = checks.decide_failover(cs, "db3", 16 * MB, {})
    assert any("already primary" in r for r in d.refusals)
    assert any("2 primaries" in w for w in checks.warnings(cs, 16 * MB))


def test_choosing_a_standby_behind_another_is_refused() -> None:
    cs = cluster(node("db1", DOWN), node("db2", STANDBY, at=100 * MB),
                 node("db3", STANDBY, at=140 * MB))
    d = checks.decide_failover(cs, "db2", 16 * MB, {})
    assert any("would lose it" in r for r in d.refusals), d.refusals


def test_healthy_cluster_has_no_warnings_and_a_sick_one_says_why() -> None:
    ok = cluster(node("db1", PRIMARY, addr="10.0.0.1"), node("db2", STANDBY),
                 node("db3", STANDBY), bouncer_to="10.0.0.1:5432")
    assert checks.warnings(ok, 16 * MB) == []
    sick = cluster(node("db1", PRIMARY, addr="10.0.0.1", at=300 * MB),
                   node("db2", STANDBY, paused=True, tl=2), node("db3", STANDBY),
                   bouncer_to="10.0.0.9:5432")
    text = " | ".join(checks.warnings(sick, 16 * MB))
    for expected in ("replay paused", "timeline 2", "lags", "not to the primary"):
        assert expected in text, text


def test_changed_before_promote_sees_a_new_primary_or_a_moved_target() -> None:
    calm = cluster(node("db1", DOWN), node("db2", STANDBY), node("db3", STANDBY))
    assert checks.changed_before_promote(calm, "db2", 1) == []
    raced = cluster(node("db1", DOWN), node("db2", STANDBY), node("db3", PRIMARY, tl=2))
    assert checks.changed_before_promote(raced, "db2", 1) == [
        "db3 is already primary (timeline 2): someone else promoted it"]
    promoted = cluster(node("db1", DOWN), node("db2", PRIMARY, tl=2), node("db3", STANDBY))
    why = checks.changed_before_promote(promoted, "db2", 1)
    assert len(why) == 2 and "db2 is primary now, not a standby" in why[1]
    moved = cluster(node("db1", DOWN), node("db2", STANDBY, tl=3), node("db3", STANDBY))
    assert checks.changed_before_promote(moved, "db2", 1) == [
        "the target db2 moved to timeline 3 (was 1)"]
    gone = cluster(node("db1", DOWN), node("db2", UNREACHABLE))
    assert checks.changed_before_promote(gone, "db2", 1) == [
        "the target db2 is unreachable now, not a standby"]
