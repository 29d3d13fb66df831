"""The settings layer: problems name file, line, owner and the closest key; `inventory check`
reports one line per problem; the reference cannot drift; pydantic stays out of start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opskit import inventory, settings
from opskit.errors import InventoryError
from opskit.settings import reference, registry

ROOT = Path(__file__).resolve().parents[2]


def opskit(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPSKIT_INVENTORY"}
    return subprocess.run([sys.executable, "-m", "opskit", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60, env=env, cwd=ROOT)


TYPO = """\
all:
  vars:
    aws:
      region: us-east-1
      regoin: us-west-2
  children:
    db:
      hosts:
        db[1:3]:
      vars:
        postgress: {port: 5432}
        aws: {region: 5}
"""


def test_an_unknown_key_names_file_line_owner_and_the_closest_key() -> None:
    inv = inventory.loads(TYPO, "site.yml")
    host = inv.hosts["db2"]
    with pytest.raises(InventoryError) as caught:
        settings.of(inventory.loads(TYPO.replace("  children:", "  hosts: {solo: }\n"
                                                  "  children:"), "site.yml").hosts["solo"],
                    "aws")
    assert caught.value.message == "site.yml line 5, group 'all': aws.regoin: unknown key"
    assert caught.value.hint == "did you mean aws.region?"
    # The group's own aws: wins for db2 (dicts replace): its problem is a type, on line 11.
    with pytest.raises(InventoryError) as caught:
        settings.of(host, "aws")
    assert "\n" not in caught.value.message
    assert caught.value.message.startswith("site.yml line 12, group 'db': aws.region: ")
    assert "(got 5)" in caught.value.message


def test_check_reports_each_declaration_once_and_a_near_miss_var() -> None:
    inv = inventory.loads(TYPO, "site.yml")
    problems = [str(p) for p in settings.check(inv.hosts.values(), inv)]
    assert problems == [
        "site.yml line 11, group 'db': postgress: is not an opskit setting "
        "(did you mean postgres?)",
        "site.yml line 12, group 'db': aws.region: input should be a valid string (got 5)",
        # Every member of 'all' overrides its aws:, but a typo there is still reported.
        "site.yml line 5, group 'all': aws.regoin: unknown key (did you mean aws.region?)",
    ], problems


def test_values_are_not_coerced() -> None:
    inv = inventory.loads("all: {hosts: {h: {aws: {region: true}}}}", "x.yml")
    found = settings.problems(inv.hosts["h"], "aws")
    assert len(found) == 1 and "got True" in found[0].message


def test_a_domain_that_is_not_a_mapping_is_one_line() -> None:
    inv = inventory.loads("all: {hosts: {h: {health: [disk_percent]}}}", "x.yml")
    with pytest.raises(InventoryError) as caught:
        inventory_check_one(inv)
    assert caught.value.message == ("x.yml line 1, host 'h': health: must be a mapping of "
                                    "settings (got ['disk_percent'])")


def inventory_check_one(inv: inventory.Inventory) -> None:
    problems = settings.check(inv.hosts.values(), inv)
    if problems:
        raise problems[0].error()


def test_every_registered_schema_resolves_and_documents_every_key() -> None:
    for domain in registry.DOMAINS:
        model = registry.schema(domain)
        assert model.model_config.get("extra") == "forbid", domain
        for name, info in model.model_fields.items():
            assert info.description and len(info.description) > 10, f"{domain}.{name}"


def test_the_reference_is_generated_from_the_schemas() -> None:
    """docs/settings.md cannot drift: regenerate it with python -m opskit.settings.reference."""
    assert (ROOT / "docs" / "settings.md").read_text() == reference.render()
    for domain in registry.DOMAINS:
        for name in registry.schema(domain).model_fields:
            assert f"`{domain}.{name}`" in reference.render()


def test_inventory_check_exit_codes_and_one_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "site.yml"
    bad.write_text(TYPO)
    proc = opskit("-i", str(bad), "inventory", "check")
    assert proc.returncode == 1, proc
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and all(str(bad) in line for line in lines), proc.stdout
    doc = json.loads(opskit("-i", str(bad), "--json", "inventory", "check").stdout)
    assert doc["ok"] is False and [p["line"] for p in doc["problems"]] == lines
    assert doc["problems"][0]["key"] == "postgress" and doc["problems"][0]["hint"] == \
        "did you mean postgres?"
    good = tmp_path / "good.yml"
    good.write_text("all: {vars: {aws: {region: us-east-1}}, hosts: {h1: , h2: }}\n")
    proc = opskit("-i", str(good), "inventory", "check")
    assert proc.returncode == 0 and "2 hosts, every setting valid" in proc.stdout, proc


def test_pydantic_is_not_imported_at_start_up() -> None:
    """The fan-out bench's start-up: `exec` and a loaded inventory never import the schemas."""
    code = ("import sys, opskit.cli, opskit.commands.exec_, opskit.commands.mutating;"
            "from opskit import inventory;"
            "inventory.load('inventory/production.yml');"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic' "
            "or m.endswith('.settings') and m != 'opskit.settings'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_an_ec2_source_is_checked_without_asking_aws(tmp_path: Path) -> None:
    """No endpoint and no credentials here: a query would fail; the check makes none."""
    source = tmp_path / "ec2.yml"
    source.write_text("source: ec2\nregions: [us-east-1]\naws: {profile: nosuch}\n"
                      "vars:\n  ansible_user: ubuntu\n  snapshot: {mount: /data, enabeld: true}\n")
    proc = opskit("-i", str(source), "inventory", "check")
    assert proc.returncode == 1, proc
    assert proc.stdout.strip() == (f"{source} line 6, EC2 source 'vars': snapshot.enabeld: "
                                   "unknown key (did you mean snapshot.enabled?)")
    source.write_text(source.read_text().replace("enabeld", "enabled"))
    proc = opskit("-i", str(source), "inventory", "check")
    assert proc.returncode == 0 and "without asking AWS" in proc.stdout, proc


def test_a_secret_s_value_is_never_shown(tmp_path: Path) -> None:
    secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
    bad = tmp_path / "site.yml"
    bad.write_text("all:\n  hosts:\n    h:\n      aws: {secret_access_key: [" + secret + "]}\n")
    for argv in (["inventory", "check"], ["--json", "inventory", "check"]):
        proc = opskit("-i", str(bad), *argv)
        assert proc.returncode == 1 and "aws.secret_access_key" in proc.stdout, proc
        assert secret not in proc.stdout + proc.stderr
    inv = inventory.load(bad)
    with pytest.raises(InventoryError) as caught:
        settings.of(inv.hosts["h"], "aws")
    assert secret not in caught.value.message + str(caught.value.hint)
