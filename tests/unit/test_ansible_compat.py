"""Judged by Ansible itself: the loader reads the project's own Ansible sites as ansible-core does.

For each inventory under tests/fixtures/ansible/ (INI + group_vars/ + host_vars/, YAML +
group_vars/ + host_vars/, ``ansible-inventory --list`` JSON, an executable script), the real
``ansible-inventory -i X --list`` (one run per inventory) gives the hosts, groups and every
host's merged vars, and one run of Ansible's InventoryManager gives the hosts of each
``--limit`` pattern; opskit's loader must agree on all of them. Ansible runs isolated: an
empty config file, a temporary HOME and local temp, an empty working directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from opskit import inventory

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ansible"
BIN = Path(sys.executable).parent
ANSIBLE_INVENTORY = BIN / "ansible-inventory"

pytestmark = pytest.mark.skipif(not ANSIBLE_INVENTORY.exists(),
                                reason="ansible-core is not installed (pip install -e .[test])")

# Hosts of these patterns, computed by Ansible's InventoryManager in one process.
PATTERNS_SCRIPT = """
import json, sys
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
inv = InventoryManager(loader=DataLoader(), sources=[sys.argv[1]])
print(json.dumps({p: sorted(h.name for h in inv.get_hosts(p)) for p in sys.argv[2:]}))
"""

# Not compared: `app[1-2]`, which Ansible reads as a subscript (the 2nd and 3rd hosts of
# pattern `app`) and opskit as a glob (docs/inventory.md, --limit patterns).
# inventory (relative to FIXTURES; a .json is given to Ansible through a script that prints
# it, since Ansible reads --list JSON only from scripts) → patterns to compare
CASES: dict[str, list[str]] = {
    "ini_site/hosts": ["all", "web", "db", "db_replica", "dc1", "ungrouped", "dc1:&db",
                       "web:!app02", "app0*", "db*:!db1", "web,bastion", "~app0[15]",
                       "dc1:!db_replica:&db"],
    "yaml_site/site.yml": ["all", "app", "canary", "data", "pg:redis", "app:!canary",
                           "all:&data", "mc*", "lonely", "ungrouped", "pg?"],
    "list_json/inventory.json": ["all", "dc", "web", "db", "db_replica", "ungrouped",
                                 "dc:!web1", "dc:&db", "*1"],
    "script/inventory.sh": ["all", "web", "db", "odd", "web:!web2", "all:&odd", "w*"],
}


@pytest.fixture(scope="module")
def ansible_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    home = tmp_path_factory.mktemp("ansible-home")
    (home / "empty.cfg").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(HOME=str(home), ANSIBLE_CONFIG=str(home / "empty.cfg"),
               ANSIBLE_LOCAL_TEMP=str(home / "tmp"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_DEPRECATION_WARNINGS="False", PYTHONWARNINGS="ignore")
    cwd = home / "cwd"  # no group_vars/ of a "playbook directory" here
    cwd.mkdir()
    return env, cwd


def _ansible_source(name: str, tmp: Path) -> Path:
    path = FIXTURES / name
    if path.suffix != ".json":
        return path
    wrapper = tmp / "list-json.sh"
    wrapper.write_text(f"#!/bin/sh\nexec cat '{path}'\n")
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="module")
def ansible_views(ansible_env: tuple[dict[str, str], Path],
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    env, cwd = ansible_env
    tmp = tmp_path_factory.mktemp("sources")
    views: dict[str, dict[str, Any]] = {}
    for name, patterns in CASES.items():
        source = str(_ansible_source(name, tmp))
        listed = subprocess.run([str(ANSIBLE_INVENTORY), "-i", source, "--list"], env=env,
                                cwd=cwd, capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        assert listed.returncode == 0, listed.stderr
        assert "Unable to parse" not in listed.stderr, listed.stderr
        selected = subprocess.run([sys.executable, "-c", PATTERNS_SCRIPT, source, *patterns],
                                  env=env, cwd=cwd, capture_output=True, text=True,
                                  timeout=120, stdin=subprocess.DEVNULL)
        assert selected.returncode == 0, selected.stderr
        views[name] = {"list": json.loads(listed.stdout),
                       "patterns": json.loads(selected.stdout.splitlines()[-1])}
    return views


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("name", list(CASES))
def test_same_hosts_and_merged_vars_as_ansible_inventory(
        name: str, ansible_views: dict[str, dict[str, Any]]) -> None:
    listed = ansible_views[name]["list"]
    inv = inventory.load(FIXTURES / name)
    hostvars = listed["_meta"]["hostvars"]
    # ansible-inventory omits hosts without vars from _meta; every host is in some group.
    ansible_hosts = {h for g, body in listed.items() if g != "_meta"
                     for h in body.get("hosts", [])}
    assert set(inv.hosts) == ansible_hosts
    for host in inv.hosts.values():
        assert _jsonable(host.vars) == hostvars.get(host.name, {}), host.name


@pytest.mark.parametrize("name", list(CASES))
def test_same_groups_members_and_children(name: str,
                                          ansible_views: dict[str, dict[str, Any]]) -> None:
    listed = ansible_views[name]["list"]
    inv = inventory.load(FIXTURES / name)
    for group, body in listed.items():
        if group == "_meta":
            continue
        if group == "all":  # Ansible moves hosts declared under all: to ungrouped
            assert set(body.get("hosts", [])) <= set(inv.groups["ungrouped"].hosts)
            assert set(inv.groups[group].children) >= set(body.get("children", []))
            continue
        assert set(inv.groups[group].hosts) == set(body.get("hosts", [])), group
        assert set(inv.groups[group].children) >= set(body.get("children", [])), group
    # ansible-inventory lists only groups with hosts or children; opskit has no others here
    # except an empty 'ungrouped'.
    shown = set(listed) - {"_meta"}
    assert {g for g in inv.groups if inv.groups[g].hosts or inv.groups[g].children} <= shown


@pytest.mark.parametrize("name", list(CASES))
def test_same_hosts_for_each_limit_pattern(name: str,
                                           ansible_views: dict[str, dict[str, Any]]) -> None:
    inv = inventory.load(FIXTURES / name)
    for pattern, expected in ansible_views[name]["patterns"].items():
        assert expected, f"pattern {pattern} selects nothing in Ansible: pick another"
        assert sorted(h.name for h in inv.select(pattern)) == expected, pattern


def test_precedence_layers_as_ansible_merges_them(ansible_views: dict[str, dict[str, Any]]
                                                  ) -> None:
    """The precedence the comparisons above rely on, spelled out on the INI site."""
    hostvars = ansible_views["ini_site/hosts"]["list"]["_meta"]["hostvars"]
    inv = inventory.load(FIXTURES / "ini_site/hosts")
    expected = {
        "bastion": "gv_all",      # group_vars/all beats [all:vars]
        "app03": "gv_web",        # group_vars/web beats group_vars/all and [web:vars]
        "db3": "gv_db_replica",   # the deeper group's file wins
        "app01": "hv_app01",      # host_vars/ beats everything
        "app02": "hv_app02",
        "db1": "hv_db1",
    }
    for host, level in expected.items():
        assert hostvars[host]["level"] == level == inv.hosts[host].vars["level"], host
    # An inventory-file host var beats every group_vars/ file; host_vars/ beats it.
    assert inv.hosts["app05"].vars["color"] == "blue" == hostvars["app05"]["color"]
    assert inv.hosts["app05"].address == "10.0.1.55" == hostvars["app05"]["ansible_host"]
    # Each var remembers its file and line.
    origin = inv.hosts["db2"].origins["postgres"]
    assert origin.source.endswith("group_vars/db/20-more.yaml") and origin.line == 2
    assert origin.owner == "group 'db'"
    assert inv.hosts["app06"].origins["weight"].line == 8
    assert inv.hosts["bastion"].origins["ntp"].line == 41


def test_the_script_runs_once_per_host_without_a_shell(tmp_path: Path) -> None:
    """Host names that are shell syntax stay names: nothing is run through a shell."""
    work = tmp_path / "work"
    work.mkdir()
    script = work / "inventory.sh"
    shutil.copy(FIXTURES / "script" / "inventory.sh", script)
    cwd = Path.cwd()
    os.chdir(work)
    try:
        inv = inventory.load(script)
    finally:
        os.chdir(cwd)
    assert {"; rm -rf /", "$(touch pwned)"} <= set(inv.hosts)
    assert [h.name for h in inv.select("odd")] == ["; rm -rf /", "$(touch pwned)"]
    assert not (work / "pwned").exists()
    assert inv.hosts["web1"].address == "10.1.0.1"
    assert inv.hosts["db1"].port == 2222
