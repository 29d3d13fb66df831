"""Redis groups, AUTH, TLS and Sentinel on the operator's side: which instances form a group
(inherited settings, ``instances:``), the shell text that puts a password into REDISCLI_AUTH
(run by a real sh against a stand-in redis-cli that shows its argv and environment), and the
Sentinel replies parsed and judged. The lab tests (tests/lab/test_redis_groups.py) run them
against real servers."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from opskit import inventory
from opskit.errors import InventoryError, UsageError
from opskit.redis import config, sentinel, tools
from opskit.redis.sentinel import SentinelView

INV = """\
all:
  children:
    redis:
      hosts:
        r1:
          ansible_host: 127.0.0.1
          redis:
            group: main
            auth: {user: opskit, password_file: %(pw)s}
            instances:
              - {port: 6379}
              - {port: 6380, group: tls, auth: null, tls: {ca: /t/ca.crt, cert: /t/c.crt,
                                                            key: /t/c.key}}
        r2:
          ansible_host: 127.0.0.2
          redis:
            group: main
            auth: {user: opskit, password_file: %(pw)s}
            instances:
              - {port: 6379}
              - {port: 6381, group: watched, auth: null,
                 sentinel: {master: watched, hosts: ["r1:26379", "r2:26379"]}}
"""

PASSWORD = "s3cr3t pa$$ 'word'"


def inv(pw: str = "/etc/redis/opskit.pass") -> inventory.Inventory:
    return inventory.loads(INV % {"pw": repr(pw)}, "x.yml")


def test_instances_inherit_the_hosts_settings_unless_they_set_them_even_to_null() -> None:
    i = inventory.loads(INV % {"pw": "/p"}, "x.yml")
    r1 = {x.port: x for x in config.instances(i.hosts["r1"], i)}
    assert r1[6379].group == "main" and r1[6379].auth is not None
    assert r1[6379].auth.user == "opskit" and r1[6379].tls is None
    assert r1[6380].group == "tls" and r1[6380].auth is None  # null: no AUTH for it
    assert r1[6380].tls == config.Tls("/t/ca.crt", "/t/c.crt", "/t/c.key")
    r2 = {x.port: x for x in config.instances(i.hosts["r2"], i)}
    assert r2[6381].sentinel is not None and r2[6381].sentinel.names() == ["r1:26379",
                                                                            "r2:26379"]


def test_a_group_is_whole_and_a_runbook_names_one() -> None:
    i = inv()
    fleet = config.fleet(i, [i.hosts["r1"]])
    assert fleet.names == ["main", "tls"]
    assert fleet.added == {"main": ("r2:6379",), "tls": ()}
    with pytest.raises(InventoryError, match="spans 2 Redis groups: main, tls"):
        fleet.one()
    # r1 alone names two instances of two groups: refused; r1:6380 names one.
    with pytest.raises(InventoryError, match="names instances of several Redis groups"):
        fleet.one(specs=["r1"])
    assert fleet.one(specs=["r1:6380"]).name == "tls"
    assert fleet.one(group="main", specs=["r1"]).name == "main"
    with pytest.raises(InventoryError, match="r1:6380 is in the Redis group tls, not main"):
        fleet.one(group="main", specs=["r1:6380"])
    with pytest.raises(InventoryError, match="no Redis group 'nope'"):
        fleet.one(group="nope")


def test_a_watched_groups_lease_is_held_on_its_sentinels_hosts_too() -> None:
    i = inv()
    watched = config.fleet(i, [i.hosts["r2"]]).only("watched").groups[0]
    assert [h.name for h in watched.hosts] == ["r2"]
    assert [h.name for h in watched.lock_hosts] == ["r1", "r2"]


def test_a_sentinel_outside_the_inventory_is_refused() -> None:
    text = INV.replace('"r1:26379"', '"elsewhere:26379"') % {"pw": "/p"}
    i = inventory.loads(text, "x.yml")
    with pytest.raises(InventoryError, match="names 'elsewhere', not a host of the inventory"):
        config.fleet(i, [i.hosts["r2"]])


@pytest.mark.parametrize("bad", ["op skit", "a'b", 'a"b', "a\\b", ""])
def test_an_acl_user_that_is_not_one_word_is_refused(bad: str) -> None:
    text = (INV % {"pw": "/p"}).replace("user: opskit", f"user: {bad!r}")
    i = inventory.loads(text, "x.yml")
    with pytest.raises(InventoryError, match="auth.user"):
        config.instances(i.hosts["r1"], i)


def test_auth_needs_exactly_one_password_source() -> None:
    text = (INV % {"pw": "/p"}).replace("password_file: /p", "secret_file: /s, password_file: /p")
    i = inventory.loads(text, "x.yml")
    with pytest.raises(InventoryError, match="exactly one"):
        config.instances(i.hosts["r1"], i)


# A stand-in redis-cli: prints its argv (one word per line) and what REDISCLI_AUTH holds.
FAKE_CLI = """#!/bin/sh
for a in "$@"; do printf 'argv:%s\\n' "$a"; done
printf 'auth:%s\\n' "${REDISCLI_AUTH-<unset>}"
cat | sed 's/^/stdin:/'
"""


def fake_cli(tmp_path: pathlib.Path) -> str:
    f = tmp_path / "redis-cli"
    f.write_text(FAKE_CLI)
    f.chmod(0o755)
    return str(f)


def run_sh(sc: tools.Script, extra: bytes = b"") -> subprocess.CompletedProcess[str]:
    # The same shell text the host's login shell gets over SSH.
    return subprocess.run(["sh", "-c", sc.text], input=(sc.stdin + extra).decode(),
                          capture_output=True, text=True, timeout=10, check=False)


def instance(tmp_path: pathlib.Path, **auth: object) -> config.Instance:
    host = inventory.Host("r1", {"ansible_host": "127.0.0.1"})
    a = config.Auth(auth.get("user"), auth.get("password_file"),  # type: ignore[arg-type]
                    auth.get("secret"))  # type: ignore[arg-type]
    return config.Instance(host, 6379, fake_cli(tmp_path), 60.0, None, auth=a,
                           tls=config.Tls("/t/ca.crt", "/t/c.crt", "/t/c.key"))


def test_a_password_file_on_the_host_reaches_redis_cli_only_in_its_environment(
        tmp_path: pathlib.Path) -> None:
    # A hostile path: quoted where it is joined, never run.
    d = tmp_path / "$(touch pwned); x"
    d.mkdir()
    pw = d / "pass"
    pw.write_text(PASSWORD + "\n")
    i = instance(tmp_path, user="opskit", password_file=str(pw))
    sc = tools.script(i, tools.argv_text(i, "INFO") + " </dev/null")
    assert PASSWORD not in sc.text and sc.stdin == b""
    out = run_sh(sc)
    assert out.returncode == 0, out.stderr
    assert f"auth:{PASSWORD}" in out.stdout.splitlines()
    words = [x[5:] for x in out.stdout.splitlines() if x.startswith("argv:")]
    assert words == ["-h", "127.0.0.1", "-p", "6379", "--tls", "--cacert", "/t/ca.crt",
                     "--cert", "/t/c.crt", "--key", "/t/c.key", "--user", "opskit", "INFO"]
    assert not (tmp_path / "pwned").exists() and not pathlib.Path("pwned").exists()


def test_a_password_file_without_a_final_newline_is_read_and_a_missing_one_stops(
        tmp_path: pathlib.Path) -> None:
    pw = tmp_path / "pass"
    pw.write_text(PASSWORD)
    i = instance(tmp_path, password_file=str(pw))
    assert f"auth:{PASSWORD}" in run_sh(tools.script(i, tools.argv_text(i) + " </dev/null")
                                       ).stdout
    gone = instance(tmp_path, password_file=str(tmp_path / "nope"))
    out = run_sh(tools.script(gone, tools.argv_text(gone, "INFO")))
    assert out.returncode == 3 and "argv:" not in out.stdout
    assert "Error: no Redis password read for r1:6379" in out.stdout


def test_a_secret_file_here_goes_on_stdin_before_the_commands_byte_for_byte(
        tmp_path: pathlib.Path) -> None:
    from opskit import secretfile

    f = tmp_path / "redis-pass"
    f.write_text(PASSWORD + "\n")
    f.chmod(0o600)
    secret = secretfile.read(str(f), "the Redis password file", how="redis.auth.secret_file")
    assert PASSWORD not in repr(secret) and PASSWORD not in str(secret)
    i = instance(tmp_path, secret=secret)
    sc = tools.script(i, tools.argv_text(i))
    assert PASSWORD not in sc.text
    out = run_sh(sc, b"MULTI\nSET k 'v'\nEXEC\n")
    lines = out.stdout.splitlines()
    assert f"auth:{PASSWORD}" in lines
    assert [x for x in lines if x.startswith("stdin:")] == ["stdin:MULTI", "stdin:SET k 'v'",
                                                            "stdin:EXEC"]


def test_a_secret_file_others_may_read_is_refused_at_planning(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "redis-pass"
    f.write_text("pw\n")
    f.chmod(0o644)
    text = (INV % {"pw": "/p"}).replace("password_file: /p", f"secret_file: {str(f)!r}")
    i = inventory.loads(text, "x.yml")
    with pytest.raises(UsageError, match="open to others"):
        config.instances(i.hosts["r1"], i)


def test_connected_sentinels_are_counted_from_client_list() -> None:
    text = ("id=5 addr=127.10.0.3:40000 name=sentinel-1a2b3c4d-pubsub cmd=subscribe\n"
            "id=6 addr=127.10.0.7:40001 name=sentinel-99aa88bb-pubsub cmd=subscribe\n"
            "id=7 addr=127.10.0.7:40002 name=sentinel-99aa88bb-cmd cmd=ping\n"
            "id=8 addr=127.0.0.1:40003 name=app-sentinel-1a2b3c4d-pubsubx cmd=subscribe\n")
    assert sentinel.connected_ids(text) == {"1a2b3c4d", "99aa88bb"}


def test_sentinel_master_reply_is_parsed_as_pairs() -> None:
    reply = "name\nwatched\nip\n127.10.0.7\nport\n6381\nflags\nmaster\nquorum\n2\n"
    assert sentinel.parse_pairs(reply)["ip"] == "127.10.0.7"
    assert sentinel.parse_pairs(reply)["quorum"] == "2"


def ok(name: str, master: str = "127.10.0.7:6381", flags: str = "master") -> SentinelView:
    return SentinelView(name, True, master=master, flags=flags, quorum=2, other_sentinels=2,
                        ckquorum="OK 3 usable Sentinels. Quorum and failover authorization "
                        "can be reached")


def test_sentinel_warnings() -> None:
    good = [ok("r1:26379"), ok("r2:26379"), ok("r3:26379")]
    assert sentinel.warnings(good, "127.10.0.7:6381", True, 3) == []
    split = [ok("r1:26379"), ok("r2:26379", master="127.10.0.10:6381")]
    assert any("disagree" in w for w in sentinel.warnings(split, "127.10.0.7:6381", True, 2))
    down = [ok("r1:26379", flags="o_down,master"), SentinelView("r2:26379", False, error="x")]
    said = sentinel.warnings(down, "127.10.0.7:6381", True, 1)
    assert any("sees the master" in w for w in said)
    assert any("r2:26379 does not answer" in w for w in said)
    stale = [ok("r1:26379", master="127.10.0.10:6381")]
    assert any("a failover in progress" in w
               for w in sentinel.warnings(stale, "127.10.0.7:6381", True, 1))
    assert any("does not declare them" in w for w in sentinel.warnings([], None, False, 3))
    assert sentinel.warnings([], "127.10.0.7:6381", False, 0) == []


def test_no_password_means_no_prelude(tmp_path: pathlib.Path) -> None:
    host = inventory.Host("r1", {"ansible_host": "127.0.0.1"})
    i = config.Instance(host, 6379, fake_cli(tmp_path), 60.0, None)
    sc = tools.script(i, tools.argv_text(i, "PING") + " </dev/null")
    assert sc.text == tools.argv_text(i, "PING") + " </dev/null" and sc.stdin == b""
    assert "auth:<unset>" in run_sh(sc).stdout or os.environ.get("REDISCLI_AUTH")


def test_inventory_check_names_a_sentinel_that_is_no_host_of_the_inventory() -> None:
    from opskit import settings

    text = INV.replace('"r1:26379"', '"elsewhere:26379"') % {"pw": "/p"}
    i = inventory.loads(text, "x.yml")
    problems = settings.check(list(i.hosts.values()), i)
    assert [(p.key, p.message) for p in problems] == [
        ("redis.instances.1.sentinel.hosts", "names 'elsewhere', not a host of the inventory")]
    assert "line" in problems[0].where and "r2" in problems[0].where
    assert settings.check(list(inv().hosts.values()), inv()) == []
