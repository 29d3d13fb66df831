"""The ``health:`` settings (opskit/health/settings.py), through the real reader
(health.checks.from_vars, with an inventory Host or a vars mapping) and ``settings.check``:
one key per check of DEFAULTS, typos named with file, line, group and the right key, wrong
types refused, null turns a level off, and pydantic is imported only for a host that has
``health:`` vars (the health command and the Munin plugin run often)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from opskit import inventory, settings
from opskit.errors import InventoryError
from opskit.health import checks as ck
from opskit.health import survey
from opskit.health.settings import HealthSettings

INV = """\
all:
  children:
    db:
      hosts:
        db1:
        db2: {health: {disk_percent: {warn: 70}}}
      vars:
        health:
          %(h)s
"""


def load(h: str) -> inventory.Inventory:
    return inventory.loads(INV % {"h": h}, "x.yml")


def error(h: str) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        ck.from_vars(load(h).hosts["db1"])
    assert "\n" not in caught.value.message
    return caught.value


def test_the_schema_has_one_key_per_check_with_its_defaults() -> None:
    assert list(HealthSettings.model_fields) == list(ck.DEFAULTS)
    for key, (warn, crit, text) in ck.DEFAULTS.items():
        field = HealthSettings.model_fields[key]
        assert text in (field.description or "")
        levels = field.annotation
        assert levels.model_fields["warn"].default == warn, key
        assert levels.model_fields["crit"].default == crit, key
        assert levels.model_fields["warn"].description


def test_a_misspelt_check_names_file_line_group_and_the_right_key() -> None:
    err = error("disk_pct: {warn: 1}")
    assert err.message == "x.yml line 9, group 'db': health.disk_pct: unknown key"
    assert err.hint == "did you mean health.disk_percent?"
    inv = load("disk_pct: {warn: 1}")
    assert [str(p) for p in settings.check(inv.hosts.values(), inv)] == [
        "x.yml line 9, group 'db': health.disk_pct: unknown key "
        "(did you mean health.disk_percent?)"]


def test_a_misspelt_level_names_its_line() -> None:
    err = error("disk_percent:\n            wran: 85")
    assert err.message == "x.yml line 10, group 'db': health.disk_percent.wran: unknown key"
    assert err.hint == "did you mean health.disk_percent.warn?"


def test_a_misspelt_var_name_is_not_ignored() -> None:
    inv = inventory.loads("all: {hosts: {h1: {helth: {disk_percent: {warn: 1}}}}}", "x.yml")
    with pytest.raises(InventoryError) as caught:
        ck.from_vars(inv.hosts["h1"])
    assert caught.value.message == "x.yml line 1, host 'h1': helth: is not an opskit setting"
    assert caught.value.hint == "did you mean health?"


@pytest.mark.parametrize(("h", "key", "text"), [
    ("disk_percent: 80", "health.disk_percent", "must be a mapping"),
    ("disk_percent: null", "health.disk_percent", "must be a mapping"),
    ("disk_percent: {warn: high}", "health.disk_percent.warn", "(got 'high')"),
    ("disk_percent: {warn: true}", "health.disk_percent.warn", "(got True)"),
    ("disk_percent: {crit: .nan}", "health.disk_percent.crit", "0 or more"),
    ("disk_percent: {crit: .inf}", "health.disk_percent.crit", "0 or more"),
    ("disk_percent: {warn: -5}", "health.disk_percent.warn", "0 or more"),
])
def test_wrong_values_are_refused_in_one_line(h: str, key: str, text: str) -> None:
    err = error(h)
    assert err.message.startswith(f"x.yml line 9, group 'db': {key}: "), err.message
    assert text in err.message


def test_a_list_is_not_settings() -> None:
    inv = inventory.loads("all: {hosts: {h1: {health: [disk_percent]}}}", "x.yml")
    with pytest.raises(InventoryError, match="health: must be a mapping of settings"):
        ck.from_vars(inv.hosts["h1"])


def test_levels_default_null_turns_off_and_hosts_override_groups() -> None:
    inv = load("memory_percent: {warn: 50, crit: null}\n          swap_percent: {crit: 99}")
    t = ck.from_vars(inv.hosts["db1"])
    assert t.get("memory_percent") == (50.0, None)
    assert t.get("swap_percent") == (50.0, 99.0)  # warn keeps its default
    assert t.get("disk_percent") == (80.0, 90.0)
    assert t.levels == {**ck.Thresholds().levels, "memory_percent": (50.0, None),
                        "swap_percent": (50.0, 99.0)}
    # db2's own health: replaces the group's (dicts replace).
    t2 = ck.from_vars(inv.hosts["db2"])
    assert t2.levels == {**ck.Thresholds().levels, "disk_percent": (70.0, 90.0)}


def test_no_health_vars_and_null_health_are_the_defaults() -> None:
    inv = inventory.loads("all: {hosts: {h1: , h2: {health: null}, h3: {health: {}}}}", "x.yml")
    for name in ("h1", "h2", "h3"):
        assert ck.from_vars(inv.hosts[name]).levels == ck.Thresholds().levels


def test_a_vars_mapping_still_works_and_names_the_host() -> None:
    t = ck.from_vars({"health": {"disk_percent": {"warn": 90, "crit": 95}}}, "db1")
    assert t.get("disk_percent") == (90.0, 95.0)
    with pytest.raises(InventoryError) as caught:
        ck.from_vars({"health": {"disk_percent": {"warn": "x"}}}, "db1")
    assert caught.value.message.startswith("host db1: health.disk_percent.warn: ")


def test_survey_reads_the_hosts_thresholds_with_file_and_line() -> None:
    from opskit.runner.fleet import RunOptions

    inv = load("disk_pct: {warn: 1}")
    with pytest.raises(InventoryError, match=r"^x.yml line 9, group 'db': health.disk_pct"):
        survey.run(list(inv.hosts.values()), RunOptions())


IMPORTS = """\
import sys
from opskit import inventory
from opskit.health import checks, survey
inv = inventory.loads('all: {hosts: {h1: {postgres: {data_directory: /pg}}, h2: {health: {}}}}',
                      'x.yml')
checks.from_vars(inv.hosts['h1'])
checks.from_vars(inv.hosts['h1'].vars, 'h1')
survey.notes_for([inv.hosts['h1']])
print('pydantic' in sys.modules)
checks.from_vars(inv.hosts['h2'])
print('pydantic' in sys.modules)
"""


def test_pydantic_is_imported_only_for_a_host_with_health_vars() -> None:
    out = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["False", "True"]


def test_the_munin_plugin_without_an_inventory_does_not_import_pydantic() -> None:
    code = ("import sys; from opskit.health import munin; munin.thresholds_from_env(); "
            "print('pydantic' in sys.modules)")
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, env=env).stdout.strip()
    assert out == "False"
