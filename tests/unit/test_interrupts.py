"""The signal policy (opskit/runner/interrupts.py) with real signals sent to this process, and
its use by the runbook: a critical section finishes, a completed step is ok, no new step
starts after a signal."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from opskit.inventory import Host
from opskit.output import Environment
from opskit.runner import fleet, interrupts
from opskit.runner.fleet import RunOptions
from opskit.runner.runbook import Runbook, Step
from opskit.transport.session import Session


@pytest.fixture(autouse=True)
def policy(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[interrupts.Policy]:
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "journal.jsonl"))
    with interrupts.installed() as p:
        yield p


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # the handler runs before kill returns to Python code


def test_outside_a_section_a_signal_raises_at_once() -> None:
    with pytest.raises(KeyboardInterrupt):
        ctrl_c()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_section_finishes_then_stops(capfd: pytest.CaptureFixture[str]) -> None:
    done = []
    with pytest.raises(interrupts.Stopped) as stopped:
        with interrupts.critical("a -> b", leaves=lambda: "b undone"):
            ctrl_c()
            done.append("a")
            done.append("b")
    assert done == ["a", "b"]
    assert stopped.value.exit_code == 130
    assert "finishing a -> b first" in capfd.readouterr().err


def test_the_second_signal_says_what_it_leaves_and_the_third_leaves_it(
        capfd: pytest.CaptureFixture[str]) -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.critical("a -> b", leaves=lambda: "PgBouncer PAUSED at db1"):
            ctrl_c()
            ctrl_c()
            reached.append("after the warning")
            ctrl_c()
            reached.append("never")
    assert reached == ["after the warning"]
    err = capfd.readouterr().err
    assert "second Ctrl-C: stopping now would leave: PgBouncer PAUSED at db1" in err
    assert "press again within 3s" in err
    assert interrupts.aborted()


def test_a_signal_before_a_recovery_section_does_not_stop_it() -> None:
    with pytest.raises(KeyboardInterrupt):
        ctrl_c()
    ran = []
    with interrupts.critical("RESUME", leaves=lambda: "paused"):  # no Stopped: it came before
        ran.append("resume")
    assert ran == ["resume"]


def runbook() -> tuple[Runbook, io.StringIO]:
    out = io.StringIO()
    return Runbook(Environment(stdout=out, stderr=io.StringIO()), "t demo", ["t", "demo"]), out


def test_a_step_that_completed_during_a_signal_is_ok_and_the_next_does_not_start() -> None:
    # The failover's first section: promote -> re-point + RESUME; verify and follow come after
    # it (pg/failover_steps.py), so a Ctrl-C in the promote stops with clients writing.
    rb, _ = runbook()
    calls = []

    def promote(st: Step) -> None:
        ctrl_c()
        calls.append("promote")

    with pytest.raises(interrupts.Stopped):
        with rb.critical("promote -> re-point -> RESUME", leaves=lambda: "re-point undone"):
            rb.step("promote", "db2", does="promote", run=promote)
            rb.step("re-point, RESUME", "lb1", does="re-point",
                    run=lambda st: calls.append("re-point"))
    with pytest.raises(KeyboardInterrupt):  # the safe point: nothing more starts
        rb.step("verify", "lb1", does="verify", run=lambda st: calls.append("verify"))
    assert calls == ["promote", "re-point"]
    assert [s.status for s in rb.steps] == ["ok", "ok"]


def test_a_step_cut_short_outside_a_section_is_interrupted_not_failed() -> None:
    rb, out = runbook()
    with pytest.raises(KeyboardInterrupt):
        rb.step("wait", "db1", does="wait", run=lambda st: ctrl_c())
    assert rb.steps[0].status == "interrupted"
    assert "interrupted in" in out.getvalue()


def test_always_runs_its_step_after_an_interrupt() -> None:
    rb, _ = runbook()
    calls = []
    with pytest.raises(KeyboardInterrupt):
        with rb.always("RESUME", "lb1", does="RESUME", run=lambda st: calls.append("resume")):
            ctrl_c()
    assert calls == ["resume"] and rb.steps[-1].status == "ok"


def test_the_continue_command_is_the_runs_own_without_yes() -> None:
    rb = Runbook(Environment(stdout=io.StringIO(), stderr=io.StringIO()), "pg failover",
                 ["-i", "inv.yml", "pg", "failover", "-l", "db", "--to", "db2", "--yes"])
    cmd = rb.continue_command()
    assert cmd.startswith("opskit -i inv.yml pg failover -l db --continue ")
    assert "--yes" not in cmd and "--to" not in cmd


def _local(name: str) -> Host:
    return Host(name=name, vars={"ansible_connection": "local"}, groups=("all",))


def _until(cond: Callable[[], bool]) -> None:
    while not cond():  # the signal is handled in the main thread, soon after the kill
        time.sleep(0.01)


def test_a_host_section_in_a_fleet_run_finishes_and_no_new_host_starts(
        capfd: pytest.CaptureFixture[str]) -> None:
    done: list[str] = []

    def fn(s: Session) -> str:
        with interrupts.host_critical(f"switch -> reload on {s.host.name}",
                                      leaves=lambda: "reload undone"):
            s.check_stop()
            with s.recovering():
                s.run("true")
                ctrl_c()
                _until(interrupts.requested)
                s.run("true")  # after the signal: still runs, the section finishes
                done.append(s.host.name)
        return "ok"

    res = fleet.run([_local("a"), _local("b")], fn, RunOptions(forks=1))
    assert done == ["a"]
    assert res.interrupted and res.exit_code == 130
    assert [r.status for r in res.results] == [fleet.OK, fleet.SKIPPED]
    assert "Ctrl-C: finishing switch -> reload on a first" in capfd.readouterr().err


def test_a_host_section_left_on_the_third_signal_runs_no_more_steps(
        capfd: pytest.CaptureFixture[str]) -> None:
    def fn(s: Session) -> str:
        with interrupts.host_critical(f"switch -> reload on {s.host.name}",
                                      leaves=lambda: f"{s.host.name} switched, not reloaded"):
            with s.recovering():
                for n in (1, 2, 3):
                    ctrl_c()
                    _until(lambda n=n: interrupts._policy.presses >= n)
                _until(s.abandon.is_set)
                s.run("true")  # the operator left the section: this step does not run
        return "not reached"

    res = fleet.run([_local("a")], fn)
    assert res.interrupted and interrupts.aborted()
    assert res.results[0].status == fleet.SKIPPED
    err = capfd.readouterr().err
    assert "second Ctrl-C: stopping now would leave: a switched, not reloaded" in err
    assert "Ctrl-C again: leaving switch -> reload on a unfinished" in err


def test_a_signal_does_not_outlive_the_block_that_took_it() -> None:
    with interrupts.installed():
        with pytest.raises(KeyboardInterrupt):
            ctrl_c()
        assert interrupts.requested()
    assert not interrupts.requested() and not interrupts.aborted()
    rb = Runbook(Environment(stdout=io.StringIO(), stderr=io.StringIO()), "t", ["t"])
    rb.check("after the block", run=lambda st: None)  # no leftover stop request
    assert [s.status for s in rb.steps] == ["ok"]
