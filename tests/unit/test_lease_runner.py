"""runner/lease.py ``held()`` over local lock hosts (``ansible_connection: local``), each with a
lock dir of its own (``opskit_lease_dir``): the majority rule, the loser's message, losing a
broken lease. The lab tests (tests/lab/test_lease.py) do the same over SSH with hosts down."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opskit.errors import UsageError
from opskit.inventory import Host
from opskit.runner import lease as lease_mod
from opskit.runner import wait
from opskit.runner.fleet import RunOptions
from opskit.runner.lease import LeaseRefused, held, scope

OPTIONS = RunOptions()


def local_hosts(tmp_path: Path, names: tuple[str, ...] = ("h1", "h2", "h3")) -> list[Host]:
    return [Host(n, {"ansible_connection": "local", "opskit_lease_dir": str(tmp_path / n)})
            for n in names]


def unsafe(host: Host) -> None:
    d = Path(host.vars["opskit_lease_dir"])
    d.mkdir(mode=0o700)
    os.chmod(d, 0o777)


def test_held_on_every_lock_host_and_released_after(tmp_path: Path) -> None:
    hosts = local_hosts(tmp_path)
    sc = scope("pg", "main")
    with held(list(reversed(hosts)), sc, options=OPTIONS, run_id="r1", command="pg failover",
              ttl=30) as lease:
        assert lease.hosts == ["h1", "h2", "h3"] and lease.need == 2 and lease.missing == {}
        assert all((tmp_path / n / f"{sc}.lease").exists() for n in ("h1", "h2", "h3"))
        lease.check()
    assert not any((tmp_path / n / f"{sc}.lease").exists() for n in ("h1", "h2", "h3"))


def test_a_second_run_is_refused_naming_the_holder_and_its_hosts(tmp_path: Path) -> None:
    hosts = local_hosts(tmp_path)
    with held(hosts, "pg.main", options=OPTIONS, run_id="20261201T224901Z-abcd1234",
              command="pg failover", ttl=30):
        with pytest.raises(LeaseRefused) as err:
            with held(hosts, "pg.main", options=OPTIONS, run_id="r2", command="pg failover",
                      ttl=30, what="the cluster main"):
                pytest.fail("both runs hold the lease")
    msg = str(err.value)
    assert msg.startswith("the cluster main is locked by ") and " pid " in msg
    assert "run 20261201T224901Z-abcd1234 (pg failover) until " in msg
    assert msg.endswith("Z on h1, h2, h3") and err.value.exit_code == 4
    assert "--break-lock" in (err.value.hint or "")


def test_a_run_refused_at_the_first_host_asks_no_other(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The rest are asked at once only by the run that took the first host: the loser of two
    runs started together has taken nothing anywhere (nothing for it to give back)."""
    hosts = local_hosts(tmp_path)
    asked: list[tuple[str, str]] = []
    call = lease_mod._call

    def spy(s, action, *args, **kw):  # type: ignore[no-untyped-def]
        asked.append((s.host.name, action))
        return call(s, action, *args, **kw)

    monkeypatch.setattr(lease_mod, "_call", spy)
    with held(hosts[:1], "pg.main", options=OPTIONS, run_id="r1", command="c", ttl=30):
        asked.clear()
        with pytest.raises(LeaseRefused) as err:
            with held(hosts, "pg.main", options=OPTIONS, run_id="r2", command="c", ttl=30):
                pytest.fail("both runs hold the lease")
        assert str(err.value).endswith(" on h1")
        assert [a for a in asked if a[1] == "acquire"] == [("h1", "acquire")]
    asked.clear()
    with held(hosts, "pg.main", options=OPTIONS, run_id="r3", command="c", ttl=30):
        assert sorted(asked) == [("h1", "acquire"), ("h2", "acquire"), ("h3", "acquire")]


def test_a_lock_host_that_refuses_is_skipped_while_a_majority_answers(tmp_path: Path) -> None:
    hosts = local_hosts(tmp_path)
    unsafe(hosts[1])
    with held(hosts, "pg.main", options=OPTIONS, run_id="r1", command="c", ttl=30) as lease:
        assert lease.hosts == ["h1", "h3"]
        assert "writable" in lease.missing["h2"]


def test_without_a_majority_it_is_refused_and_gives_back_what_it_took(tmp_path: Path) -> None:
    hosts = local_hosts(tmp_path)
    unsafe(hosts[1])
    unsafe(hosts[2])
    with pytest.raises(LeaseRefused) as err:
        with held(hosts, "pg.main", options=OPTIONS, run_id="r1", command="c", ttl=30,
                  what="the cluster main"):
            pytest.fail("held without a majority")
    assert str(err.value).startswith("cannot lock the cluster main: 1 of 3 lock hosts "
                                     "answered (need 2): h2: ")
    assert not (tmp_path / "h1" / "pg.main.lease").exists()


def test_a_broken_lease_is_noticed_by_its_run_at_the_next_renewal(tmp_path: Path) -> None:
    hosts = local_hosts(tmp_path)
    with held(hosts, "pg.main", options=OPTIONS, run_id="old", command="c", ttl=1.5) as first:
        with held(hosts, "pg.main", options=OPTIONS, run_id="new", command="c", ttl=30,
                  break_lock=True) as second:
            assert {r["run_id"] for r in second.broken.values()} == {"old"}
            # Renewals come every 0.5 s; the first after the break finds the lease gone.
            wait.until(lambda: (first.lost is not None, first.lost), what="the broken run "
                       "to notice", timeout=20, interval=0.05)
            with pytest.raises(LeaseRefused, match="lease lost"):
                first.check()
            second.check()
        assert not (tmp_path / "h1" / "pg.main.lease").exists()


def test_bad_arguments_are_refused_before_any_host_is_asked(tmp_path: Path) -> None:
    hosts = local_hosts(tmp_path)
    for bad in ("../x", "pg/main", ""):
        with pytest.raises(UsageError), held(hosts, bad, options=OPTIONS, run_id="r1",
                                             command="c"):
            pass
    with pytest.raises(UsageError), held([], "pg.main", options=OPTIONS, run_id="r1",
                                         command="c"):
        pass
    with pytest.raises(UsageError), held(hosts, "pg.main", options=OPTIONS, run_id="r1",
                                         command="c", ttl=0):
        pass
    assert not any(p.exists() for p in (tmp_path / h.name for h in hosts))


def test_lock_hosts_that_stop_answering_lose_the_lease_at_their_expiry(tmp_path: Path) -> None:
    hosts = local_hosts(tmp_path)
    with held(hosts, "pg.main", options=OPTIONS, run_id="r1", command="c", ttl=1.5) as lease:
        lease.check()
        # Two lock hosts now refuse every renewal (as an unreachable host would not answer).
        for h in hosts[1:]:
            os.chmod(h.vars["opskit_lease_dir"], 0o777)
        wait.until(lambda: (lease.lost is not None, lease.lost), what="the lease to be lost",
                   timeout=20, interval=0.05)
        assert "1 of 3 lock hosts still held (need 2)" in str(lease.lost)
        assert "writable" in str(lease.lost)
        with pytest.raises(LeaseRefused, match="lease lost on the lease pg.main"):
            lease.check()
