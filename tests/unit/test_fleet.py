"""The runner over real local processes (ansible_connection: local) and a closed TCP port."""

from __future__ import annotations

import threading
import time

import pytest

from opskit import errors
from opskit.inventory import Host
from opskit.runner import fleet
from opskit.runner.fleet import RunOptions
from opskit.transport.session import Session


def local(name: str) -> Host:
    return Host(name=name, vars={"ansible_connection": "local"}, groups=("all",))


def test_forks_bounds_hosts_in_flight() -> None:
    hosts = [local(f"h{i}") for i in range(7)]
    active, peak, lock = [0], [0], threading.Lock()

    def fn(s: Session) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        s.run("sleep 0.15")
        with lock:
            active[0] -= 1

    res = fleet.run(hosts, fn, RunOptions(forks=2))
    assert [r.status for r in res.results] == ["ok"] * 7
    assert peak[0] == 2 and res.max_in_flight == 2
    # 7 hosts, 2 at a time, 0.15 s each: at least 4 rounds.
    assert res.duration >= 0.55


def test_results_keep_inventory_order_and_values() -> None:
    hosts = [local(n) for n in ("c", "a", "b")]
    res = fleet.run(hosts, lambda s: s.run_argv(["echo", s.host.name]).stdout.strip())
    assert [(r.host, r.value) for r in res.results] == [("c", "c"), ("a", "a"), ("b", "b")]


def test_failed_step_keeps_exit_status_and_stderr_tail() -> None:
    res = fleet.run([local("x")], lambda s: s.run("echo partial; echo boom >&2; exit 7"))
    r = res.results[0]
    assert r.status == "failed"
    assert r.exit_status == 7
    assert "boom" in r.stderr and "partial" in r.stdout
    assert res.exit_code == errors.EXIT_FAILED


def test_command_timeout_is_its_own_status() -> None:
    res = fleet.run([local("slow")], lambda s: s.run("sleep 5"), RunOptions(command_timeout=0.3))
    assert res.results[0].status == "timeout"
    assert res.results[0].duration < 3
    assert res.exit_code == errors.EXIT_FAILED


def test_unreachable_host_is_classified_and_others_run() -> None:
    closed = Host(name="gone", vars={"ansible_host": "127.0.0.1", "ansible_port": 1,
                                     "ansible_user": "root"}, groups=("all",))
    res = fleet.run([closed, local("fine")], lambda s: s.run("true"))
    assert [r.status for r in res.results] == ["unreachable", "ok"]
    assert "refused" in (res.results[0].error or "")
    assert res.exit_code == errors.EXIT_UNREACHABLE


def test_failed_wins_over_unreachable_in_exit_code() -> None:
    closed = Host(name="gone", vars={"ansible_host": "127.0.0.1", "ansible_port": 1},
                  groups=("all",))
    res = fleet.run([closed, local("bad")], lambda s: s.run("false"))
    assert res.exit_code == errors.EXIT_FAILED


def test_python_error_in_step_function_fails_only_that_host() -> None:
    def fn(s: Session) -> int:
        if s.host.name == "b":
            raise ValueError("bad data")
        return 1

    res = fleet.run([local("a"), local("b")], fn)
    assert [r.status for r in res.results] == ["ok", "failed"]
    assert "ValueError: bad data" in (res.results[1].error or "")


def test_stop_event_skips_later_steps() -> None:
    def fn(s: Session) -> None:
        s.run("true")
        s.stop.set()  # as a Ctrl-C would, between steps
        s.run("echo never")

    r = fleet.run([local("a")], fn).results[0]
    assert r.status == "skipped" and "never" not in r.stdout


def test_env_values_are_quoted(tmp_path) -> None:
    evil = f"a;touch {tmp_path}/pwned;$(touch {tmp_path}/pwned2)`touch {tmp_path}/p3`"
    res = fleet.run([local("h")], lambda s: s.run('printf %s "$V"', env={"V": evil}))
    assert res.results[0].stdout == evil
    assert list(tmp_path.iterdir()) == []


def test_run_argv_quotes_every_argument(tmp_path) -> None:
    name = f"x'; touch {tmp_path}/pwned; echo '"
    res = fleet.run([local(name)], lambda s: s.run_argv(["printf", "%s", s.host.name]))
    assert res.results[0].stdout == name
    assert list(tmp_path.iterdir()) == []


def test_forks_must_be_positive() -> None:
    with pytest.raises(errors.UsageError):
        fleet.run([local("a")], lambda s: None, RunOptions(forks=0))


def test_durations_and_start_times_recorded() -> None:
    before = time.time()
    r = fleet.run([local("a")], lambda s: s.run("sleep 0.1")).results[0]
    assert r.duration >= 0.1 and r.started_at is not None and r.started_at >= before
