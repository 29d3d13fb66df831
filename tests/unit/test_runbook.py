"""The runbook step API (opskit/runner/runbook.py): one declaration is both the plan and the run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from opskit.output import Environment
from opskit.runner.runbook import Runbook, Step


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "journal.jsonl"
    monkeypatch.setenv("OPSKIT_JOURNAL", str(path))
    return path


def entries(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def runbook(dry_run: bool) -> tuple[Runbook, io.StringIO]:
    out = io.StringIO()
    return Runbook(Environment(stdout=out, stderr=io.StringIO()), "t demo", ["t", "demo"],
                   dry_run=dry_run), out


def demo(rb: Runbook, calls: list[str]) -> dict[str, object]:
    """A small runbook: a preflight decides the target and whether a step comes at all."""

    def ask(st: Step) -> tuple[str, bool]:
        calls.append("preflight")
        st.detail = "target b"
        return "b", True

    target, others = rb.check("preflight", "a", "b", run=ask)

    def act(name: str):
        def run(st: Step) -> None:
            calls.append(name)
            st.detail = f"{name} done"
        return run

    with rb.always("release", "lb", does="RESUME", run=act("release")):
        rb.step("hold", "lb", does="PAUSE db", run=act("hold"))
        rb.step(f"promote {target}", target, does="promote it", run=act("promote"))
        if others:
            rb.step("others follow", "a", does="follow", run=act("follow"))
    return {"target": target}


def test_a_dry_run_runs_only_the_checks_and_plans_the_rest(journal: Path) -> None:
    calls: list[str] = []
    rb, out = runbook(dry_run=True)
    demo(rb, calls)
    assert calls == ["preflight"]
    assert [(s.title, s.status) for s in rb.steps] == [
        ("preflight", "ok"), ("hold", "planned"), ("promote b", "planned"),
        ("others follow", "planned"), ("release", "planned")]
    planned = {s.title: s.detail for s in rb.steps if s.status == "planned"}
    assert planned["promote b"] == "promote it"  # "does" is what a plan shows
    text = out.getvalue()
    assert " 3. promote b [b]\n    promote it\n" in text and "PAUSE db" in text
    # Only the check is journaled as it ends; the plan goes into the final entry.
    assert [e["details"]["title"] for e in entries(journal)] == ["preflight"]
    doc = rb.document(0, {})
    assert doc["dry_run"] is True and [s["status"] for s in doc["steps"]].count("planned") == 4
    assert entries(journal)[-1]["phase"] == "step"  # the end record is the command's


def test_plan_and_run_yield_the_same_titles_and_hosts(journal: Path) -> None:
    plan, _ = runbook(dry_run=True)
    demo(plan, [])
    calls: list[str] = []
    real, out = runbook(dry_run=False)
    demo(real, calls)
    assert calls == ["preflight", "hold", "promote", "follow", "release"]
    assert [(s.title, s.hosts) for s in plan.steps] == [(s.title, s.hosts) for s in real.steps]
    assert [s.status for s in real.steps] == ["ok"] * 5
    assert real.steps[2].detail == "promote done" and "planned" not in out.getvalue()
    assert [e["details"]["title"] for e in entries(journal)][-5:] == [
        "preflight", "hold", "promote b", "others follow", "release"]


def test_a_failing_step_is_journaled_as_failed_and_reraised(journal: Path) -> None:
    rb, out = runbook(dry_run=False)
    ran: list[str] = []

    def boom(st: Step) -> None:
        raise RuntimeError("repmgr said no")

    with pytest.raises(RuntimeError, match="repmgr said no"):
        with rb.always("release", "lb", does="RESUME", run=lambda st: ran.append("release")):
            rb.step("promote", "db2", does="promote", run=boom)
            rb.step("never", "db3", does="-", run=lambda st: ran.append("never"))
    # The guard's step still ran, after the failure; nothing after the failed step did.
    assert ran == ["release"]
    assert [(s.title, s.status) for s in rb.steps] == [("promote", "failed"), ("release", "ok")]
    last = entries(journal)
    failed = next(e for e in last if e["details"]["title"] == "promote")
    assert failed["exit_code"] == 2 and failed["details"]["status"] == "failed"
    assert failed["outcomes"]["db2"]["error"] == "repmgr said no"
    assert "failed in" in out.getvalue()


def test_a_failing_guard_step_does_not_hide_the_first_error(journal: Path) -> None:
    rb, _ = runbook(dry_run=False)

    def boom(msg: str):
        def run(st: Step) -> None:
            raise RuntimeError(msg)
        return run

    with pytest.raises(RuntimeError, match="first"):
        with rb.always("release", "lb", does="RESUME", run=boom("second")):
            rb.step("promote", "db2", does="promote", run=boom("first"))
    assert [s.status for s in rb.steps] == ["failed", "failed"]


def test_a_check_returns_its_value_and_a_refusal_in_it_is_journaled(journal: Path) -> None:
    for dry in (True, False):
        rb, _ = runbook(dry_run=dry)
        assert rb.check("preflight", "a", run=lambda st: 42) == 42

        def refuse(st: Step) -> None:
            raise ValueError("two primaries")

        with pytest.raises(ValueError):
            rb.check("preflight again", "a", run=refuse)
        assert rb.steps[-1].status == "failed" and rb.steps[-1].detail == "two primaries"
    assert [e["details"]["status"] for e in entries(journal)] == ["ok", "failed"] * 2
