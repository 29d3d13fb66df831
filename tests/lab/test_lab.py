"""The lab fleet itself: real sshd hosts in namespaces, up/status/down, services, lab.yml."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import worker
import yaml
from helpers import wait_for
from worker import SMALL_PORT

import opskit.lab as labmod
from opskit.errors import LabError
from opskit.lab import LabContext, LabHost, LabStatus

pytestmark = pytest.mark.lab



# ---------------------------------------------------------------- helpers


def mnt_ns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def live_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())]


def is_zombie(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def pids_mentioning(text: str) -> list[int]:
    found = []
    for pid in live_pids():
        try:
            cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmd and not is_zombie(pid):
            found.append(pid)
    return found


def pids_in_namespaces(inodes: set[int]) -> list[int]:
    return [p for p in live_pids() if mnt_ns(p) in inodes and not is_zombie(p)]


def recorded(state_dir: pathlib.Path) -> dict:
    return json.loads((state_dir / "state.json").read_text())


@pytest.fixture
def small_lab(tmp_path: pathlib.Path) -> Iterator[dict[str, object]]:
    """Parameters for a separate small lab; torn down whatever the test did."""
    params: dict[str, object] = {
        "hosts": 2,
        "port": SMALL_PORT,
        "net": worker.NET,
        "state_dir": tmp_path / "state",
        "inventory_path": tmp_path / "lab.yml",
    }
    try:
        yield params
    finally:
        labmod.down(state_dir=params["state_dir"])  # type: ignore[arg-type]


class SleepService:
    """A real (tiny) service: a ``sleep`` in the host's namespace plus a marker under /srv."""

    def __init__(self, name: str, roles: tuple[str, ...], log: pathlib.Path | None = None):
        self.name, self.roles, self.log = name, roles, log

    def _marker(self) -> str:
        return f"/srv/{self.name}.pid"

    def start(self, host: LabHost, ctx: LabContext) -> None:
        # setsid -f detaches sleep; its output must not hold nsenter's pipes open.
        script = f"echo $$ > {self._marker()}; exec sleep 600"
        script = f"setsid -f sh -c {shlex.quote(script)} </dev/null >/dev/null 2>&1"
        done = ctx.run(host, ["sh", "-c", script])
        assert done.returncode == 0, done.stderr

    def _pid(self, host: LabHost, ctx: LabContext) -> int | None:
        done = ctx.run(host, ["cat", self._marker()])
        text = done.stdout.strip()
        return int(text) if done.returncode == 0 and text.isdigit() else None

    def stop(self, host: LabHost, ctx: LabContext) -> None:
        pid = self._pid(host, ctx)
        if pid:
            ctx.run(host, ["kill", str(pid)])
        ctx.run(host, ["rm", "-f", self._marker()])
        if self.log:
            with self.log.open("a") as fh:
                fh.write(f"{host.name}\n")

    def health(self, host: LabHost, ctx: LabContext) -> bool:
        pid = self._pid(host, ctx)
        return bool(pid) and ctx.run(host, ["kill", "-0", str(pid)]).returncode == 0


@pytest.fixture
def register_service() -> Iterator[Callable[[SleepService], SleepService]]:
    """Register services for one test only; the registry is global."""
    names: list[str] = []

    def register(service: SleepService) -> SleepService:
        names.append(service.name)
        return labmod.register(service)

    yield register
    for name in names:
        labmod.unregister(name)


# ---------------------------------------------------------------- session lab


def test_thirteen_hosts_answer_each_with_its_own_hostname(lab: LabStatus, lab_ssh) -> None:
    expected = {"lb1", "app1", "app2", "app3", "db1", "db2", "db3", "redis1", "redis2", "redis3",
                "shard1", "shard2", "lb2"}
    assert {h.name for h in lab.hosts} == expected
    assert all(h.answering and h.pid for h in lab.hosts)
    assert sorted(h.address for h in lab.hosts) == sorted(worker.address(i) for i in range(1, 14))
    with ThreadPoolExecutor(8) as pool:
        outputs = pool.map(lambda n: lab_ssh(n, "hostname"), expected)
        results = dict(zip(expected, outputs, strict=True))
    for name, done in results.items():
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == name


def test_srv_is_private_to_each_host(lab: LabStatus, lab_ssh) -> None:
    fname = f"private-{uuid.uuid4().hex}"
    done = lab_ssh("app1", f"echo hello > /srv/{fname} && cat /srv/{fname}")
    assert (done.returncode, done.stdout) == (0, "hello\n"), done.stderr
    other = lab_ssh("app2", f"test -e /srv/{fname} && echo visible || echo absent")
    assert other.stdout.strip() == "absent"
    assert not pathlib.Path("/srv", fname).exists()  # root namespace
    # The file lives in app1's own dir, bind-mounted over /srv.
    assert (lab.host("app1").state_dir / "srv" / fname).read_text() == "hello\n"
    lab_ssh("app1", f"rm -f /srv/{fname}")


def test_up_again_keeps_hosts_and_restarts_only_a_dead_one(lab: LabStatus, lab_restore) -> None:
    before = {h.name: h.pid for h in labmod.status(state_dir=lab.state_dir).hosts}
    assert all(before.values())
    again = lab_restore()
    assert {h.name: h.pid for h in again.hosts} == before

    victim = "db2"
    os.kill(before[victim], signal.SIGKILL)  # an unreachable host
    assert wait_for(lambda: labmod.host_pid(victim, state_dir=lab.state_dir) is None)
    down_now = labmod.status(state_dir=lab.state_dir).host(victim)
    assert not down_now.answering and down_now.pid is None

    after = {h.name: h for h in lab_restore().hosts}
    assert after[victim].pid not in (None, before[victim]) and after[victim].answering
    assert {n: h.pid for n, h in after.items() if n != victim} == {
        n: p for n, p in before.items() if n != victim
    }


def test_services_start_in_their_hosts_namespaces(
    lab: LabStatus, lab_params, lab_ssh, register_service
) -> None:
    service = register_service(SleepService(f"sleeper-{uuid.uuid4().hex[:6]}", ("redis",)))
    marker = f"/srv/{service.name}.pid"
    try:
        status = labmod.up(**lab_params)
        for host in status.hosts:
            # Built-in services (data-xfs on db, redis on redis1-3) are there too: look at
            # this one only.
            assert host.services.get(service.name) == ("redis" in host.groups or None)
        # The marker is in redis1's own /srv, and its sleep in redis1's namespace.
        done = lab_ssh("redis1", f"cat {marker}")
        assert done.returncode == 0, done.stderr
        sleep_pid = int(done.stdout)
        assert mnt_ns(sleep_pid) == mnt_ns(status.host("redis1").pid)
        assert lab_ssh("app1", f"test -e {marker}").returncode == 1
        # A second up leaves a healthy service alone.
        labmod.up(**lab_params)
        assert lab_ssh("redis1", f"cat {marker}").stdout.strip() == str(sleep_pid)

        # sshd dies, the service lives on: up restarts sshd in the same namespace.
        old_sshd = status.host("redis1").pid
        os.kill(old_sshd, signal.SIGKILL)
        assert wait_for(lambda: labmod.host_pid("redis1", state_dir=lab.state_dir) is None)
        again = labmod.up(**lab_params).host("redis1")
        # The built-in Redis on redis1 lives on too.
        assert again.pid != old_sshd and again.services == {"redis": True, service.name: True}
        assert mnt_ns(again.pid) == mnt_ns(sleep_pid)
    finally:
        for name in ("redis1", "redis2"):
            labmod.run_in_host(
                name, ["sh", "-c", f"kill $(cat {marker}); rm -f {marker}"],
                state_dir=lab.state_dir,
            )  # fmt: skip


def test_lab_yml_is_an_ansible_inventory(lab: LabStatus, lab_params) -> None:
    path = pathlib.Path(lab_params["inventory_path"])
    assert path == lab.inventory_path
    text = path.read_text()
    assert text.startswith("# Written by `opskit lab up`")
    inv = yaml.safe_load(text)["all"]
    state = pathlib.Path(lab.state_dir)
    assert inv["vars"]["ansible_user"] == "root"
    assert inv["vars"]["ansible_port"] == lab.port
    assert inv["vars"]["ansible_ssh_private_key_file"] == str(state / "id_ed25519")
    assert inv["vars"]["opskit_known_hosts"] == str(state / "known_hosts")
    assert inv["vars"]["lab"] == {"state_dir": str(state)}
    kids = inv["children"]
    assert set(kids) == {"lb", "app", "db", "redis", "shard", "postgres", "pgbouncer",
                         "redis_servers"}
    assert set(kids["lb"]["hosts"]) == {"lb1", "lb2"}
    assert set(kids["app"]["hosts"]) == {"app1", "app2", "app3"}
    assert set(kids["db"]["children"]["pg_primary"]["hosts"]) == {"db1"}
    assert set(kids["db"]["children"]["pg_replica"]["hosts"]) == {"db2", "db3"}
    assert set(kids["redis"]["children"]["redis_master"]["hosts"]) == {"redis1"}
    assert set(kids["redis"]["children"]["redis_replica"]["hosts"]) == {"redis2", "redis3"}
    # The PostgreSQL cluster (pg_service.py): its nodes and the PgBouncer in front of them.
    assert set(kids["postgres"]["hosts"]) == {"db1", "db2", "db3"}
    assert set(kids["pgbouncer"]["hosts"]) == {"lb1"}
    assert set(kids["shard"]["hosts"]) == {"shard1", "shard2"}  # the second cluster
    assert set(kids["redis_servers"]["hosts"]) == {"redis1", "redis2", "redis3"}  # Redis
    by_name = {h.name: h.address for h in lab.hosts}
    for group in (kids["lb"], kids["app"], *kids["db"]["children"].values(),
                  *kids["redis"]["children"].values(), kids["postgres"],
                  kids["pgbouncer"], kids["redis_servers"], kids["shard"]):  # fmt: skip
        for name, hvars in group["hosts"].items():
            assert hvars == {"ansible_host": by_name[name]}
    known = (state / "known_hosts").read_text().splitlines()
    assert sorted(line.split()[0] for line in known) == sorted(
        f"[{a}]:{lab.port}" for a in by_name.values()
    )
    assert all(line.split()[1] == "ssh-ed25519" for line in known)


def test_the_lab_inventories_pass_inventory_check(lab: LabStatus) -> None:
    """Every key the lab writes (root, ops and dev user) is one opskit reads and accepts."""
    path = pathlib.Path(lab.inventory_path)
    for inv in (path, *(path.with_name(f"{path.stem}-{u}{path.suffix}") for u in ("ops", "dev"))):
        proc = subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), "inventory",
                               "check"], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{len(lab.hosts)} hosts, every setting valid" in proc.stdout


# ---------------------------------------------------------------- separate small labs


def test_down_leaves_nothing_behind(small_lab, register_service, tmp_path) -> None:
    stops = tmp_path / "stops.log"
    service = register_service(SleepService(f"db-sleeper-{uuid.uuid4().hex[:6]}", ("db",), stops))
    status = labmod.up(**small_lab)
    state_dir = pathlib.Path(small_lab["state_dir"])
    assert [h.name for h in status.hosts] == ["app1", "db1"]
    assert status.host("db1").services == {"data-xfs": True, service.name: True}

    # A detached process started over ssh and one through nsenter: both live in the hosts.
    key, known = state_dir / "id_ed25519", state_dir / "known_hosts"
    ssh = ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes",
           "-p", str(SMALL_PORT), f"root@{worker.address(1)}"]  # fmt: skip
    detached = "setsid -f sleep 300 </dev/null >/dev/null 2>&1"
    assert subprocess.run([*ssh, detached], timeout=30, stdin=subprocess.DEVNULL).returncode == 0
    labmod.run_in_host("db1", ["sh", "-c", detached], state_dir=state_dir)
    inodes = {h["mnt_ns"] for h in recorded(state_dir)["hosts"].values()}
    assert len(inodes) == 2
    assert len(pids_in_namespaces(inodes)) >= 5  # 2 sshd + 2 sleep + the service's sleep

    lines = labmod.down(state_dir=state_dir)
    assert f"stopped {service.name} on db1" in lines
    assert stops.read_text() == "db1\n"
    assert any(line.startswith("stopped sshd of app1") for line in lines)
    assert pids_mentioning(str(state_dir)) == []
    assert pids_in_namespaces(inodes) == []
    assert str(state_dir) not in pathlib.Path("/proc/self/mountinfo").read_text()
    assert labmod.lab_mounts(state_dir, ["app1", "db1"]) == []
    assert not (state_dir / "state.json").exists() and not (state_dir / "hosts").exists()
    assert labmod.status(state_dir=state_dir).hosts == []
    assert labmod.down(state_dir=state_dir) == [f"no lab in {state_dir}"]


def test_resize_and_recover_from_a_dead_session(small_lab) -> None:
    state_dir = pathlib.Path(small_lab["state_dir"])
    two = {h.name: h.pid for h in labmod.up(**small_lab).hosts}
    grown = labmod.up(**{**small_lab, "hosts": 4})
    assert [h.name for h in grown.hosts] == ["app1", "db1", "redis1", "lb1"]
    assert {n: grown.host(n).pid for n in two} == two  # kept, not restarted
    assert grown.running

    shrunk = labmod.up(**{**small_lab, "hosts": 3})
    assert [h.name for h in shrunk.hosts] == ["app1", "db1", "redis1"]
    lb1_pid = grown.host("lb1").pid
    assert wait_for(lambda: is_zombie(lb1_pid))
    assert not (state_dir / "hosts" / "lb1").exists()
    assert len((state_dir / "known_hosts").read_text().splitlines()) == 3

    # The session died: every sshd killed, state.json and host dirs left behind.
    for host in shrunk.hosts:
        os.kill(host.pid, signal.SIGKILL)
    assert wait_for(lambda: all(is_zombie(h.pid) for h in shrunk.hosts))
    recovered = labmod.up(**{**small_lab, "hosts": 3})
    assert recovered.running
    assert all(h.pid != shrunk.host(h.name).pid for h in recovered.hosts)


def test_a_running_lab_keeps_its_net(small_lab) -> None:
    """Its services are bound to its addresses: another --net is refused, changing nothing;
    without --net the running lab's is kept."""
    first = labmod.up(**small_lab)
    other = worker.NET + 50
    with pytest.raises(LabError) as err:
        labmod.up(**{**small_lab, "net": other})
    assert err.value.message == (f"the lab in {small_lab['state_dir']} runs on "
                                 f"127.{worker.NET}.0.x, not 127.{other}.0.x")
    assert "lab down" in (err.value.hint or "")
    again = labmod.up(**{k: v for k, v in small_lab.items() if k != "net"})
    assert [(h.address, h.pid) for h in again.hosts] == [(h.address, h.pid) for h in first.hosts]
    assert again.hosts[0].address == worker.address(1)


def test_down_without_a_lab_is_a_message(tmp_path) -> None:
    assert labmod.down(state_dir=tmp_path / "none") == [f"no lab in {tmp_path / 'none'}"]
    assert labmod.status(state_dir=tmp_path / "none").hosts == []


def test_not_root_is_a_lab_error_with_a_hint(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError) as err:
        labmod.up(2, port=SMALL_PORT, state_dir=tmp_path)
    assert "the lab needs root" in err.value.message
    assert err.value.hint == "run as root (sudo), e.g. sudo opskit lab up"


def test_state_dir_comes_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("OPSKIT_LAB_DIR", raising=False)
    assert labmod.state_dir_from_env() == pathlib.Path(labmod.DEFAULT_STATE_DIR)
    monkeypatch.setenv("OPSKIT_LAB_DIR", str(tmp_path))
    assert labmod.state_dir_from_env() == tmp_path


def test_fleet_shape_follows_the_documented_rule() -> None:
    names = lambda n: [s.name for s in labmod.plan(n)]  # noqa: E731
    assert names(1) == ["app1"]
    assert names(4) == ["app1", "db1", "redis1", "lb1"]
    assert sorted(names(10)) == sorted(
        ["lb1", "app1", "app2", "app3", "db1", "db2", "db3", "redis1", "redis2", "redis3"]
    )
    assert names(18)[10:] == ["shard1", "shard2", "lb2", "app4", "app5", "app6", "db4", "app7"]
    assert names(labmod.DEFAULT_HOSTS)[-1] == "lb2"  # the default lab: two nginx
    roles = [s.role for s in labmod.plan(100)]  # as docs/lab.md says
    assert {r: roles.count(r) for r in set(roles)} == {
        "app": 69, "db": 10, "redis": 10, "lb": 9, "shard": 2}
    assert labmod.plan(255)[-1].address == "127.10.1.1"
    assert [s.address for s in labmod.plan(2, 11)] == ["127.11.0.1", "127.11.0.2"]
    for net in (0, 9, 128):  # 127.0.0.1 is the operator's own (and moto's)
        with pytest.raises(ValueError, match=f"not {net}"):
            labmod.plan(2, net)
    assert [s.groups for s in labmod.plan(10) if s.role == "db"] == [
        ("db", "pg_primary", "postgres"), ("db", "pg_replica", "postgres"),
        ("db", "pg_replica", "postgres"),
    ]  # fmt: skip
    # The PostgreSQL cluster needs db3 (host 9): smaller labs have none, db4+ never join.
    assert [s.groups for s in labmod.plan(8) if s.role in ("db", "lb")] == [
        ("db", "pg_primary"), ("lb",), ("db", "pg_replica")
    ]  # fmt: skip
    assert [s.name for s in labmod.plan(100) if "postgres" in s.groups] == ["db1", "db2", "db3"]
    assert [s.name for s in labmod.plan(100) if "pgbouncer" in s.groups] == ["lb1"]
