"""The failover decisions and status warnings, over hand-made cluster states."""

from __future__ import annotations

import pytest

from opskit import inventory
from opskit.commands import pg as pg_cmd
from opskit.commands import runbook_cmd
from opskit.errors import InventoryError
from opskit.pg import checks, config, lsn
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


# ---------------------------------------------------------------- several clusters

FLEET = """\
all:
  children:
    db:
      hosts:
        db1: {ansible_host: 10.0.0.1}
        db2: {ansible_host: 10.0.0.2}
        db3: {ansible_host: 10.0.0.3}
      vars:
        postgres: {data_directory: /data/pg, pgbouncer: lb, cluster: main}
    shard:
      hosts:
        s1: {ansible_host: 10.0.1.1}
        s2: {ansible_host: 10.0.1.2}
      vars:
        postgres: {data_directory: /data/pg, pgbouncer: shard, cluster: shard, witnesses: lb1}
        pgbouncer: {ini: /etc/pgbouncer/pgbouncer.ini, databases: [app]}
    lb:
      hosts:
        lb1:
          ansible_host: 10.0.0.9
          pgbouncer: {ini: /etc/pgbouncer/pgbouncer.ini, databases: [app]}
    web:
      hosts:
        web1: {ansible_host: 10.0.2.1}
"""


@pytest.fixture
def fleet_inv() -> inventory.Inventory:
    return inventory.loads(FLEET, "fleet.yml")


def test_a_selection_is_grouped_by_cluster_each_whole(fleet_inv: inventory.Inventory) -> None:
    f = config.fleet(fleet_inv, fleet_inv.select("all"))
    assert f.names == ["main", "shard"] and f.added == {"main": (), "shard": ()}
    main, shard = f.clusters
    assert [n.name for n in main.nodes] == ["db1", "db2", "db3"]
    assert [b.name for b in main.bouncers] == ["lb1"] and main.layout == "central"
    assert [b.name for b in shard.bouncers] == ["s1", "s2"] and shard.layout == "per-node"
    assert [h.name for h in shard.lock_hosts] == ["lb1", "s1", "s2"]  # 2 of 3 without s1
    # One host of a cluster brings in the rest of it (and says which it added).
    one = config.fleet(fleet_inv, fleet_inv.select("s2:web1"))
    assert one.names == ["shard"] and one.added == {"shard": ("s1",)}
    assert [n.name for n in one.clusters[0].nodes] == ["s1", "s2"]
    with pytest.raises(InventoryError, match="no PostgreSQL cluster 'nope'.*main, shard"):
        f.only("nope")
    with pytest.raises(InventoryError, match="none of the selected hosts"):
        config.fleet(fleet_inv, fleet_inv.select("web"))


def test_a_runbook_acts_on_one_cluster_named_or_refuses_a_span(
        fleet_inv: inventory.Inventory) -> None:
    f = config.fleet(fleet_inv, fleet_inv.select("all"))
    with pytest.raises(InventoryError) as caught:
        f.one()
    assert caught.value.exit_code == 1 and "\n" not in caught.value.message
    assert caught.value.message == ("the selection spans 2 PostgreSQL clusters: main, shard; "
                                    "a runbook acts on one")
    assert "--cluster NAME" in str(caught.value.hint)
    assert f.one(cluster="shard").name == "shard"
    assert f.one(hosts=["s1"]).name == "shard"  # pg failover s1
    assert f.one(hosts=["db3", "db1"]).name == "main"  # pg rejoin db1 --to db3
    assert f.one(cluster="main", hosts=["db2"]).name == "main"
    with pytest.raises(InventoryError, match="s1 is in the cluster shard, not main"):
        f.one(cluster="main", hosts=["s1"])
    with pytest.raises(InventoryError, match="belong to 2 PostgreSQL clusters: main, shard"):
        f.one(hosts=["db1", "s2"])
    with pytest.raises(InventoryError, match="'web1' is not a PostgreSQL node"):
        f.one(hosts=["web1"])
    # A flag or argument is only ever compared with the inventory's names: a hostile one is
    # named back quoted, on one line, and chooses nothing.
    for hostile in ("main\nhint: rm -rf /", "main; reboot", "../main", "*"):
        with pytest.raises(InventoryError) as caught:
            f.one(cluster=hostile)
        assert "\n" not in caught.value.message and repr(hostile) in caught.value.message
        with pytest.raises(InventoryError) as caught:
            f.one(hosts=[hostile])
        assert "\n" not in caught.value.message and repr(hostile) in caught.value.message
    # A one-cluster selection needs no name: the CLI forms of one cluster keep working.
    assert config.load(fleet_inv, fleet_inv.select("db")).name == "main"


def judged(name: str, cs: ClusterState) -> runbook_cmd.Judged[config.Cluster, ClusterState]:
    cfg = config.Cluster((), ())
    return runbook_cmd.Judged(runbook_cmd.Member(name, cfg), cs,
                              checks.warnings(cs, 16 * MB),
                              3 if any(n.role == UNREACHABLE for n in cs.nodes) else
                              2 if checks.warnings(cs, 16 * MB) else 0)


def test_the_fleet_summary_and_exit_code_are_the_worst_clusters() -> None:
    ok = cluster(node("db1", PRIMARY, addr="10.0.0.1"), node("db2", STANDBY),
                 bouncer_to="10.0.0.1:5432")
    headless = cluster(node("s1", DOWN), node("s2", STANDBY))
    lost = cluster(node("t1", PRIMARY), node("t2", UNREACHABLE))
    assert pg_cmd.headline(config.Cluster((), ()), headless, []) == "no primary"
    code, summ = runbook_cmd.summary([judged("main", ok)], pg_cmd.VIEW)
    assert code == 0 and summ["line"] == "1 cluster: 1 healthy"
    code, summ = runbook_cmd.summary([judged("main", ok), judged("shard07", headless)],
                                     pg_cmd.VIEW)
    assert code == 2
    assert summ["line"] == "2 clusters: 1 healthy, 1 degraded (shard07: no primary)"
    assert (summ["healthy"], summ["degraded"], summ["unreachable"]) == (1, 1, 0)
    code, summ = runbook_cmd.summary([judged("a", headless), judged("b", lost),
                                      judged("c", ok)], pg_cmd.VIEW)
    assert code == 3 and summ["line"] == ("3 clusters: 1 healthy, 1 degraded (a: no primary)"
                                          ", 1 unreachable (b: t2 unreachable)")


def test_the_fleet_document_groups_by_cluster_and_keeps_the_flat_lists() -> None:
    ok = cluster(node("db1", PRIMARY, addr="10.0.0.1"), node("db2", STANDBY),
                 bouncer_to="10.0.0.1:5432")
    headless = cluster(node("s1", DOWN), node("s2", STANDBY))
    js = [judged("main", ok), judged("shard", headless)]
    code, summ = runbook_cmd.summary(js, pg_cmd.VIEW)
    doc = runbook_cmd.fleet_document(js, summ, code)
    assert [(c["name"], c["verdict"], c["exit_code"]) for c in doc["clusters"]] == [
        ("main", "healthy", 0), ("shard", "degraded", 2)]
    assert [n["name"] for n in doc["clusters"][1]["nodes"]] == ["s1", "s2"]
    assert [(n["name"], n["cluster"]) for n in doc["nodes"]] == [
        ("db1", "main"), ("db2", "main"), ("s1", "shard"), ("s2", "shard")]
    assert doc["exit_code"] == 2 and doc["summary"]["clusters"] == 2
    assert doc["warnings"][0].startswith("shard: no primary answers")
