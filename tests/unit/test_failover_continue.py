"""What `pg failover --continue RUN_ID` still does, decided from the journal's decision and a
hand-made cluster state (opskit/pg/failover_continue.py); and the refusals when the cluster
contradicts the journal."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from opskit.errors import SafetyError, UsageError
from opskit.pg import failover_continue
from opskit.pg.state import DOWN, PRIMARY, STANDBY, BouncerState, ClusterState, NodeState


class FakeCluster:
    """Only what the decision reads: a node's name and address."""

    def node(self, name: str) -> Any:
        return SimpleNamespace(name=name, address=f"10.0.0.{name[-1]}")


def node(name: str, role: str, upstream: str | None = None) -> NodeState:
    return NodeState(name, f"10.0.0.{name[-1]}", role, upstream=upstream)


def decide(*nodes: NodeState) -> failover_continue._Plan:
    cs = ClusterState(list(nodes), [BouncerState("lb1", True)])
    return failover_continue._decide(FakeCluster(), cs,  # type: ignore[arg-type]
                                     {"target": "db2", "old_primary": "db1"})


def test_interrupted_before_the_promote_promotes_and_makes_the_others_follow() -> None:
    plan = decide(node("db1", DOWN), node("db2", STANDBY), node("db3", STANDBY, "10.0.0.1:5432"))
    assert plan.promote and not plan.old_alive
    assert [n.name for n in plan.follow] == ["db3"]


def test_interrupted_before_the_fence_fences_the_live_old_primary_first() -> None:
    plan = decide(node("db1", PRIMARY), node("db2", STANDBY), node("db3", STANDBY))
    assert plan.old_alive and plan.promote


def test_already_promoted_and_followed_leaves_only_the_re_point() -> None:
    plan = decide(node("db1", DOWN), node("db2", PRIMARY), node("db3", STANDBY, "10.0.0.2:5432"))
    assert not plan.promote and not plan.old_alive and plan.follow == []


@pytest.mark.parametrize("nodes, said", [
    ((node("db1", DOWN), node("db2", STANDBY), node("db3", PRIMARY)), "db3 answers as primary"),
    ((node("db1", PRIMARY), node("db2", PRIMARY), node("db3", STANDBY)), "two primaries"),
    ((node("db1", DOWN), node("db2", DOWN), node("db3", STANDBY)), "the target db2 is down"),
])
def test_a_cluster_that_contradicts_the_journal_is_refused(nodes: tuple[NodeState, ...],
                                                             said: str) -> None:
    with pytest.raises(SafetyError, match=said) as refused:
        decide(*nodes)
    assert refused.value.exit_code == 4


def test_the_decision_is_read_from_the_runs_records(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal.jsonl"
    monkeypatch.setenv("OPSKIT_JOURNAL", str(path))
    recs = [{"run_id": "A", "command": "pg failover step", "details": {"step": 1}},
            {"run_id": "A", "command": "pg failover decision",
             "details": {"target": "db2", "old_primary": "db1"}},
            {"run_id": "B", "command": "pg failover step", "details": {"step": 1}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert failover_continue.decision_of("A") == {"target": "db2", "old_primary": "db1"}
    assert failover_continue.decision_of("B") is None  # stopped before deciding
    with pytest.raises(UsageError, match="no pg failover with run id C"):
        failover_continue.decision_of("C")
