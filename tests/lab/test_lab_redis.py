"""The lab's Redis groups (redis_service.py): ``main`` on 6379 (redis1 the master of redis2
and redis3; requirepass and the ACL user opskit), ``tls`` on 6380 (redis1 -> redis2, TLS
only, client certificates), ``watched`` on 6381 (redis2 -> redis3) and its three Sentinels
on 26379.

Each group's master has its replicas linked; a write acknowledged by them (WAIT) reads back
on each replica; main refuses a client without AUTH and takes the opskit user (its password
in REDISCLI_AUTH, never on argv); tls refuses plain TCP and a client without a certificate;
the Sentinels agree on watched's master and fail it over; lab.yml carries the ``redis:`` host
vars `opskit redis` reads; ``up`` starts a stopped server as it is configured now and leaves
running ones alone; ``reset_redis()`` brings the initial roles back in every group;
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
from helpers import redis_cli, run_opskit, wait_for

import opskit.lab as labmod
from opskit.lab import LabContext, LabHost, LabStatus, layout, procs, redis_secrets, redis_service
from opskit.lab.services import hosts_for

pytestmark = pytest.mark.lab

NODES = ("redis1", "redis2", "redis3")
# group -> (port, master, replicas)
GROUPS = {"main": (6379, "redis1", ("redis2", "redis3")),
          "tls": (6380, "redis1", ("redis2",)),
          "watched": (6381, "redis2", ("redis3",))}  # fmt: skip
PASS_FILE = "/etc/opskit-lab/redis/opskit.pass"
TLS = {"ca": "/etc/opskit-lab/redis/tls/ca.crt", "cert": "/etc/opskit-lab/redis/tls/client.crt",
       "key": "/etc/opskit-lab/redis/tls/client.key"}  # fmt: skip
SENTINEL = {"master": "watched", "hosts": ["redis1:26379", "redis2:26379", "redis3:26379"]}
MAIN = {"port": 6379}
TLS_ONE = {"port": 6380, "group": "tls", "auth": None, "publish": None, "tls": TLS}
WATCHED = {"port": 6381, "group": "watched", "auth": None, "publish": None,
           "sentinel": SENTINEL}  # fmt: skip
EXPECTED_VARS = {
    name: {
        "group": "main",
        "auth": {"user": "opskit", "password_file": PASS_FILE},
        "cli": "/usr/bin/redis-cli",
        "max_link_down_seconds": 60,
        "publish": {"hosts": "app", "file": "/srv/redis-master.json", "reload": "true"},
        "instances": instances,
    }
    for name, instances in (("redis1", [MAIN, TLS_ONE]), ("redis2", [MAIN, TLS_ONE, WATCHED]),
                            ("redis3", [MAIN, WATCHED]))
}  # fmt: skip


def rcli(lab: LabStatus, name: str, *command: str, port: int = 6379) -> str:
    """redis-cli against the host's instance from the machine (the network is shared), as
    its group wants (AUTH for main, TLS for tls)."""
    return redis_cli(lab, name, *command, port=port).stdout.strip()


def replication(lab: LabStatus, name: str, port: int = 6379) -> dict[str, str]:
    lines = rcli(lab, name, "info", "replication", port=port).splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def group_is_initial(lab: LabStatus, group: str) -> bool:
    port, first, replicas = GROUPS[group]
    master = replication(lab, first, port)
    replica_ips = {v.split(",")[0] for k, v in master.items() if k.startswith("slave")}
    return (
        master.get("role") == "master"
        and master.get("connected_slaves") == str(len(replicas))
        and replica_ips == {f"ip={lab.host(n).address}" for n in replicas}
        and all(
            replication(lab, n, port).get("master_host") == lab.host(first).address
            and replication(lab, n, port).get("master_link_status") == "up"
            for n in replicas
        )
    )


def sentinel_masters(lab: LabStatus) -> dict[str, str]:
    """Each Sentinel's answer to GET-MASTER-ADDR-BY-NAME watched, as ADDR:PORT."""
    return {n: ":".join(rcli(lab, n, "sentinel", "get-master-addr-by-name", "watched",
                             port=26379).split()) for n in NODES}  # fmt: skip


def is_initial(lab: LabStatus) -> bool:
    watched = f"{lab.host('redis2').address}:6381"
    return all(group_is_initial(lab, g) for g in GROUPS) and set(
        sentinel_masters(lab).values()) == {watched}


@pytest.fixture
def initial(lab: LabStatus) -> Iterator[LabStatus]:
    """Redis in its initial topology before the test (links up); restored after it."""
    if not wait_for(lambda: is_initial(lab), timeout=5):
        redis_service.reset_redis(lab.state_dir)
    yield lab
    if not is_initial(lab):
        redis_service.reset_redis(lab.state_dir)


def server_pids(lab: LabStatus, port: int = 6379) -> dict[str, int | None]:
    status = labmod.status(state_dir=lab.state_dir)
    return {n: redis_service.server_pid(status.host(n), port) for n in NODES
            if port == 6379 or n in GROUPS_ON[port]}  # fmt: skip


GROUPS_ON = {port: (master, *replicas) for port, master, replicas in GROUPS.values()}


# ---------------------------------------------------------------- where things run


def sentinel_pids(lab: LabStatus) -> dict[str, int | None]:
    status = labmod.status(state_dir=lab.state_dir)
    return {n: redis_service.sentinel_pid(status.host(n)) for n in NODES}


def test_redis_runs_as_redis_on_redis1_to_redis3_only(initial: LabStatus) -> None:
    lab = initial
    status = labmod.status(state_dir=lab.state_dir)
    for host in status.hosts:
        assert host.services.get("redis") == (True if host.name in NODES else None), host.name
    redis_uid = pwd.getpwnam("redis").pw_uid
    host_ids = {h.name: (h.state_dir / "etc" / procs.HOST_MARKER).read_text().strip()
                for h in status.hosts}  # fmt: skip
    every = [(port, name, pid) for port in (6379, 6380, 6381)
             for name, pid in server_pids(lab, port).items()]  # fmt: skip
    every += [(26379, name, pid) for name, pid in sentinel_pids(lab).items()]
    assert len(every) == 3 + 2 + 2 + 3
    for port, name, pid in every:
        assert pid is not None, (name, port)
        assert os.stat(f"/proc/{pid}").st_uid == redis_uid
        assert procs.ns_is_host(pid, host_ids[name])  # inside this host's namespace
        assert f"{lab.host(name).address}:{port}" in procs.cmdline(pid), procs.cmdline(pid)
        assert ("[sentinel]" in procs.cmdline(pid)) == (port == 26379)
        assert rcli(lab, name, "ping", port=port) == "PONG", (name, port)


def test_lab_yml_has_the_redis_vars_on_redis1_to_redis3(lab: LabStatus) -> None:
    inv = yaml.safe_load(pathlib.Path(str(lab.inventory_path)).read_text())["all"]
    assert list(inv["children"]["redis_servers"]["hosts"]) == list(NODES)
    assert "vars" not in inv["children"]["redis"]  # host vars: redis4+ must not get them
    for name, hvars in inv["hosts"].items():
        assert hvars.get("redis") == EXPECTED_VARS.get(name), name
    assert "&id" not in pathlib.Path(str(lab.inventory_path)).read_text()  # no YAML aliases
    text = pathlib.Path(str(lab.inventory_path)).read_text()
    for secret in redis_secrets.passwords(lab.state_dir).__dict__.values():
        assert secret not in text  # passwords live on the hosts and in the state dir only
    checked = run_opskit(pathlib.Path(str(lab.inventory_path)), "inventory", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


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


def test_every_group_has_its_master_and_replicas(initial: LabStatus) -> None:
    lab = initial
    for group, (port, _first, replicas) in GROUPS.items():
        assert group_is_initial(lab, group), group
        for name in replicas:
            assert replication(lab, name, port)["master_port"] == str(port), group


@pytest.mark.parametrize("group", list(GROUPS))
def test_a_key_set_on_a_master_is_read_on_its_replicas(initial: LabStatus, group: str) -> None:
    lab = initial
    port, first, replicas = GROUPS[group]
    key, value = f"opskit-test:{uuid.uuid4().hex}", uuid.uuid4().hex
    assert rcli(lab, first, "set", key, value, port=port) == "OK"
    # every replica acknowledged it
    assert rcli(lab, first, "wait", str(len(replicas)), "2000", port=port) == str(len(replicas))
    for name in replicas:
        assert rcli(lab, name, "get", key, port=port) == value, name
    assert rcli(lab, replicas[0], "set", key, "x", port=port).startswith("READONLY")


# ---------------------------------------------------------------- AUTH, TLS, Sentinels


def test_group_main_wants_auth_and_takes_the_opskit_user(initial: LabStatus) -> None:
    lab = initial
    bare = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    opskit_pw = redis_secrets.read(redis_secrets.opskit_password_path(lab.state_dir))
    for name in NODES:
        refused = redis_cli(lab, name, "get", "x", env=bare)
        assert refused.stdout.strip().startswith("NOAUTH"), refused
        # The ACL user, its password in the environment only (never on argv).
        done = redis_cli(lab, name, "--user", "opskit", "acl", "whoami",
                         env={**bare, "REDISCLI_AUTH": opskit_pw})  # fmt: skip
        assert done.stdout.strip() == "opskit", done
        wrong = redis_cli(lab, name, "--user", "opskit", "ping",
                          env={**bare, "REDISCLI_AUTH": opskit_pw + "x"})  # fmt: skip
        assert "WRONGPASS" in wrong.stdout + wrong.stderr, wrong
        # The default user's password (what the lab's helpers use).
        assert rcli(lab, name, "acl", "whoami") == "default"
        # Every node has masterauth: a promoted or rejoined node still replicates.
        assert rcli(lab, name, "config", "get", "masterauth").splitlines()[1] \
            == redis_secrets.read(redis_secrets.default_password_path(lab.state_dir))
        # The password file opskit reads on the host: root's, 0600, one line.
        ours = lab.host(name).state_dir / "etc" / "redis" / "opskit.pass"
        st = ours.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), name
        assert ours.read_text() == opskit_pw + "\n"
    for path in (redis_secrets.default_password_path(lab.state_dir),
                 redis_secrets.opskit_password_path(lab.state_dir)):
        assert path.stat().st_mode & 0o777 == 0o600


def test_main_over_ssh_as_opskit_reads_it(initial: LabStatus, lab_ssh) -> None:
    """As `opskit redis` will: redis-cli on the host, REDISCLI_AUTH from the password file."""
    lab = initial
    done = lab_ssh("redis2", f"REDISCLI_AUTH=$(cat {PASS_FILE}) redis-cli --user opskit "
                   f"-h {lab.host('redis1').address} -p 6379 acl whoami")
    assert done.returncode == 0 and done.stdout.strip() == "opskit", done.stderr


def test_the_tls_group_wants_tls_and_a_client_certificate(initial: LabStatus, lab_ssh) -> None:
    lab = initial
    for name in ("redis1", "redis2"):
        address = lab.host(name).address
        plain = subprocess.run([redis_service.CLI, "-h", address, "-p", "6380", "ping"],
                               capture_output=True, text=True, timeout=10)  # fmt: skip
        assert "PONG" not in plain.stdout, plain
        tls = lab.host(name).state_dir / "etc" / "redis" / "tls"
        anonymous = subprocess.run([redis_service.CLI, "--tls", "--cacert", str(tls / "ca.crt"),
                                    "-h", address, "-p", "6380", "ping"],
                                   capture_output=True, text=True, timeout=10)  # fmt: skip
        assert "PONG" not in anonymous.stdout, anonymous  # tls-auth-clients yes
        assert rcli(lab, name, "ping", port=6380) == "PONG"  # --tls --cacert --cert --key
        # The server certificate names the host's address; its key is redis's, the client's root's.
        san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                              str(tls / "server.crt")], capture_output=True, text=True,
                             check=True)  # fmt: skip
        assert f"IP Address:{address}" in san.stdout
        verified = subprocess.run(["openssl", "verify", "-CAfile", str(tls / "ca.crt"),
                                   str(tls / "server.crt"), str(tls / "client.crt")],
                                  capture_output=True, text=True)  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr
        redis_uid = pwd.getpwnam("redis").pw_uid
        assert ((tls / "server.key").stat().st_uid, (tls / "server.key").stat().st_mode & 0o777) \
            == (redis_uid, 0o600)
        assert ((tls / "client.key").stat().st_uid, (tls / "client.key").stat().st_mode & 0o777) \
            == (0, 0o600)
    assert not (lab.host("redis3").state_dir / "etc" / "redis" / "tls").exists()
    # Over SSH with the inventory's paths, as `opskit redis` will run it.
    done = lab_ssh("redis2", f"redis-cli --tls --cacert {TLS['ca']} --cert {TLS['cert']} --key "
                   f"{TLS['key']} -h {lab.host('redis1').address} -p 6380 info replication")
    assert done.returncode == 0 and "connected_slaves:1" in done.stdout, done.stderr


def test_three_sentinels_agree_on_the_master_of_watched(initial: LabStatus) -> None:
    lab = initial
    watched = f"{lab.host('redis2').address}:6381"
    assert sentinel_masters(lab) == {n: watched for n in NODES}
    for name in NODES:
        lines = rcli(lab, name, "sentinel", "master", "watched", port=26379).splitlines()
        fields = dict(zip(lines[0::2], lines[1::2], strict=False))
        assert fields["flags"] == "master" and fields["quorum"] == "2", fields
        assert fields["num-slaves"] == "1" and fields["num-other-sentinels"] == "2", fields
        # Announced under the hosts' addresses, not 127.0.0.1.
        others = rcli(lab, name, "sentinel", "sentinels", "watched", port=26379).splitlines()
        ips = {others[i + 1] for i, v in enumerate(others) if v == "ip"}
        assert ips == {lab.host(n).address for n in NODES if n != name}, others
        replicas = rcli(lab, name, "sentinel", "replicas", "watched", port=26379).splitlines()
        assert lab.host("redis3").address in replicas


def test_the_sentinels_fail_over_watched_and_reset_brings_it_back(initial: LabStatus) -> None:
    lab = initial
    os.kill(server_pids(lab, 6381)["redis2"] or 0, signal.SIGKILL)
    promoted = f"{lab.host('redis3').address}:6381"
    t0 = time.monotonic()
    assert wait_for(lambda: set(sentinel_masters(lab).values()) == {promoted}, timeout=30), \
        sentinel_masters(lab)
    print(f"Sentinel failover of watched in {time.monotonic() - t0:.1f} s")
    assert wait_for(lambda: replication(lab, "redis3", 6381).get("role") == "master")
    # The Sentinel persisted it (CONFIG REWRITE): redis3's config no longer replicates.
    assert wait_for(lambda: redis_service.replicates_from(lab.host("redis3"), 6381) is None)
    redis_service.reset_redis(lab.state_dir)
    assert is_initial(lab)


# ---------------------------------------------------------------- data and files


def test_data_config_and_logs_are_private_to_each_host(initial: LabStatus, lab_ssh) -> None:
    lab = initial
    assert rcli(lab, "redis2", "config", "get", "dir").splitlines() == ["dir", "/data/redis"]
    assert rcli(lab, "redis2", "save") == "OK"
    assert rcli(lab, "redis2", "config", "rewrite") == "OK"  # the config file is writable
    # Over SSH, as `opskit redis` runs it: redis-cli on the host against its own address.
    done = lab_ssh("redis2", "stat -c '%U %n' /data/redis/dump.rdb /etc/opskit-lab/redis/"
                   "redis.conf && stat -c '%U %a %n' /etc/opskit-lab/redis && "
                   f"REDISCLI_AUTH=$(cat {PASS_FILE}) redis-cli --user opskit "
                   f"-h {lab.host('redis2').address} info server")
    assert done.returncode == 0, done.stderr
    assert "redis /data/redis/dump.rdb" in done.stdout
    assert "redis /etc/opskit-lab/redis/redis.conf" in done.stdout
    # The configs hold passwords: only redis (and root) may enter their dir.
    assert "redis 750 /etc/opskit-lab/redis\n" in done.stdout
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
    before_tls = server_pids(lab, 6380)
    # redis3 becomes a master (persisted, as opskit redis promote does), then stops; so does
    # redis2 in group tls.
    for name, port in (("redis3", 6379), ("redis2", 6380)):
        assert rcli(lab, name, "replicaof", "no", "one", port=port) == "OK"
        assert rcli(lab, name, "config", "rewrite", port=port) == "OK"
        rcli(lab, name, "shutdown", "nosave", port=port)
    assert wait_for(lambda: server_pids(lab)["redis3"] is None)
    assert wait_for(lambda: server_pids(lab, 6380)["redis2"] is None)
    assert labmod.status(state_dir=lab.state_dir).host("redis3").services["redis"] is False

    status = lab_restore()
    assert status.host("redis3").services["redis"] is True
    assert replication(lab, "redis3")["role"] == "master"  # not forced back to a replica
    assert replication(lab, "redis2", 6380)["role"] == "master"
    after = server_pids(lab)
    assert after["redis1"] == before["redis1"] and after["redis2"] == before["redis2"]
    assert after["redis3"] not in (None, before["redis3"])
    assert server_pids(lab, 6380)["redis1"] == before_tls["redis1"]


def test_reset_redis_restores_every_group_from_two_masters_and_a_killed_one(
    initial: LabStatus,
) -> None:
    lab = initial
    assert rcli(lab, "redis1", "set", "before-reset", "1") == "OK"
    assert rcli(lab, "redis1", "wait", "2", "2000") == "2"
    # redis2 promoted by hand, then the old master killed: redis3 follows a dead master.
    assert rcli(lab, "redis2", "replicaof", "no", "one") == "OK"
    assert rcli(lab, "redis2", "set", "after-promotion", "1") == "OK"
    os.kill(server_pids(lab)["redis1"] or 0, signal.SIGKILL)
    # tls: two masters; watched: roles swapped and persisted, a Sentinel stopped.
    assert rcli(lab, "redis2", "replicaof", "no", "one", port=6380) == "OK"
    assert rcli(lab, "redis3", "replicaof", "no", "one", port=6381) == "OK"
    assert rcli(lab, "redis2", "replicaof", lab.host("redis3").address, "6381",
                port=6381) == "OK"  # fmt: skip
    assert rcli(lab, "redis2", "config", "rewrite", port=6381) == "OK"
    os.kill(sentinel_pids(lab)["redis1"] or 0, signal.SIGKILL)
    assert wait_for(lambda: server_pids(lab)["redis1"] is None)
    assert not is_initial(lab)

    t0 = time.monotonic()
    redis_service.reset_redis(lab.state_dir)
    took = time.monotonic() - t0
    print(f"reset_redis took {took:.2f} s")
    assert took < 8
    assert is_initial(lab)  # every group, and the three Sentinels on redis2:6381
    for group, (port, first, replicas) in GROUPS.items():
        for name in (first, *replicas):
            assert rcli(lab, name, "dbsize", port=port) == "0", (group, name)  # flushed
    status = labmod.status(state_dir=lab.state_dir)
    assert all(status.host(n).services["redis"] for n in NODES)


def _redis_servers_of(lab: LabStatus) -> list[int]:
    addresses = [f"{lab.host(n).address}:{p}" for n in NODES for p in (6379, 6380, 6381, 26379)]
    return [p for p in procs.pids() if procs.alive(p) and "redis-server" in procs.cmdline(p)
            and any(a in procs.cmdline(p) for a in addresses)]  # fmt: skip


def test_down_leaves_no_redis_server(lab: LabStatus, lab_params) -> None:
    """Down the session lab itself (a second lab would clash on 127.10.0.N:6379), then up."""
    pids = [p for port in (6379, 6380, 6381) for p in server_pids(lab, port).values() if p]
    pids += [p for p in sentinel_pids(lab).values() if p]
    assert len(pids) == 10
    try:
        lines = labmod.down(state_dir=lab.state_dir)
        for name in NODES:
            assert f"stopped redis on {name}" in lines
        assert not [line for line in lines if "failed" in line]
        assert [p for p in pids if procs.alive(p)] == []
        assert _redis_servers_of(lab) == []
    finally:
        labmod.up(**lab_params)  # type: ignore[arg-type]
    assert wait_for(lambda: is_initial(lab), timeout=10)  # a cold up builds the initial roles
