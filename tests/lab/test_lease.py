"""The cluster lease (runner/lease.py) on real lab hosts: one run at a time, a majority rule,
expiry after a killed holder, --break-lock, renewal, and a non-root login with sudo.

The lock hosts are app1-3; each lab host has its own /var/lib/opskit (a private bind mount),
so the three lease files are really three. Every test uses a scope of its own.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, stop_sshd, wait_for

import opskit.lab as labmod
from opskit import inventory
from opskit.inventory import Host
from opskit.lab import LabStatus
from opskit.runner.fleet import RunOptions
from opskit.runner.lease import Lease, LeaseRefused, held, scope

pytestmark = pytest.mark.lab

NAMES = ("app1", "app2", "app3")
OPTIONS = RunOptions()


def lock_hosts(inv: Path) -> list[Host]:
    hosts = inventory.load(inv).hosts
    return [hosts[n] for n in NAMES]


def run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:8]


def on_host(lab: LabStatus, name: str, script: str) -> subprocess.CompletedProcess[str]:
    """``sh -c script`` as root inside the lab host (its namespace), not through opskit."""
    return labmod.run_in_host(name, ["sh", "-c", script], state_dir=lab.state_dir, timeout=30)


def lease_file(lab: LabStatus, name: str, sc: str) -> dict[str, Any] | None:
    out = on_host(lab, name, f"cat /var/lib/opskit/locks/{sc}.lease 2>/dev/null || true")
    return json.loads(out.stdout) if out.stdout.strip() else None


@pytest.fixture
def sc() -> str:
    return scope("test", uuid.uuid4().hex[:10])


@pytest.fixture
def hosts(lab: LabStatus) -> list[Host]:
    return lock_hosts(lab.inventory_path)


@pytest.fixture
def restore_after(lab_restore: Callable[[], LabStatus]) -> Iterator[None]:
    yield
    lab_restore()


def acquire_once(hosts: list[Host], sc: str, **kw: Any) -> tuple[str, list[str]]:
    """Take and release the lease: the run id and the hosts it was held on."""
    rid = run_id()
    with held(hosts, sc, options=OPTIONS, run_id=rid, command="test", ttl=30, **kw) as lease:
        return rid, lease.hosts


def test_two_runs_started_together_exactly_one_holds(lab: LabStatus, hosts: list[Host],
                                                     sc: str) -> None:
    start = threading.Barrier(2)
    both_answered = threading.Barrier(2, timeout=120)
    ids = [run_id(), run_id()]
    got: dict[int, Any] = {}

    def run(i: int) -> None:
        # Each run its own held() and so its own connections, as two opskit processes.
        start.wait()
        try:
            with held(hosts, sc, options=OPTIONS, run_id=ids[i], command="pg failover",
                      ttl=30, what="the cluster main") as lease:
                got[i] = lease.hosts
                both_answered.wait()  # hold on until the other run has its answer
        except LeaseRefused as exc:
            got[i] = exc
            both_answered.wait()

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    winners = [i for i in (0, 1) if isinstance(got.get(i), list)]
    assert len(winners) == 1, got
    (w,) = winners
    loser = got[1 - w]
    assert isinstance(loser, LeaseRefused) and loser.exit_code == 4
    assert got[w] == list(NAMES)
    msg = str(loser)
    assert msg.startswith("the cluster main is locked by ") and f"run {ids[w]}" in msg
    assert "(pg failover)" in msg and "\n" not in msg
    # Released at the end, everywhere: the next run gets it at once.
    assert all(lease_file(lab, n, sc) is None for n in NAMES)
    assert acquire_once(hosts, sc)[1] == list(NAMES)


def test_one_lock_host_down_still_a_majority(lab: LabStatus, hosts: list[Host], sc: str,
                                             lab_restore: Callable[[], LabStatus]) -> None:
    stop_sshd(lab, "app3")
    rid = run_id()
    with held(hosts, sc, options=OPTIONS, run_id=rid, command="test", ttl=30) as lease:
        assert lease.hosts == ["app1", "app2"]
        assert lease.missing == {"app3": "unreachable"}
        lease.check()
        assert lease_file(lab, "app1", sc)["run_id"] == rid  # type: ignore[index]
    assert lease_file(lab, "app1", sc) is None
    # Back up (its sshd rejoins the namespace), app3 still has its own lock dir.
    lab_restore()
    for n in NAMES:
        own = Path(lab.state_dir) / "hosts" / n / "var-opskit"
        assert on_host(lab, n, f"test /var/lib/opskit -ef {own}").returncode == 0, n


def test_two_lock_hosts_down_refused_naming_them(lab: LabStatus, hosts: list[Host], sc: str,
                                                 restore_after: None) -> None:
    stop_sshd(lab, "app2")
    stop_sshd(lab, "app3")
    with pytest.raises(LeaseRefused) as err:
        acquire_once(hosts, sc, what="the cluster main")
    assert str(err.value) == ("cannot lock the cluster main: 1 of 3 lock hosts answered "
                              "(need 2): app2, app3 unreachable")
    assert err.value.hint and err.value.exit_code == 4
    # What it took on app1 it gave back.
    assert lease_file(lab, "app1", sc) is None


HOLDER = """
import sys, time
from opskit import inventory
from opskit.runner.fleet import RunOptions
from opskit.runner.lease import held
hosts = inventory.load(sys.argv[1]).hosts
lock = [hosts[n] for n in ("app1", "app2", "app3")]
with held(lock, sys.argv[2], options=RunOptions(), run_id=sys.argv[3], command="holder",
          ttl=float(sys.argv[4])) as lease:
    print("HELD " + " ".join(lease.hosts), flush=True)
    time.sleep(600)
"""


def start_holder(lab: LabStatus, sc: str, rid: str, ttl: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lab.inventory_path), sc, rid,
                             str(ttl)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "HELD " + " ".join(NAMES)
    return proc


def test_a_killed_holders_lease_expires_and_is_taken(lab: LabStatus, hosts: list[Host],
                                                     sc: str) -> None:
    dead = run_id()
    proc = start_holder(lab, sc, dead, ttl=3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # Killed: nothing released it. Until its ttl passes, it is still held.
    assert all(lease_file(lab, n, sc)["run_id"] == dead for n in NAMES)  # type: ignore[index]
    with pytest.raises(LeaseRefused) as err:
        acquire_once(hosts, sc)
    assert f"run {dead} (holder)" in str(err.value) and "on app1, app2, app3" in str(err.value)

    def taken() -> str | None:
        try:
            return acquire_once(hosts, sc)[0]
        except LeaseRefused:
            return None

    assert wait_for(taken, timeout=30), "the killed holder's lease never expired"


def test_break_lock_takes_it_returns_the_old_holder_and_the_old_run_loses(
        lab: LabStatus, hosts: list[Host], sc: str) -> None:
    old = run_id()
    with held(hosts, sc, options=OPTIONS, run_id=old, command="pg failover", ttl=3) as first:
        new = run_id()
        with held(hosts, sc, options=OPTIONS, run_id=new, command="pg failover", ttl=30,
                  break_lock=True) as second:
            assert second.hosts == list(NAMES)
            assert sorted(second.broken) == list(NAMES)
            assert {r["run_id"] for r in second.broken.values()} == {old}
            assert second.broken["app1"]["command"] == "pg failover"
            assert lease_file(lab, "app2", sc)["run_id"] == new  # type: ignore[index]
            # The first run's next renewal finds the lease is not its own any more.
            assert wait_for(lambda: first.lost, timeout=20), "the broken run never noticed"
            with pytest.raises(LeaseRefused, match="lease lost"):
                first.check()
            second.check()
        # The broken run's release at its end does not remove the lease of another run.
    assert all(lease_file(lab, n, sc) is None for n in NAMES)


def test_renewal_keeps_the_lease_beyond_its_ttl(lab: LabStatus, hosts: list[Host],
                                                sc: str) -> None:
    rid = run_id()
    with held(hosts, sc, options=OPTIONS, run_id=rid, command="test", ttl=2) as lease:
        first = {n: lease_file(lab, n, sc)["expires"] for n in NAMES}  # type: ignore[index]
        # Past three ttls the lease files still say this run, with later expiries.
        time.sleep(6.5)
        later = {n: lease_file(lab, n, sc) for n in NAMES}
        assert all(r is not None and r["run_id"] == rid and r["expires"] > first[n] + 3
                   for n, r in later.items()), later
        with pytest.raises(LeaseRefused, match=f"run {rid}"):
            acquire_once(hosts, sc)
        lease.check()
        assert lease.lost is None
    assert all(lease_file(lab, n, sc) is None for n in NAMES)


def test_as_a_non_root_login_with_sudo(lab: LabStatus, sc: str) -> None:
    ops_inv = labmod.ops_inventory_path(lab.inventory_path)
    as_ops = lock_hosts(ops_inv)
    assert {h.user for h in as_ops} == {labmod.OPS_USER}
    rid = run_id()
    with held(as_ops, sc, options=OPTIONS, run_id=rid, command="test", ttl=30) as lease:
        assert isinstance(lease, Lease) and lease.hosts == list(NAMES)
        for n in NAMES:
            st = on_host(lab, n, f"stat -c '%U %a' /var/lib/opskit/locks "
                                 f"/var/lib/opskit/locks/{sc}.lease").stdout.split("\n")
            assert st[:2] == ["root 700", "root 600"]
            assert lease_file(lab, n, sc)["run_id"] == rid  # type: ignore[index]
        # The same files as a root login sees: a root run is refused.
        with pytest.raises(LeaseRefused, match=f"run {rid}"):
            acquire_once(lock_hosts(lab.inventory_path), sc)
    assert all(lease_file(lab, n, sc) is None for n in NAMES)


def test_released_when_the_block_is_interrupted(lab: LabStatus, hosts: list[Host],
                                                sc: str) -> None:
    rid = run_id()
    with pytest.raises(KeyboardInterrupt):
        with held(hosts, sc, options=OPTIONS, run_id=rid, command="test", ttl=30):
            assert all(lease_file(lab, n, sc)["run_id"] == rid  # type: ignore[index]
                       for n in NAMES)
            raise KeyboardInterrupt
    assert all(lease_file(lab, n, sc) is None for n in NAMES)
    assert acquire_once(hosts, sc)[1] == list(NAMES)
