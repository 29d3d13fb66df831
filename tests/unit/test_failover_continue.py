"""What `pg failover --continue RUN_ID` still does, decided from the journal's decision and a
hand-made cluster state (opskit/pg/failover_continue.py); and the refusals when the cluster
contradicts the journal."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from opskit.errors import SafetyError, StepError, UsageError
from opskit.output import Environment
from opskit.pg import failover_continue, failover_steps
from opskit.pg.state import DOWN, PRIMARY, STANDBY, BouncerState, ClusterState, NodeState
from opskit.runner import interrupts
from opskit.runner.runbook import Runbook
from opskit.transport.errors import CommandFailed


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


# ---------------------------------------------------------------- the shared steps, in order
# pg/failover_steps.py with its host actions replaced by recorders: the order of the steps
# (clients let go before the follow), a failed follow after that, a Ctrl-C in the promote.

class Acts:
    """Stands in for the modules failover_steps acts through; records what was done."""

    def __init__(self, follow_fails: bool = False, on_promote: Any = None,
                 verify_fails: bool = False) -> None:
        self.done: list[str] = []
        self.follow_fails, self.on_promote = follow_fails, on_promote
        self.verify_fails = verify_fails
        self.bouncer = SimpleNamespace(database_names=lambda c: "app", each=self.each,
                                       repoint_then_resume=self.repoint_then_resume,
                                       restore_login_retry=self.restore_login_retry,
                                       LOGIN_RETRY="server_login_retry",
                                       release=None, hold=None)
        self.steps = SimpleNamespace(stop=lambda s, n: self.did("stop") or "stopped",
                                     promote=self.promote, follow_all=self.follow_all,
                                     verify_writes=self.verify)
        self.state = SimpleNamespace(gather=lambda *a, **k: None)
        self.checks = SimpleNamespace(changed_before_promote=lambda *a: [])

    def did(self, what: str) -> None:
        self.done.append(what)

    def each(self, cluster: Any, pool: Any, fn: Any, strict: bool = True) -> dict[str, Any]:
        self.did("hold" if fn is not None and fn is not self.bouncer.release else "RESUME")
        return {}

    def promote(self, s: Any, node: Any) -> None:
        if self.on_promote:
            self.on_promote()
        self.did("promote")

    def repoint_then_resume(self, cluster: Any, pool: Any, target: Any, p: Any) -> str:
        self.did("re-point+RESUME")
        p.repointed, p.held = True, False
        p.login_retry["lb1"] = "15"  # as bouncer.py does: lowered to 0 until restored
        return "lb1/app: db1 -> db2"

    def restore_login_retry(self, cluster: Any, pool: Any, p: Any) -> str:
        self.did("restore retry")
        p.login_retry.clear()
        return "server_login_retry back to 15 on lb1"

    def verify(self, *args: Any) -> str:
        self.did("verify")
        if self.verify_fails:
            raise CommandFailed("through PgBouncer lb1:6432/app: connection refused")
        return "wrote"

    def follow_all(self, pool: Any, cluster: Any, standbys: Any, upstream: Any) -> None:
        self.did("follow")
        if self.follow_fails:
            raise CommandFailed("db3: repmgr standby follow failed: ERROR no route")


def take(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, acts: Acts, *,
         dry_run: bool = False) -> tuple[Runbook, failover_steps.Progress]:
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "journal.jsonl"))
    for name in ("bouncer", "steps", "state", "checks"):
        monkeypatch.setattr(failover_steps, name, getattr(acts, name))
    rb = Runbook(Environment(stdout=io.StringIO(), stderr=io.StringIO()), "pg failover",
                 ["pg", "failover", "-l", "db", "--yes"], dry_run=dry_run)
    pg = {n: SimpleNamespace(name=n, host=n, address=f"10.0.0.{n[-1]}", port=5432,
                             repmgr_conf="/etc/repmgr.conf") for n in ("db1", "db2", "db3")}
    cluster = SimpleNamespace(bouncers=[SimpleNamespace(name="lb1", databases=["app"])])
    p = failover_steps.Progress(old_stopped=False)
    r = failover_steps.Remaining(pg["db2"], pg["db1"], fence="pg_ctl stop", promote=True,
                                 follow=[pg["db3"]], target_timeline=1, timeline=1, progress=p)
    failover_steps.take(cluster, SimpleNamespace(get=lambda h: None), rb,  # type: ignore[arg-type]
                        r, what="pg failover")
    return rb, p


def test_clients_are_let_go_before_the_other_standbys_follow(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    acts = Acts()
    rb, p = take(monkeypatch, tmp_path, acts)
    assert acts.done == ["hold", "stop", "promote", "re-point+RESUME", "verify",
                         "restore retry", "follow"]
    assert [s.status for s in rb.steps] == ["ok"] * 7
    assert p.followed and p.verified and not p.held and p.login_retry == {}
    # The dry run plans the same steps in the same order (and does nothing).
    planned = Acts()
    plan, _ = take(monkeypatch, tmp_path, planned, dry_run=True)
    assert planned.done == []
    assert [s.title for s in plan.steps] == [s.title for s in rb.steps]
    assert "re-point PgBouncer" in plan.steps[3].title and "follow" in plan.steps[6].title
    assert "server_login_retry" in plan.steps[3].detail  # the plan says it is lowered...
    assert "restore server_login_retry" in plan.steps[5].title  # ...and when it comes back


def test_a_follow_that_fails_after_clients_are_back_is_a_failed_step(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    acts = Acts(follow_fails=True)
    with pytest.raises(StepError) as failed:
        take(monkeypatch, tmp_path, acts)
    assert failed.value.exit_code == 2
    assert "db3: repmgr standby follow failed" in failed.value.message
    hint = failed.value.hint or ""
    assert "PgBouncer lb1 points at db2 and is RESUMEd; clients can write" in hint
    assert "NOT every standby follows db2: db3" in hint and "--continue" in hint
    assert acts.done[-1] == "follow" and "RESUME" not in acts.done  # nothing held to release
    assert [json.loads(x)["details"]["status"] for x in
            (tmp_path / "journal.jsonl").read_text().splitlines()][-1] == "failed"


def test_a_ctrl_c_in_the_promote_stops_with_clients_writing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    acts = Acts(on_promote=lambda: os.kill(os.getpid(), signal.SIGINT))
    with interrupts.installed(), pytest.raises(interrupts.Stopped) as stopped:
        take(monkeypatch, tmp_path, acts)
    # The section (promote -> re-point -> RESUME) finished; verify and follow did not start,
    # and server_login_retry, lowered for the RESUME, was set back on the way out.
    assert acts.done == ["hold", "stop", "promote", "re-point+RESUME", "restore retry"]
    titles = [json.loads(x)["details"]["title"] for x in
              (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert titles[-1] == "restore server_login_retry on PgBouncer (after the failure)"
    said = stopped.value.message
    assert "PgBouncer lb1 points at db2 and is RESUMEd; clients can write through PgBouncer " \
           "(the verify step did not run); db3 still follows db1" in said
    assert "--continue" in (stopped.value.hint or "")


def test_a_failed_verify_still_restores_server_login_retry(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    acts = Acts(verify_fails=True)
    with pytest.raises(StepError) as failed:
        take(monkeypatch, tmp_path, acts)
    assert failed.value.exit_code == 2 and "connection refused" in failed.value.message
    # The planned restore did not run (the verify failed before it): the recovery did.
    assert acts.done == ["hold", "stop", "promote", "re-point+RESUME", "verify", "restore retry"]
    records = [json.loads(x)["details"] for x in
               (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [(r["title"].split(" (")[0], r["status"]) for r in records][-2:] == [
        ("verify: a write through PgBouncer lands on the new primary, new timeline", "failed"),
        ("restore server_login_retry on PgBouncer", "ok")]
    assert records[-1]["detail"] == "server_login_retry back to 15 on lb1"
    assert "server_login_retry is still 0" not in (failed.value.hint or "")


def test_the_state_left_names_a_server_login_retry_still_lowered() -> None:
    p = failover_steps.Progress(old_stopped=True, promoted=True, repointed=True,
                                login_retry={"lb1": "15"})
    said = failover_steps.state_left(p, "db2", "db1", [], ["lb1"])
    assert "server_login_retry is still 0 on lb1 (configured: 15)" in said
