"""The lab Redis's pure parts (opskit/lab/redis_service.py, redis_secrets.py): each group's
config, the Sentinels' config, the ``redis:`` host vars (valid for opskit's schema), the
redis-cli argv (no password on it), and the secrets made once and kept 0600 (no lab needed)."""

from __future__ import annotations

import pathlib
import subprocess

import pytest
import yaml

from opskit import inventory, settings
from opskit.lab import redis_secrets, redis_service
from opskit.lab.models import LabHost

PW = redis_secrets.Passwords(default="def-pw", opskit="ops-pw")


def host(name: str, address: str) -> LabHost:
    return LabHost(name, address, 2222, name, None, ("redis",), pathlib.Path("/nonexistent"))


R1, R2, R3 = (host("redis1", "127.10.0.3"), host("redis2", "127.10.0.7"),
              host("redis3", "127.10.0.10"))


def lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x and not x.startswith("#")]


def test_the_groups_and_their_nodes() -> None:
    assert [(g.name, g.port, g.nodes) for g in redis_service.GROUPS] == [
        ("main", 6379, ("redis1", "redis2", "redis3")),
        ("tls", 6380, ("redis1", "redis2")),
        ("watched", 6381, ("redis2", "redis3")),
    ]
    assert [g.name for g in redis_service.groups_of("redis3")] == ["main", "watched"]


def test_main_has_requirepass_masterauth_and_the_acl_user_on_every_node() -> None:
    for node, master in ((R1, None), (R2, R1.address)):
        conf = lines(redis_service.conf_text(node, master, passwords=PW))
        assert "port 6379" in conf and f"bind {node.address}" in conf
        assert "requirepass def-pw" in conf and "masterauth def-pw" in conf
        assert "user opskit on >ops-pw ~* &* +@all" in conf
        assert ("replicaof 127.10.0.3 6379" in conf) == (master is not None)
        assert "pidfile /etc/opskit-lab/redis/redis.pid" in conf and "dbfilename dump.rdb" in conf
    with pytest.raises(ValueError, match="passwords"):
        redis_service.conf_text(R1, None)


def test_tls_listens_on_tls_only_and_replicates_over_tls() -> None:
    conf = lines(redis_service.conf_text(R2, R1.address, port=6380))
    assert "port 0" in conf and "tls-port 6380" in conf
    for want in ("tls-auth-clients yes", "tls-replication yes", "replicaof 127.10.0.3 6380",
                 "tls-cert-file /etc/opskit-lab/redis/tls/server.crt",
                 "tls-key-file /etc/opskit-lab/redis/tls/server.key",
                 "tls-ca-cert-file /etc/opskit-lab/redis/tls/ca.crt",
                 "pidfile /etc/opskit-lab/redis/redis-6380.pid", "dbfilename dump-6380.rdb"):
        assert want in conf, want
    assert not [x for x in conf if x.startswith(("requirepass", "masterauth", "user "))]


def test_watched_is_plain() -> None:
    conf = lines(redis_service.conf_text(R3, R2.address, port=6381))
    assert "port 6381" in conf and "replicaof 127.10.0.7 6381" in conf
    assert not [x for x in conf if x.startswith(("requirepass", "tls-", "user "))]


def test_a_sentinel_knows_the_master_its_replica_and_the_other_sentinels() -> None:
    conf = lines(redis_service.sentinel_conf_text(R1, R2.address, [R3.address], [R2, R3]))
    assert "sentinel monitor watched 127.10.0.7 6381 2" in conf
    assert "sentinel announce-ip 127.10.0.3" in conf and "port 26379" in conf
    assert f"sentinel myid {redis_service.sentinel_id('redis1')}" in conf
    assert "sentinel known-replica watched 127.10.0.10 6381" in conf
    for other in (R2, R3):
        assert (f"sentinel known-sentinel watched {other.address} 26379 "
                f"{redis_service.sentinel_id(other.name)}") in conf
    assert len({redis_service.sentinel_id(n) for n in redis_service.NODE_NAMES}) == 3
    assert all(len(redis_service.sentinel_id(n)) == 40 for n in redis_service.NODE_NAMES)


def test_the_host_vars_pass_opskits_schema_with_the_expected_instances() -> None:
    doc = {"all": {"hosts": {n: {"ansible_host": a, "redis": redis_service.host_settings(n)}
                             for n, a in (("redis1", R1.address), ("redis2", R2.address),
                                          ("redis3", R3.address))},
                   "children": {"app": {"hosts": {"app1": {"ansible_host": "127.10.0.1"}}}}}}
    inv = inventory.loads(yaml.safe_dump(doc), "lab.yml")
    assert settings.check(inv.hosts.values(), inv) == []
    r2 = settings.of(inv.hosts["redis2"], "redis")
    assert [(i.port, i.group) for i in r2.instances] == [(6379, None), (6380, "tls"),
                                                         (6381, "watched")]
    tls, watched = r2.instances[1], r2.instances[2]
    assert tls.auth is None and "auth" in tls.model_fields_set  # explicit: no AUTH there
    assert tls.publish is None and "publish" in tls.model_fields_set  # main's only
    assert tls.tls.cert == "/etc/opskit-lab/redis/tls/client.crt"
    assert watched.sentinel.hosts == ["redis1:26379", "redis2:26379", "redis3:26379"]
    assert r2.auth.user == "opskit" and r2.auth.password_file == redis_service.PASS_FILE


def test_cli_reads_main_password_from_the_host_file_never_from_argv() -> None:
    argv = redis_service.cli(R2, "ping")
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["redis-cli", redis_service.PASS_FILE, "timeout", "3", redis_service.CLI,
                        "--user", "opskit", "-h", R2.address, "-p", "6379", "ping"]
    done = subprocess.run(["sh", "-c", argv[2], "x", "/dev/stdin", "sh", "-c",
                           'printf %s "$REDISCLI_AUTH"'], input="s3cret\n",
                          capture_output=True, text=True)  # fmt: skip
    assert done.stdout == "s3cret"  # the shell hands the file's line on in the environment
    tls = redis_service.cli(R1, "ping", port=6380)
    assert tls[:7] == ["timeout", "3", redis_service.CLI, "--tls", "--cacert",
                       redis_service.TLS_CA, "--cert"]
    assert redis_service.cli(R3, "ping", port=6381) == ["timeout", "3", redis_service.CLI, "-h",
                                                        R3.address, "-p", "6381", "ping"]


def test_secrets_are_made_once_kept_and_0600(tmp_path: pathlib.Path) -> None:
    first = redis_secrets.ensure(tmp_path)
    assert first.default != first.opskit and len(first.default) >= 24
    ca = (tmp_path / "redis-tls" / "ca.crt").read_text()
    assert redis_secrets.ensure(tmp_path) == first  # a later up keeps them
    assert (tmp_path / "redis-tls" / "ca.crt").read_text() == ca
    for path in (redis_secrets.default_password_path(tmp_path),
                 redis_secrets.opskit_password_path(tmp_path),
                 tmp_path / "redis-tls" / "ca.key", tmp_path / "redis-tls" / "client.key"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert redis_secrets.auth_env(tmp_path, {})["REDISCLI_AUTH"] == first.default
    out = tmp_path / "host"
    out.mkdir()
    redis_secrets.server_cert(tmp_path, "redis1", "127.10.0.3", out)
    assert (out / "server.key").stat().st_mode & 0o777 == 0o600
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(out / "server.crt")],
                          capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.10.0.3" in text and "CA:FALSE" in text
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "redis-tls" / "ca.crt"),
                         str(out / "server.crt"), str(tmp_path / "redis-tls" / "client.crt")],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
