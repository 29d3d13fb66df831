"""The ``deploy:`` settings (opskit/deploy/settings.py), through the real loader
(deploy.config.load, artifact.build) and ``settings.check``: a typo named with file, line,
group and the right key; wrong types and hostile values refused in one line; the defaults are
those the config used before the schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from opskit import inventory, settings
from opskit.deploy import artifact, config
from opskit.deploy.config import DeployConfig
from opskit.deploy.settings import DeploySettings
from opskit.errors import InventoryError, UsageError

INV = """\
all:
  children:
    app:
      hosts:
        app1: {ansible_host: 10.0.0.1}
        app2: {ansible_host: 10.0.0.2}
      vars:
        deploy:
          root: /srv/app
          pid_file: /srv/app/shared/pids/gunicorn.pid
          %s
"""
LINE = 11  # the line of the %s key above


def load(extra: str = "keep_releases: 5") -> inventory.Inventory:
    return inventory.loads(INV % extra, "x.yml")


def error(extra: str, host: str = "app1") -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        config.load(load(extra).hosts[host])
    assert "\n" not in caught.value.message
    return caught.value


def test_a_misspelt_key_names_file_line_group_and_the_right_key() -> None:
    err = error("helth_url: http://{address}:8000/health")
    assert err.message == f"x.yml line {LINE}, group 'app': deploy.helth_url: unknown key"
    assert err.hint == "did you mean deploy.health_url?"
    inv = load("keep_release: 3")
    problems = [str(p) for p in settings.check(inv.hosts.values(), inv)]
    assert problems == [f"x.yml line {LINE}, group 'app': deploy.keep_release: unknown key "
                        "(did you mean deploy.keep_releases?)"]


def test_a_misspelt_key_on_a_host_names_the_host() -> None:
    inv = inventory.loads("all:\n  hosts:\n    app9:\n      deploy:\n        root: /srv/a\n"
                          "        reload: x\n        drian_timeout: 5\n", "h.yml")
    with pytest.raises(InventoryError) as caught:
        config.load(inv.hosts["app9"])
    assert caught.value.message == "h.yml line 7, host 'app9': deploy.drian_timeout: unknown key"
    assert caught.value.hint == "did you mean deploy.drain_timeout?"


def test_a_misspelt_repo_key_fails_the_build_too(tmp_path: Path) -> None:
    inv = load("rep: /home/deploy/src/app")
    with pytest.raises(InventoryError, match="deploy.rep: unknown key"):
        artifact.build(list(inv.hosts.values()), "v1", None, tmp_path)


def test_hosts_of_two_repos_are_one_build_each(tmp_path: Path) -> None:
    inv = inventory.loads("all:\n  hosts:\n    a1: {deploy: {root: /a, reload: x, repo: /src/a}}\n"
                          "    b1: {deploy: {root: /b, reload: x, repo: /src/b}}\n", "r.yml")
    with pytest.raises(UsageError, match="one deploy.repo"):
        artifact.build(list(inv.hosts.values()), "v1", None, tmp_path)


@pytest.mark.parametrize(("extra", "key", "said"), [
    ("keep_releases: '5'", "deploy.keep_releases", "valid integer"),
    ("keep_releases: true", "deploy.keep_releases", "valid integer"),
    ("keep_releases: 1", "deploy.keep_releases", "2 or more"),
    ("health_timeout: abc", "deploy.health_timeout", "valid number"),
    ("health_timeout: '10'", "deploy.health_timeout", "valid number"),
    ("health_timeout: yes", "deploy.health_timeout", "valid number"),
    ("health_timeout: -1", "deploy.health_timeout", "positive number of seconds"),
    ("drain_timeout: 0", "deploy.drain_timeout", "positive number of seconds"),
    ("healthy_timeout: .nan", "deploy.healthy_timeout", "positive number of seconds"),
    ("healthy_timeout: .inf", "deploy.healthy_timeout", "positive number of seconds"),
    ("expect_release: 'no'", "deploy.expect_release", "valid boolean"),
    ("shared_dirs: log", "deploy.shared_dirs", "valid list"),
    ("shared_dirs: [log, ../etc]", "deploy.shared_dirs.1", "without '..'"),
    ("shared_dirs: [/etc]", "deploy.shared_dirs.0", "without '..'"),
    ("shared_files: ['']", "deploy.shared_files.0", "without '..'"),
    ("shared_files: [a/../../b]", "deploy.shared_files.0", "without '..'"),
    ("health_url: 'file:///etc/shadow'", "deploy.health_url", "http:// or https://"),
    ('health_url: "http://{address}:8000/\\nHost: evil"', "deploy.health_url", "newlines"),
    ("health_url: http://{host}:8000/", "deploy.health_url", "unknown placeholder {host}"),
    ("start: run --bind {addr}", "deploy.start", "unknown placeholder {addr}"),
    ("reload: ''", "deploy.reload", "must not be empty"),
    ("reload: 5", "deploy.reload", "valid string"),
    ("install: [pip, install]", "deploy.install", "valid string"),
    ("target_group_arn: my-group", "deploy.target_group_arn", "ARN"),
    ("repo: 42", "deploy.repo", "valid string"),
])
def test_a_wrong_or_hostile_value_is_one_line(extra: str, key: str, said: str) -> None:
    err = error(extra)
    assert err.message.startswith(f"x.yml line {LINE}, group 'app': {key}: "), err.message
    assert said in err.message


@pytest.mark.parametrize("root", ["srv/app", "/", "//", "/srv/..", '"/srv/app\\0x"'])
def test_root_must_be_an_absolute_directory_below_slash(root: str) -> None:
    inv = inventory.loads(f"all:\n  hosts:\n    a1:\n      deploy:\n        root: {root}\n"
                          "        reload: x\n", "r.yml")
    with pytest.raises(InventoryError) as caught:
        config.load(inv.hosts["a1"])
    assert caught.value.message.startswith("r.yml line 5, host 'a1': deploy.root: ")


def test_a_missing_root_is_named() -> None:
    inv = inventory.loads("all:\n  hosts:\n    a1:\n      deploy: {reload: x}\n", "r.yml")
    with pytest.raises(InventoryError, match="deploy.root: is missing"):
        config.load(inv.hosts["a1"])


@pytest.mark.parametrize("reload", ["hup", "usr2"])
def test_signal_reloads_need_the_pid_file(reload: str) -> None:
    inv = inventory.loads(f"all:\n  hosts:\n    a1:\n      deploy:\n        root: /srv/a\n"
                          f"        reload: {reload}\n", "r.yml")
    with pytest.raises(InventoryError) as caught:
        config.load(inv.hosts["a1"])
    # The key is missing: the line of the mapping it belongs in.
    assert caught.value.message.startswith(
        f"r.yml line 5, host 'a1': deploy.pid_file: is required with reload {reload}")


def test_a_relative_pid_file_is_refused() -> None:
    inv = inventory.loads("all:\n  hosts:\n    a1:\n      deploy:\n        root: /srv/a\n"
                          "        pid_file: run/gunicorn.pid\n", "r.yml")
    with pytest.raises(InventoryError) as caught:
        config.load(inv.hosts["a1"])
    assert caught.value.message.startswith("r.yml line 6, host 'a1': deploy.pid_file: must be "
                                           "an absolute path")


def test_a_reload_command_needs_no_pid_file_and_is_filled_in() -> None:
    inv = inventory.loads("all:\n  hosts:\n    a1:\n      ansible_host: 10.0.0.7\n"
                          "      deploy: {root: /srv/a/, reload: 'systemctl reload app@{name}'}\n",
                          "r.yml")
    cfg = config.load(inv.hosts["a1"])
    assert (cfg.root, cfg.reload, cfg.reload_command) == ("/srv/a", "command",
                                                          "systemctl reload app@a1")


def test_the_defaults_are_those_the_config_used_before() -> None:
    inv = inventory.loads("all:\n  hosts:\n    a1:\n      deploy: {root: /srv/a, reload: r}\n",
                          "d.yml")
    cfg = config.load(inv.hosts["a1"])
    assert cfg == DeployConfig(root="/srv/a", reload="command", reload_command="r")
    assert (cfg.keep_releases, cfg.health_timeout, cfg.drain_timeout, cfg.healthy_timeout,
            cfg.expect_release, cfg.shared_dirs, cfg.repo) == (5, 10.0, 30.0, 60.0, True, (),
                                                               None)
    with_pid = load().hosts["app1"]
    assert config.load(with_pid).reload == "hup"


def test_valid_values_come_through_typed() -> None:
    cfg = config.load(load("shared_dirs: [log, ./tmp/pids/]\n          health_timeout: 2.5\n"
                           "          expect_release: false\n          keep_releases: 2")
                      .hosts["app2"])
    assert cfg.shared_dirs == ("log", "tmp/pids") and cfg.health_timeout == 2.5
    assert cfg.expect_release is False and cfg.keep_releases == 2


def test_every_key_is_documented_and_read() -> None:
    source = Path(config.__file__).read_text()
    for name, info in DeploySettings.model_fields.items():
        assert info.description and info.description.strip()
        assert f"d.{name}" in source, f"deploy.{name} is declared but config.load never reads it"
