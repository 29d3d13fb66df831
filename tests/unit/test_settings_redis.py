"""The ``redis:`` settings (opskit/redis/settings.py), through the real loader
(redis.config.instances / load) and ``settings.check``: typos named with file, line, group
and the right key (nested ``publish`` too); wrong types and hostile values refused in one
line; port or ports, not both; the defaults are those the config used before."""

from __future__ import annotations

import pytest

from opskit import inventory, settings
from opskit.errors import InventoryError
from opskit.redis import config
from opskit.redis.settings import RedisSettings

INV = """\
all:
  children:
    app:
      hosts:
        app1:
    redis:
      hosts:
        redis1: {ansible_host: 10.0.1.1}
      vars:
        redis:
          %(r)s
"""

PUBLISH = """publish:
            hosts: app
            file: /etc/app/redis.json
            %s"""


def load(r: str = "port: 6379") -> inventory.Inventory:
    return inventory.loads(INV % {"r": r}, "x.yml")


def error(r: str) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        config.instances(load(r).hosts["redis1"])
    assert "\n" not in caught.value.message
    return caught.value


def test_a_misspelt_key_names_file_line_group_and_the_right_key() -> None:
    err = error("max_link_down_second: 30")
    assert err.message == ("x.yml line 11, group 'redis': redis.max_link_down_second: "
                           "unknown key")
    assert err.hint == "did you mean redis.max_link_down_seconds?"
    inv = load("max_link_down_second: 30")
    with pytest.raises(InventoryError, match="max_link_down_second: unknown key"):
        config.load(inv, inv.select("redis"))
    assert [str(p) for p in settings.check(inv.hosts.values(), inv)] == [
        "x.yml line 11, group 'redis': redis.max_link_down_second: unknown key "
        "(did you mean redis.max_link_down_seconds?)"]


def test_a_misspelt_publish_key_names_its_own_line() -> None:
    err = error(PUBLISH % "relaod: systemctl reload app")
    assert err.message == "x.yml line 14, group 'redis': redis.publish.relaod: unknown key"
    assert err.hint == "did you mean redis.publish.reload?"


@pytest.mark.parametrize("r", [
    "os_user: redis", "os_user: 'redis\\nx'", "data_dir: /data/redis", "data_dir: data/redis",
    "conf: /etc/redis/redis.conf", "conf: redis.conf"])
def test_keys_nothing_reads_are_unknown(r: str) -> None:
    """os_user, data_dir and conf were read by no command (redis-cli runs as the login user,
    redis backup asks the server for its dir, roles persist with CONFIG REWRITE): refused."""
    key = r.partition(":")[0]
    err = error(r)
    assert err.message == f"x.yml line 11, group 'redis': redis.{key}: unknown key"
    assert key not in RedisSettings.model_fields
    assert key not in config.Instance.__dataclass_fields__


@pytest.mark.parametrize(("r", "key", "text"), [
    ("port: '6379'", "redis.port", "(got '6379')"),
    ("port: true", "redis.port", "(got True)"),
    ("port: 0", "redis.port", "1-65535"),
    ("port: 70000", "redis.port", "1-65535"),
    ("ports: 6379", "redis.ports", "(got 6379)"),
    ("ports: [6379, 0]", "redis.ports.1", "1-65535"),
    ("ports: [6379, '6380']", "redis.ports.1", "(got '6380')"),
    ("ports: []", "redis.ports", "at least one port"),
    ("ports: [6379, 6379]", "redis.ports", "twice"),
    ("max_link_down_seconds: true", "redis.max_link_down_seconds", "(got True)"),
    ("max_link_down_seconds: -1", "redis.max_link_down_seconds", "0 or more"),
    ("max_link_down_seconds: .nan", "redis.max_link_down_seconds", "0 or more"),
    ("max_link_down_seconds: '60'", "redis.max_link_down_seconds", "(got '60')"),
    ("cli: [redis-cli]", "redis.cli", "(got ['redis-cli'])"),
    ("publish: /etc/app/redis.json", "redis.publish", "must be a mapping"),
    (PUBLISH.replace("/etc/app", "etc/app") % "", "redis.publish.file", "absolute path"),
    (PUBLISH.replace("hosts: app", "hosts: [app1, app2]") % "", "redis.publish.hosts",
     "(got ['app1', 'app2'])"),
    (PUBLISH.replace("hosts: app", "hosts: ''") % "", "redis.publish.hosts", "empty"),
    (PUBLISH % "reload: [systemctl, reload]", "redis.publish.reload", "got"),
])
def test_wrong_values_are_refused_in_one_line(r: str, key: str, text: str) -> None:
    err = error(r)
    assert f"group 'redis': {key}: " in err.message, err.message
    assert err.message.startswith("x.yml line ")
    assert text in err.message


def test_publish_needs_hosts_and_file() -> None:
    err = error("publish: {file: /etc/app/redis.json}")
    assert err.message == "x.yml line 11, group 'redis': redis.publish.hosts: is missing"


def test_port_or_ports_not_both() -> None:
    err = error("port: 6379\n          ports: [6380, 6381]")
    assert "redis: set port (one instance) or ports (several), not both" in err.message


def test_the_defaults_are_the_ones_used_before() -> None:
    inv = inventory.loads("all: {hosts: {r1: {redis: {}}}}", "x.yml")
    [i] = config.instances(inv.hosts["r1"])
    assert (i.port, i.cli, i.max_link_down_seconds, i.publish) == (
        6379, "redis-cli", 60.0, None)
    assert isinstance(i.max_link_down_seconds, float)


def test_every_value_is_read() -> None:
    r = ("ports: [6380, 6381]\n          cli: /usr/bin/redis-cli\n"
         "          max_link_down_seconds: 0\n          "
         + PUBLISH % "reload: systemctl reload app")
    inv = load(r)
    found = config.instances(inv.hosts["redis1"])
    assert [i.name for i in found] == ["redis1:6380", "redis1:6381"]
    i = found[0]
    assert (i.cli, i.max_link_down_seconds) == ("/usr/bin/redis-cli", 0.0)
    assert i.publish == config.Publish("app", "/etc/app/redis.json", "systemctl reload app")
    assert config.load(inv, inv.select("redis")).publish == i.publish
    assert settings.check(inv.hosts.values(), inv) == []


def test_an_empty_reload_is_none() -> None:
    [i] = config.instances(load(PUBLISH % "reload: ''").hosts["redis1"])
    assert i.publish is not None and i.publish.reload is None


def test_a_publish_pattern_that_selects_nothing_is_a_check_problem() -> None:
    inv = load(PUBLISH.replace("hosts: app", "hosts: nosuch") % "")
    problems = settings.check(inv.hosts.values(), inv)
    assert [p.key for p in problems] == ["redis.publish.hosts"]


def test_no_redis_vars() -> None:
    inv = inventory.loads("all: {hosts: {h: }}", "x.yml")
    with pytest.raises(InventoryError, match="has no redis settings"):
        config.instances(inv.hosts["h"])


def test_the_schema_has_the_keys_the_config_reads() -> None:
    assert set(RedisSettings.model_fields) == {
        "port", "ports", "cli", "max_link_down_seconds", "publish", "group", "auth", "tls",
        "sentinel", "instances"}
