"""The ``snapshot:`` settings (opskit/snapshot/settings.py), through the real loader
(snapshot.config.load), ``settings.check``, ``snapshot create`` and its plan: a typo named with
file, line, group and the right key; wrong types and hostile values refused in one line; the
defaults are those the config used before the schema; ``enabled: false`` is enforced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opskit import inventory, settings
from opskit.errors import InventoryError, SafetyError
from opskit.runner.fleet import SKIPPED, UNREACHABLE, FleetResult, HostResult, RunOptions
from opskit.snapshot import config, create
from opskit.snapshot.config import DISABLED, SnapshotConfig
from opskit.snapshot.settings import SnapshotSettings
from opskit.transport.connection import ConnectOptions

INV = """\
all:
  children:
    db:
      hosts:
        db1: {ansible_host: 127.0.0.1, ansible_port: 1, aws: {instance_id: i-1}}
        db2: {ansible_host: 127.0.0.1, ansible_port: 1, aws: {instance_id: i-2}}
      vars:
        snapshot:
          mount: /data
          %s
"""
LINE = 10  # the line of the %s key above


def load(extra: str = "retention: hourly") -> inventory.Inventory:
    return inventory.loads(INV % extra, "x.yml")


def error(extra: str) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        config.load(load(extra).hosts["db1"], None, None)
    assert "\n" not in caught.value.message
    return caught.value


@pytest.mark.parametrize(("typo", "right"), [
    ("freeze_timout: 20", "freeze_timeout"),
    ("enable: false", "enabled"),    # never "snapshotted after all" because of a typo
    ("pre_freez: [sync]", "pre_freeze"),
])
def test_a_misspelt_key_names_file_line_group_and_the_right_key(typo: str, right: str) -> None:
    key = typo.partition(":")[0]
    err = error(typo)
    assert err.message == f"x.yml line {LINE}, group 'db': snapshot.{key}: unknown key"
    assert err.hint == f"did you mean snapshot.{right}?"
    inv = load(typo)
    problems = [str(p) for p in settings.check(inv.hosts.values(), inv)]
    assert problems == [f"x.yml line {LINE}, group 'db': snapshot.{key}: unknown key "
                        f"(did you mean snapshot.{right}?)"]
    with pytest.raises(InventoryError, match=f"snapshot.{key}: unknown key"):
        config.enabled(inv.hosts["db2"])


@pytest.mark.parametrize(("extra", "key", "said"), [
    ("enabled: 'no'", "snapshot.enabled", "valid boolean"),
    ("enabled: 0", "snapshot.enabled", "valid boolean"),
    ("freeze_timeout: abc", "snapshot.freeze_timeout", "valid number"),
    ("freeze_timeout: '30'", "snapshot.freeze_timeout", "valid number"),
    ("freeze_timeout: true", "snapshot.freeze_timeout", "valid number"),
    ("freeze_timeout: 0", "snapshot.freeze_timeout", "positive number of seconds"),
    ("freeze_timeout: -5", "snapshot.freeze_timeout", "positive number of seconds"),
    ("freeze_timeout: .nan", "snapshot.freeze_timeout", "positive number of seconds"),
    ("freeze_timeout: 601", "snapshot.freeze_timeout", "at most 600"),
    ("discovery_root: fixtures/db1", "snapshot.discovery_root", "absolute path"),
    ("volumes: vol-0a1", "snapshot.volumes", "valid list"),
    ("volumes: [vol-0a1, '/dev/sdf']", "snapshot.volumes.1", "EBS volume id"),
    ('volumes: ["vol-0a1\\n"]', "snapshot.volumes.0", "EBS volume id"),
    ("volumes: [vol-0a1, vol-0b2, vol-0a1]", "snapshot.volumes", "lists vol-0a1 twice"),
    ("pre_freeze: [sync, '']", "snapshot.pre_freeze.1", "shell command"),
    ("pre_freeze: ' '", "snapshot.pre_freeze.0", "shell command"),
    ("pre_freeze: 5", "snapshot.pre_freeze", "valid list"),
    ("pre_freeze: [[sync]]", "snapshot.pre_freeze.0", "valid string"),
    ("retention: 'hourly\\nx'", "snapshot.retention", "plain name"),
    ("retention: 'hourly daily'", "snapshot.retention", "plain name"),
])
def test_a_wrong_or_hostile_value_is_one_line(extra: str, key: str, said: str) -> None:
    err = error(extra)
    assert err.message.startswith(f"x.yml line {LINE}, group 'db': {key}"), err.message
    assert said in err.message


@pytest.mark.parametrize("mount", ["data", "/", "//", "/data/..", '"/da\\nta"'])
def test_the_mount_is_an_absolute_path_other_than_slash(mount: str) -> None:
    inv = inventory.loads(f"all:\n  hosts:\n    d1:\n      snapshot:\n        mount: {mount}\n",
                          "m.yml")
    with pytest.raises(InventoryError) as caught:
        config.load(inv.hosts["d1"], None, None)
    assert caught.value.message.startswith("m.yml line 5, host 'd1': snapshot.mount: ")


def test_the_defaults_are_those_the_config_used_before() -> None:
    inv = inventory.loads("all:\n  hosts:\n    d1: {snapshot: {mount: /data/}}\n", "d.yml")
    host = inv.hosts["d1"]
    assert config.load(host, None, None) == SnapshotConfig(mount="/data")
    assert config.enabled(host)
    bare = inventory.loads("all:\n  hosts:\n    d2:\n", "d.yml").hosts["d2"]
    assert config.enabled(bare)  # no snapshot: at all -> enabled, as before
    assert config.load(bare, "/data", None) == SnapshotConfig(mount="/data")


def test_options_override_the_inventory_and_one_hook_is_a_list() -> None:
    host = load("freeze_timeout: 12.5\n          pre_freeze: sync\n"
                "          volumes: [vol-0b2, vol-0a1]\n          discovery_root: /fx").hosts["db1"]
    cfg = config.load(host, None, None)
    assert (cfg.freeze_timeout, cfg.pre_freeze, cfg.volumes, cfg.discovery_root,
            cfg.retention) == (12.5, ("sync",), ("vol-0b2", "vol-0a1"), "/fx", "default")
    cfg = config.load(host, "/srv", 5, "weekly")
    assert (cfg.mount, cfg.freeze_timeout, cfg.retention) == ("/srv", 5, "weekly")


def test_a_disabled_host_has_no_config() -> None:
    host = load("enabled: false").hosts["db1"]
    assert not config.enabled(host)
    with pytest.raises(SafetyError, match=f"host db1: {DISABLED}"):
        config.load(host, "/data", None)


def test_create_never_contacts_a_disabled_host() -> None:
    inv = inventory.loads(INV % "retention: hourly" + """\
    primary:
      hosts:
        db3: {ansible_host: 127.0.0.1, ansible_port: 1, snapshot: {enabled: false}}
""", "x.yml")
    hosts = list(inv.hosts.values())
    cfgs = {h.name: config.load(h, None, None) for h in hosts if config.enabled(h)}
    options = RunOptions(connect=ConnectOptions(connect_timeout=2))
    result = create.create(hosts, cfgs, {}, options)
    by_host = {r.host: r for r in result.results}
    assert [r.host for r in result.results] == ["db1", "db2", "db3"]
    # db1 and db2 were tried (nothing listens on port 1); db3 was not even connected to.
    assert by_host["db1"].status == UNREACHABLE and by_host["db2"].status == UNREACHABLE
    assert (by_host["db3"].status, by_host["db3"].error) == (SKIPPED, DISABLED)
    assert create.disabled(result) == ["db3"]
    assert result.exit_code == 3


def test_an_interrupted_run_does_not_offer_to_snapshot_a_disabled_host() -> None:
    result = FleetResult([HostResult("db1", SKIPPED, error="interrupted before start"),
                          HostResult("db3", SKIPPED, error=DISABLED)], 0.0, interrupted=True)
    text, hint = create.interrupted_summary(result)
    assert f"skipped ({DISABLED}): db3" in text and "not started, no new set: db1" in text
    assert "-l db1 " in hint and "db3" not in hint


def test_every_key_is_documented_and_read() -> None:
    source = Path(config.__file__).read_text()
    for name, info in SnapshotSettings.model_fields.items():
        assert info.description and info.description.strip()
        assert f"d.{name}" in source, f"snapshot.{name} is declared but never read"


# The command, as a user runs it (a dry run contacts no host).

MIXED = """\
all:
  children:
    pg_primary:
      hosts:
        pg1a: {aws: {instance_id: i-1a}}
        pg2a: {aws: {instance_id: i-2a}}
      vars:
        snapshot: {mount: /data, enabled: false}
    pg_replica:
      hosts:
        pg1b: {aws: {instance_id: i-1b}}
      vars:
        snapshot: {mount: /data, freeze_timeout: 20}
"""


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "inv.yml").write_text(MIXED)
    env = {**os.environ, "OPSKIT_JOURNAL": str(tmp_path / "journal.jsonl")}
    env.pop("OPSKIT_INVENTORY", None)
    return subprocess.run([sys.executable, "-m", "opskit", "-i", str(tmp_path / "inv.yml"),
                           *args], capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)


def test_the_plan_shows_a_disabled_host_as_skipped(tmp_path: Path) -> None:
    proc = cli(tmp_path, "--json", "snapshot", "create", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [p["host"] for p in doc["plan"]] == ["pg1b"]
    assert doc["plan"][0]["freeze_timeout"] == 20
    assert doc["skipped"] == [{"host": "pg1a", "skipped": DISABLED},
                              {"host": "pg2a", "skipped": DISABLED}]
    human = cli(tmp_path, "snapshot", "create", "--dry-run")
    assert human.returncode == 0, human.stderr
    assert "would freeze and snapshot 1 hosts" in human.stdout
    assert f"pg1a: skipped: {DISABLED}" in human.stdout
    assert f"pg2a: skipped: {DISABLED}" in human.stdout


def test_a_selection_of_only_disabled_hosts_is_refused(tmp_path: Path) -> None:
    proc = cli(tmp_path, "-l", "pg_primary", "snapshot", "create", "--yes")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 2, proc.stderr
    assert lines[0] == f"error: {DISABLED} for every selected host: pg1a, pg2a"
    assert lines[1].startswith("hint: ")
    assert not (tmp_path / "journal.jsonl").exists()
