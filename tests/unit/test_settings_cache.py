"""The ``cache:`` settings (opskit/cache/settings.py), through the real reader
(cache.tools.tools on a host's session), ``settings.check`` and ``opskit cache map`` as a user
runs it: a typo named with file, line, group and the right key; wrong types and hostile values
refused in one line; the defaults are those the helpers used before the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from opskit import inventory, settings
from opskit.cache import tools
from opskit.cache.settings import CacheSettings
from opskit.runner import fleet

INV = """\
all:
  children:
    db:
      hosts:
        db1: {ansible_connection: local}
      vars:
        cache:
          %s
"""
LINE = 8  # the line of the %s key above


def load(extra: str) -> inventory.Inventory:
    return inventory.loads(INV % extra, "x.yml")


def tools_of(inv: inventory.Inventory) -> fleet.HostResult:
    """``tools(session)`` on db1, a local host: what every cache helper starts with."""
    return fleet.run([inv.hosts["db1"]], tools.tools).results[0]


def refused(extra: str) -> str:
    res = tools_of(load(extra))
    assert res.status == fleet.FAILED and res.error and "\n" not in res.error
    return res.error.removeprefix("InventoryError: ")


def test_a_misspelt_key_names_file_line_group_and_the_right_key() -> None:
    assert refused("vmtuch: /usr/local/bin/vmtouch") == (
        f"x.yml line {LINE}, group 'db': cache.vmtuch: unknown key")
    inv = load("pyhton: /usr/bin/python3")
    problems = [str(p) for p in settings.check(inv.hosts.values(), inv)]
    assert problems == [f"x.yml line {LINE}, group 'db': cache.pyhton: unknown key "
                        "(did you mean cache.python?)"]


@pytest.mark.parametrize(("extra", "said"), [
    ("python: 3", "valid string"),
    ("vmtouch: [vmtouch]", "valid string"),
    ("python: ''", "program name or an absolute path"),
    ("python: 'python3 -X dev'", "program name or an absolute path"),
    ("vmtouch: '-e'", "program name or an absolute path"),
    ("vmtouch: bin/vmtouch", "program name or an absolute path"),
    ('vmtouch: "/usr/bin/vmtouch\\nrm -rf /"', "program name or an absolute path"),
    ("python: '$(reboot)'", "program name or an absolute path"),
])
def test_a_wrong_or_hostile_value_is_one_line(extra: str, said: str) -> None:
    error = refused(extra)
    assert error.startswith(f"x.yml line {LINE}, group 'db': cache.{extra.partition(':')[0]}: ")
    assert said in error


def test_the_defaults_are_those_the_helpers_used_before() -> None:
    bare = inventory.loads("all:\n  hosts:\n    db1: {ansible_connection: local}\n", "x.yml")
    assert tools_of(bare).value == ("python3", "vmtouch")
    assert tools_of(load("vmtouch: /usr/local/bin/vmtouch")).value == (
        "python3", "/usr/local/bin/vmtouch")
    assert tools_of(load("python: python3.11")).value == ("python3.11", "vmtouch")


def test_every_key_is_documented_and_read() -> None:
    source = Path(tools.__file__).read_text()
    for name, info in CacheSettings.model_fields.items():
        assert info.description and info.description.strip()
        assert f"c.{name}" in source, f"cache.{name} is declared but never read"


def test_cache_map_refuses_a_misspelt_key_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text(INV % "vmtuch: vmtouch")
    env = {**os.environ, "OPSKIT_JOURNAL": str(tmp_path / "journal.jsonl")}
    env.pop("OPSKIT_INVENTORY", None)
    proc = subprocess.run([sys.executable, "-m", "opskit", "-i", str(tmp_path / "inv.yml"),
                           "cache", "map", "db1", "--path", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 2, proc.stdout + proc.stderr
    assert lines[0].endswith(f"inv.yml line {LINE}, group 'db': cache.vmtuch: unknown key")
    assert lines[1] == "hint: did you mean cache.vmtouch?"


def test_a_bad_cache_setting_is_refused_before_any_connection(tmp_path: Path) -> None:
    """The host's sshd would be 127.0.0.1:1 (refused at once: exit 3 if opskit tried)."""
    (tmp_path / "inv.yml").write_text(
        "all:\n  hosts:\n    db1:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n"
        "      cache: {python: 'python3 -c x'}\n")
    env = {**os.environ, "OPSKIT_JOURNAL": str(tmp_path / "journal.jsonl")}
    env.pop("OPSKIT_INVENTORY", None)
    for argv in (["map", "db1", "--path", "/data"], ["evict", "db1", "--path", "/data", "--yes"]):
        proc = subprocess.run([sys.executable, "-m", "opskit", "-i", str(tmp_path / "inv.yml"),
                               "cache", *argv], capture_output=True, text=True, timeout=60,
                              env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "inv.yml line 6, host 'db1': cache.python: must be a program name" in proc.stderr
