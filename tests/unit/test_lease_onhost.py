"""onhost/lease.py run as it runs on a lock host (``python3 -I -S -c SOURCE``), on a tmp dir."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from opskit.onhost import script
from opskit.runner import lease as runner_lease

SOURCE = script("lease")


def owner(run_id: str, **extra: Any) -> dict[str, Any]:
    return {"owner": "root@opshost", "pid": 4242, "run_id": run_id, "command": "pg failover",
            **extra}


def argv(lock_dir: Path, *args: str) -> list[str]:
    return ["python3", "-I", "-S", "-c", SOURCE, "--dir", str(lock_dir), *args]


def lease(lock_dir: Path, *args: str, stdin: dict[str, Any] | str | None = None,
          rc: int = 0) -> dict[str, Any]:
    data = stdin if isinstance(stdin, str) or stdin is None else json.dumps(stdin)
    proc = subprocess.run(argv(lock_dir, *args), input=data or "", capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == rc, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return dict(json.loads(lines[0]))


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    return tmp_path / "var" / "locks"


def test_acquire_creates_a_private_dir_and_one_lease_file(lock_dir: Path) -> None:
    before = time.time()
    got = lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r1"))
    assert got["ok"] is True and before + 60 <= got["expires"] <= got["now"] + 60 + 1e-6
    for d in (lock_dir, lock_dir.parent):
        assert (d.stat().st_mode & 0o777) == 0o700
    record = json.loads((lock_dir / "pg.main.lease").read_text())
    assert {k: record[k] for k in ("owner", "pid", "run_id", "command", "ttl")} == {
        "owner": "root@opshost", "pid": 4242, "run_id": "r1", "command": "pg failover",
        "ttl": 60.0}
    assert record["expires"] == got["expires"] and record["started"].endswith("Z")
    assert sorted(p.name for p in lock_dir.iterdir()) == [".guard", "pg.main.lease"]


def test_a_second_run_is_refused_and_told_the_holder(lock_dir: Path) -> None:
    lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r1"))
    got = lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r2"))
    assert got["ok"] is False
    assert got["holder"]["run_id"] == "r1" and got["holder"]["expired"] is False
    assert json.loads((lock_dir / "pg.main.lease").read_text())["run_id"] == "r1"
    # Another scope is another lease.
    assert lease(lock_dir, "acquire", "redis.cache", "60", stdin=owner("r2"))["ok"] is True


def test_the_same_run_takes_its_own_lease_again(lock_dir: Path) -> None:
    first = lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r1"))
    again = lease(lock_dir, "acquire", "pg.main", "90", stdin=owner("r1"))
    assert again["ok"] is True and again["expires"] > first["expires"]


def test_renew_extends_only_our_lease(lock_dir: Path) -> None:
    first = lease(lock_dir, "acquire", "pg.main", "5", stdin=owner("r1"))
    renewed = lease(lock_dir, "renew", "pg.main", "r1", "100")
    assert renewed["ok"] is True and renewed["expires"] > first["expires"] + 90
    other = lease(lock_dir, "renew", "pg.main", "r2", "100")
    assert other["ok"] is False and other["holder"]["run_id"] == "r1"
    assert lease(lock_dir, "renew", "nothing.here", "r1", "100") == {
        "ok": False, "holder": None, "now": pytest.approx(time.time(), abs=30)}


def test_release_removes_only_our_lease(lock_dir: Path) -> None:
    lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r1"))
    refused = lease(lock_dir, "release", "pg.main", "r2")
    assert refused["ok"] is False and refused["holder"]["run_id"] == "r1"
    assert (lock_dir / "pg.main.lease").exists()
    assert lease(lock_dir, "release", "pg.main", "r1")["ok"] is True
    assert not (lock_dir / "pg.main.lease").exists()
    assert lease(lock_dir, "show", "pg.main")["holder"] is None


def test_break_removes_any_lease_and_returns_it(lock_dir: Path) -> None:
    lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r1"))
    broken = lease(lock_dir, "break", "pg.main")
    assert broken["ok"] is True and broken["holder"]["run_id"] == "r1"
    assert not (lock_dir / "pg.main.lease").exists()
    assert lease(lock_dir, "break", "pg.main")["holder"] is None
    assert lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r2"))["ok"] is True


def test_show_tells_holder_and_expiry(lock_dir: Path) -> None:
    assert lease(lock_dir, "show", "pg.main")["holder"] is None
    lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r1"))
    shown = lease(lock_dir, "show", "pg.main")
    assert shown["expired"] is False and shown["holder"]["owner"] == "root@opshost"


def test_an_expired_lease_is_taken_over(lock_dir: Path) -> None:
    lease(lock_dir, "acquire", "pg.main", "1", stdin=owner("r1"))
    assert lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r2"))["ok"] is False
    time.sleep(1.2)
    shown = lease(lock_dir, "show", "pg.main")
    assert shown["expired"] is True and shown["holder"]["run_id"] == "r1"
    got = lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r2"))
    assert got["ok"] is True and got["took_over"]["run_id"] == "r1"
    assert json.loads((lock_dir / "pg.main.lease").read_text())["run_id"] == "r2"
    # The old run can no longer renew nor release it.
    assert lease(lock_dir, "renew", "pg.main", "r1", "60")["ok"] is False
    assert lease(lock_dir, "release", "pg.main", "r1")["ok"] is False


def test_a_corrupt_lease_file_is_never_taken_over_only_broken(lock_dir: Path) -> None:
    lease(lock_dir, "show", "pg.main")  # makes the dir
    (lock_dir / "pg.main.lease").write_text("{not json")
    got = lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r1"))
    assert got["ok"] is False and "corrupt" in got["holder"]
    assert "corrupt" in lease(lock_dir, "break", "pg.main")["holder"]
    assert lease(lock_dir, "acquire", "pg.main", "60", stdin=owner("r1"))["ok"] is True


def test_twenty_processes_racing_for_one_scope_one_wins(lock_dir: Path) -> None:
    lease(lock_dir, "show", "pg.main")  # the dir exists: they race on the lease, not mkdir
    procs = [subprocess.Popen(argv(lock_dir, "acquire", "pg.main", "60"), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(20)]
    # Every one is started before any gets its stdin: they all go at once.
    for i, p in enumerate(procs):
        assert p.stdin is not None
        p.stdin.write(json.dumps(owner(f"run{i}")))
        p.stdin.close()
    answers = []
    for p in procs:
        assert p.stdout is not None
        answers.append(json.loads(p.stdout.read()))
        assert p.wait(timeout=60) == 0
    winners = [i for i, a in enumerate(answers) if a["ok"]]
    assert len(winners) == 1
    winner = f"run{winners[0]}"
    assert all(a["holder"]["run_id"] == winner for a in answers if not a["ok"])
    assert json.loads((lock_dir / "pg.main.lease").read_text())["run_id"] == winner
    assert [p.name for p in lock_dir.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("hostile", ["../x", "a/b", "", "a" * 300, "a\x00b", "a\nb", "pg.main\n",
                                     "a..b", ".hidden", "Upper", "-x", "a b"])
def test_hostile_scopes_are_refused_before_any_file_is_touched(lock_dir: Path,
                                                               hostile: str) -> None:
    for action in (["show", hostile], ["break", hostile], ["release", hostile, "r1"]):
        if "\x00" in hostile:
            # No argv can carry a NUL (exec refuses it): the runner's check is the guard.
            with pytest.raises(ValueError):
                subprocess.run(argv(lock_dir, *action), capture_output=True)
            continue
        got = lease(lock_dir, *action, rc=2)
        assert got["ok"] is False and "not a lease scope" in got["error"]
    assert not lock_dir.parent.exists()
    with pytest.raises(runner_lease.UsageError):
        runner_lease.check_scope(hostile)


def test_bad_owner_records_and_ttls_are_refused(lock_dir: Path) -> None:
    for bad in ("not json", "[1]", json.dumps({"owner": "x", "pid": 1, "command": "c"}),
                json.dumps(owner("r1", pid="1")), json.dumps(owner("bad id"))):
        error = lease(lock_dir, "acquire", "pg.main", "60", stdin=bad, rc=2)["error"]
        assert "owner record" in error or "not a run id" in error, error
    for ttl in ("0", "-1", "nan", "inf", "1e9", "x"):
        got = lease(lock_dir, "acquire", "pg.main", ttl, stdin=owner("r1"), rc=2)
        assert "ttl" in got["error"]
    assert not (lock_dir / "pg.main.lease").exists()


def test_a_symlinked_lock_dir_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    link = tmp_path / "locks"
    link.symlink_to(real)
    got = lease(link, "acquire", "pg.main", "60", stdin=owner("r1"), rc=2)
    assert "symlink" in got["error"]
    assert list(real.iterdir()) == []


def test_a_group_or_other_writable_lock_dir_is_refused(tmp_path: Path) -> None:
    for mode in (0o770, 0o702, 0o777):
        d = tmp_path / f"locks{mode:o}"
        d.mkdir()
        os.chmod(d, mode)
        got = lease(d, "acquire", "pg.main", "60", stdin=owner("r1"), rc=2)
        assert "writable" in got["error"]
        assert list(d.iterdir()) == []


def test_a_writable_parent_is_refused_before_a_dir_is_made_in_it(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, 0o777)  # another user could swap what we make in here
    got = lease(parent / "locks", "show", "pg.main", rc=2)
    assert "another user" in got["error"]
    assert list(parent.iterdir()) == []


def test_a_lock_dir_of_another_owner_is_refused(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "the unit tests run as root here (to own a dir as another uid)"
    d = tmp_path / "locks"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    got = lease(d, "acquire", "pg.main", "60", stdin=owner("r1"), rc=2)
    assert "owned by uid 65534" in got["error"]
    assert list(d.iterdir()) == []


def test_the_runner_encodes_any_parts_into_a_valid_distinct_scope() -> None:
    cases = [("snapshot", "db1", "/data"), ("snapshot", "db1/", "data"), ("snapshot", "db1.x"),
             ("snapshot", "db1", "x"), ("pg", "Main"), ("pg", "main"), ("pg", "%2f"),
             ("pg", "../.."), ("deploy", "app", "é")]
    made = [runner_lease.scope(*c) for c in cases]
    assert made[0] == "snapshot.db1.%2fdata"
    assert len(set(made)) == len(made)
    for s in made:
        assert runner_lease.check_scope(s) == s
    for bad in [("Pg", "x"), ("pg",), ("pg", ""), ("pg", "x" * 250)]:
        with pytest.raises(runner_lease.UsageError):
            runner_lease.scope(*bad)
