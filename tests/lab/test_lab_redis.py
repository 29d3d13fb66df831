"""The lab's Redis: a master on redis1, replicas on redis2 and redis3 (redis_service.py).

redis1 is the master with both replicas linked; a write acknowledged by both (WAIT) reads
back on each replica; lab.yml carries the ``redis:`` host vars `opskit redis` reads; ``up``
starts a stopped server as it is configured now and leaves running ones alone;
``reset_redis()`` brings the initial roles back from a promoted replica plus a killed master;
``down`` leaves no redis-server behind.
"""

from __future__ import annotations

import json
import os
import pathlib
import pwd
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import yaml
from helpers import wait_for

import opskit.lab as labmod
from opskit.lab import LabContext, LabHost, LabStatus, layout, procs, redis_service
from opskit.lab.services import hosts_for

pytestmark = pytest.mark.lab

NODES = ("redis1", "redis2", "redis3")
EXPECTED_VARS = {
    "port": 6379,
    "cli": "/usr/bin/redis-cli",
    "max_link_down_seconds": 60,
    "publish": {"hosts": "app", "file": "/srv/redis-master.json", "reload": "true"},
}


def rcli(lab: LabStatus, name: str, *command: str) -> str:
    """redis-cli against the host's server from the machine (the network is shared)."""
    argv = [redis_service.CLI, "-h", lab.host(name).address, "-p", "6379", *command]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    return done.stdout.strip()


def replication(lab: LabStatus, name: str) -> dict[str, str]:
    lines = rcli(lab, name, "info", "replication").splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def is_initial(lab: LabStatus) -> bool:
    master = replication(lab, "redis1")
    replica_ips = {v.split(",")[0] for k, v in master.items() if k.startswith("slave")}
    return (
        master.get("role") == "master"
        and master.get("connected_slaves") == "2"
        and replica_ips == {f"ip={lab.host(n).address}" for n in NODES[1:]}
        and all(
            replication(lab, n).get("master_host") == lab.host("redis1").address
            and replication(lab, n).get("master_link_status") == "up"
            for n in NODES[1:]
        )
    )


@pytest.fixture
def initial(lab: LabStatus) -> Iterator[LabStatus]:
    """Redis in its initial topology before the test (links up); restored after it."""
    if not wait_for(lambda: is_initial(lab), timeout=5):
        redis_service.reset_redis(lab.state_dir)
    yield lab
    if not is_initial(lab):
        redis_service.reset_redis(lab.state_dir)


def server_pids(lab: LabStatus) -> dict[str, int | None]:
    status = labmod.status(state_dir=lab.state_dir)
    return {n: redis_service.server_pid(status.host(n)) for n in NODES}


# ---------------------------------------------------------------- where things run


def test_redis_runs_as_redis_on_redis1_to_redis3_only(initial: LabStatus) -> None:
    lab = initial
    status = labmod.status(state_dir=lab.state_dir)
    for host in status.hosts:
        assert host.services.get("redis") == (True if host.name in NODES else None), host.name
    redis_uid = pwd.getpwnam("redis").pw_uid
    host_ids = {h.name: (h.state_dir / "etc" / procs.HOST_MARKER).read_text().strip()
                for h in status.hosts}  # fmt: skip
    for name, pid in server_pids(lab).items():
        assert pid is not None, name
        assert os.stat(f"/proc/{pid}").st_uid == redis_uid
        assert procs.ns_is_host(pid, host_ids[name])  # inside this host's namespace
        assert f"{lab.host(name).address}:6379" in procs.cmdline(pid)
        assert rcli(lab, name, "ping") == "PONG"


def test_lab_yml_has_the_redis_vars_on_redis1_to_redis3(lab: LabStatus) -> None:
    inv = yaml.safe_load(pathlib.Path(str(lab.inventory_path)).read_text())["all"]
    assert list(inv["children"]["redis_servers"]["hosts"]) == list(NODES)
    assert "vars" not in inv["children"]["redis"]  # host vars: redis4+ must not get them
    for name, hvars in inv["hosts"].items():
        assert hvars.get("redis") == (EXPECTED_VARS if name in NODES else None), name
    assert "&id" not in pathlib.Path(str(lab.inventory_path)).read_text()  # no YAML aliases


@pytest.mark.parametrize(("count", "nodes"), [
    (4, []),
    (9, []),  # the PostgreSQL cluster (db3 is host 9), but no redis3 yet
    (10, list(NODES)),
    (100, list(NODES)),  # redis4-redis10 never run Redis
])  # fmt: skip
def test_only_labs_with_three_redis_hosts_have_redis(
    count: int, nodes: list[str], tmp_path: pathlib.Path
) -> None:
    hosts = [LabHost(s.name, s.address, 2222, s.name, None, s.groups, tmp_path / s.name)
             for s in layout.plan(count)]  # fmt: skip
    ctx = LabContext(tmp_path, 2222, hosts, runner=lambda name, argv: pytest.fail("no run"))
    assert [h.name for h in hosts_for(redis_service.REDIS, hosts)] == nodes
    found = redis_service.REDIS.inventory_vars(ctx)
    assert sorted(found.host_vars) == nodes and not found.group_vars
    if count == 9:  # PostgreSQL still starts at 9 hosts
        assert [h.name for h in hosts if "postgres" in h.groups] == ["db1", "db2", "db3"]


def test_redis1_is_the_master_of_redis2_and_redis3(initial: LabStatus) -> None:
    lab = initial
    master = replication(lab, "redis1")
    assert master["role"] == "master" and master["connected_slaves"] == "2"
    # replica-announce-ip: each replica is listed under its own address, not 127.0.0.1.
    listed = sorted(v.split(",")[0] for k, v in master.items() if k.startswith("slave"))
    assert listed == sorted(f"ip={lab.host(n).address}" for n in NODES[1:])
    for name in NODES[1:]:
        info = replication(lab, name)
        assert info["role"] == "slave", name
        assert info["master_host"] == lab.host("redis1").address
        assert info["master_port"] == "6379"
        assert info["master_link_status"] == "up"
        assert info["slave_priority"] == "100"
    for app in ("app1", "app2", "app3"):  # where the apps read the master
        published = json.loads((lab.host(app).state_dir / "srv" / "redis-master.json").read_text())
        assert published["host"] == lab.host("redis1").address and published["port"] == 6379


def test_a_key_set_on_the_master_is_read_on_both_replicas(initial: LabStatus) -> None:
    lab = initial
    key, value = f"opskit-test:{uuid.uuid4().hex}", uuid.uuid4().hex
    assert rcli(lab, "redis1", "set", key, value) == "OK"
    assert rcli(lab, "redis1", "wait", "2", "2000") == "2"  # both replicas acknowledged it
    for name in NODES[1:]:
        assert rcli(lab, name, "get", key) == value, name
    assert rcli(lab, "redis2", "set", key, "x").startswith("READONLY")


def test_data_config_and_logs_are_private_to_each_host(initial: LabStatus, lab_ssh) -> None:
    lab = initial
    assert rcli(lab, "redis2", "config", "get", "dir").splitlines() == ["dir", "/data/redis"]
    assert rcli(lab, "redis2", "save") == "OK"
    assert rcli(lab, "redis2", "config", "rewrite") == "OK"  # the config file is writable
    # Over SSH, as `opskit redis` runs it: redis-cli on the host against its own address.
    done = lab_ssh("redis2", "stat -c '%U %n' /data/redis/dump.rdb /etc/opskit-lab/redis/"
                   "redis.conf && runuser -u redis -- redis-cli -h "
                   f"{lab.host('redis2').address} info server")
    assert done.returncode == 0, done.stderr
    assert "redis /data/redis/dump.rdb" in done.stdout
    assert "redis /etc/opskit-lab/redis/redis.conf" in done.stdout
    assert "config_file:/etc/opskit-lab/redis/redis.conf" in done.stdout
    ours = lab.host("redis2").state_dir
    assert (ours / "data" / "redis" / "dump.rdb").is_file()  # the bind source, on our side
    assert (ours / "etc" / "redis" / "redis.log").is_file()
    assert not pathlib.Path("/data/redis").exists()  # not in the root namespace
    assert not (lab.host("redis1").state_dir / "data" / "redis" / "dump.rdb").samefile(
        ours / "data" / "redis" / "dump.rdb"
    )


# ---------------------------------------------------------------- up, reset, down


def test_up_leaves_running_servers_alone_and_starts_a_stopped_one_as_configured(
    initial: LabStatus, lab_restore
) -> None:
    lab = initial
    before = server_pids(lab)
    # redis3 becomes a master (persisted, as opskit redis promote does), then stops.
    assert rcli(lab, "redis3", "replicaof", "no", "one") == "OK"
    assert rcli(lab, "redis3", "config", "rewrite") == "OK"
    rcli(lab, "redis3", "shutdown", "nosave")
    assert wait_for(lambda: server_pids(lab)["redis3"] is None)
    assert labmod.status(state_dir=lab.state_dir).host("redis3").services["redis"] is False

    status = lab_restore()
    assert status.host("redis3").services["redis"] is True
    assert replication(lab, "redis3")["role"] == "master"  # not forced back to a replica
    after = server_pids(lab)
    assert after["redis1"] == before["redis1"] and after["redis2"] == before["redis2"]
    assert after["redis3"] not in (None, before["redis3"])


def test_reset_redis_restores_the_topology_from_two_masters_and_a_killed_one(
    initial: LabStatus,
) -> None:
    lab = initial
    assert rcli(lab, "redis1", "set", "before-reset", "1") == "OK"
    assert rcli(lab, "redis1", "wait", "2", "2000") == "2"
    # redis2 promoted by hand, then the old master killed: redis3 follows a dead master.
    assert rcli(lab, "redis2", "replicaof", "no", "one") == "OK"
    assert rcli(lab, "redis2", "set", "after-promotion", "1") == "OK"
    os.kill(server_pids(lab)["redis1"] or 0, signal.SIGKILL)
    assert wait_for(lambda: server_pids(lab)["redis1"] is None)
    assert not is_initial(lab)

    t0 = time.monotonic()
    redis_service.reset_redis(lab.state_dir)
    took = time.monotonic() - t0
    print(f"reset_redis took {took:.2f} s")
    assert took < 5
    assert is_initial(lab)
    for name in NODES:
        assert rcli(lab, name, "dbsize") == "0", name  # flushed everywhere
    status = labmod.status(state_dir=lab.state_dir)
    assert all(status.host(n).services["redis"] for n in NODES)


def _redis_servers_of(lab: LabStatus) -> list[int]:
    addresses = [f"{lab.host(n).address}:6379" for n in NODES]
    return [p for p in procs.pids() if procs.alive(p) and "redis-server" in procs.cmdline(p)
            and any(a in procs.cmdline(p) for a in addresses)]  # fmt: skip


def test_down_leaves_no_redis_server(lab: LabStatus, lab_params) -> None:
    """Down the session lab itself (a second lab would clash on 127.10.0.N:6379), then up."""
    pids = [p for p in server_pids(lab).values() if p]
    assert len(pids) == 3
    try:
        lines = labmod.down(state_dir=lab.state_dir)
        for name in NODES:
            assert f"stopped redis on {name}" in lines
        assert not [line for line in lines if "failed" in line]
        assert [p for p in pids if procs.alive(p)] == []
        assert _redis_servers_of(lab) == []
    finally:
        labmod.up(**lab_params)  # type: ignore[arg-type]
    assert wait_for(lambda: is_initial(lab), timeout=5)  # a cold up builds the initial roles
