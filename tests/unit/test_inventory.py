"""Loading YAML inventories: groups, precedence, ranges, errors, directories, output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opskit import inventory
from opskit.errors import InventoryError
from opskit.inventory import Host

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, name: str = "x.yml") -> InventoryError:
    path = write(tmp_path, name, text)
    with pytest.raises(InventoryError) as err:
        inventory.load(path)
    return err.value


NESTED = """
all:
  vars:
    level: all
    only_all: 1
    ansible_user: ubuntu
  children:
    dc:
      vars: {level: dc, only_dc: 1}
      children:
        web:
          vars: {level: web, only_web: 1}
          children:
            web_canary:
              vars: {level: canary}
              hosts:
                app01: {level: host}
                app02:
          hosts:
            app[01:03]:
"""


def test_three_levels_of_nesting(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, "n.yml", NESTED))
    assert list(inv.hosts) == ["app01", "app02", "app03"]
    assert inv.hosts["app02"].groups == ("all", "dc", "web", "web_canary")
    assert inv.hosts["app03"].groups == ("all", "dc", "web")
    assert inv.groups["dc"].children == ["web"]
    assert inv.groups["web"].children == ["web_canary"]
    assert inv.groups["web"].hosts == ["app01", "app02", "app03"]
    assert inv.groups["web_canary"].hosts == ["app01", "app02"]
    assert [h.name for h in inv.members("dc")] == ["app01", "app02", "app03"]


def test_deeper_group_wins_and_host_wins_over_all(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, "n.yml", NESTED))
    app01, app02, app03 = (inv.hosts[n].vars for n in ("app01", "app02", "app03"))
    assert app01["level"] == "host"
    assert app02["level"] == "canary"
    assert app03["level"] == "web"
    # Vars set only on ancestors still reach the host.
    expected = {"only_all": 1, "only_dc": 1, "only_web": 1, "ansible_user": "ubuntu"}
    assert app02.items() >= expected.items()


def test_depth_beats_declaration_order() -> None:
    # 'deep' is declared first but is a grandchild: it still beats the top-level group.
    inv = inventory.loads("""
outer:
  children:
    mid:
      children:
        deep: {hosts: {h1:}, vars: {v: deep}}
top:
  hosts: {h1:}
  vars: {v: top}
""")
    assert inv.hosts["h1"].vars["v"] == "deep"


def test_siblings_at_same_depth_merge_by_name() -> None:
    # Both groups are children of 'all': the later name in sort order wins, whatever the
    # file order ('zeta' is declared first).
    inv = inventory.loads("""
all:
  children:
    zeta: {hosts: {h1:, h2:}, vars: {v: zeta, z: 1}}
    alpha: {hosts: {h1:}, vars: {v: alpha, a: 1}}
    beta: {hosts: {h2:}, vars: {v: beta}}
""")
    assert inv.hosts["h1"].vars == {"v": "zeta", "z": 1, "a": 1}
    assert inv.hosts["h2"].vars["v"] == "zeta"
    inv2 = inventory.loads("""
all:
  children:
    alpha: {hosts: {h1:}, vars: {v: alpha}}
    aardvark: {hosts: {h1:}, vars: {v: aardvark}}
""")
    assert inv2.hosts["h1"].vars["v"] == "alpha"


def test_dict_values_are_replaced_not_merged() -> None:
    inv = inventory.loads("""
all:
  vars:
    deploy: {path: /srv/app, keep: 5}
  children:
    web:
      hosts:
        w1: {deploy: {branch: hotfix}}
        w2:
""")
    assert inv.hosts["w1"].vars["deploy"] == {"branch": "hotfix"}
    assert inv.hosts["w2"].domain("deploy") == {"path": "/srv/app", "keep": 5}


def test_hosts_do_not_share_mutable_vars() -> None:
    inv = inventory.loads("all:\n  vars: {deploy: {keep: 5}}\n  hosts: {a:, b:}\n")
    inv.hosts["a"].vars["deploy"]["keep"] = 1
    assert inv.hosts["b"].vars["deploy"]["keep"] == 5
    assert inv.groups["all"].vars["deploy"]["keep"] == 5


def test_group_in_several_places_merges() -> None:
    inv = inventory.loads("""
all:
  children:
    east:
      children:
        db: {hosts: {pg1:}, vars: {port: 5432, x: east}}
    west:
      children:
        db: {hosts: {pg2:, pg1:}, vars: {x: west}}
db:
  hosts: {pg3:}
""")
    db = inv.groups["db"]
    assert db.hosts == ["pg1", "pg2", "pg3"]
    assert db.vars == {"port": 5432, "x": "west"}
    assert inv.hosts["pg3"].groups == ("all", "db", "east", "west")
    assert inv.groups["all"].children == ["east", "west", "ungrouped"]


def test_host_vars_merge_across_mentions() -> None:
    inv = inventory.loads("""
a:
  hosts:
    h1: {ansible_port: 2200, x: 1}
b:
  hosts:
    h1: {x: 2, y: 3}
""")
    assert inv.hosts["h1"].vars == {"ansible_port": 2200, "x": 2, "y": 3}
    assert list(inv.hosts) == ["h1"]


def test_top_level_groups_and_ungrouped() -> None:
    inv = inventory.loads("""
all:
  hosts:
    lonely:
    web1:
web:
  hosts: {web1:}
""")
    assert inv.hosts["lonely"].groups == ("all", "ungrouped")
    assert inv.hosts["web1"].groups == ("all", "web")
    assert inv.groups["ungrouped"].hosts == ["lonely"]
    assert set(inv.groups) == {"all", "ungrouped", "web"}


def test_empty_group_and_empty_file() -> None:
    inv = inventory.loads("all:\n  children:\n    spare:\n")
    assert inv.hosts == {}
    assert inv.groups["spare"].hosts == []
    assert set(inventory.loads("").groups) == {"all", "ungrouped"}


def test_connection_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ops")
    inv = inventory.loads("""
all:
  vars: {ansible_user: ubuntu, ansible_ssh_private_key_file: ~/.ssh/prod.pem}
  hosts:
    app01:
      ansible_host: 10.0.0.5
      ansible_port: 2222
      opskit_known_hosts: ~/lab/known_hosts
    app02: {ansible_port: "2200", ansible_user: deploy}
    cron: {ansible_connection: local}
""")
    app01, app02, cron = inv.hosts["app01"], inv.hosts["app02"], inv.hosts["cron"]
    assert (app01.address, app01.port, app01.user) == ("10.0.0.5", 2222, "ubuntu")
    assert app01.key_file == "/home/ops/.ssh/prod.pem"
    assert app01.known_hosts == "/home/ops/lab/known_hosts"
    assert app01.connection == "ssh"
    assert (app02.address, app02.port, app02.user) == ("app02", 2200, "deploy")
    assert app02.known_hosts is None
    assert cron.connection == "local"
    assert cron.domain("deploy") == {}


def test_host_defaults_for_other_modules() -> None:
    host = Host("web1")
    assert (host.address, host.port, host.user, host.key_file) == ("web1", None, None, None)
    assert host.connection == "ssh"
    assert {host, Host("web1", {"x": 1})} == {host, Host("web1", {"x": 1})}


def test_ranges_in_hosts(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, "r.yml", """
all:
  children:
    app: {hosts: {"app[01:25]": {role: app}}}
    odd: {hosts: {"app[01:25:2]":}}
    db: {hosts: {"pg[01:02][a:b]":}}
"""))
    assert len(inv.groups["app"].hosts) == 25
    assert inv.groups["app"].hosts[0] == "app01"
    assert inv.groups["odd"].hosts[:3] == ["app01", "app03", "app05"]
    assert len(inv.groups["odd"].hosts) == 13
    assert inv.groups["db"].hosts == ["pg01a", "pg01b", "pg02a", "pg02b"]
    assert inv.hosts["app25"].vars["role"] == "app"


@pytest.mark.parametrize(
    ("bad", "why"),
    [("app[5:1]", "after end"), ("app[a:3]", "both be numbers"), ("app[01:03", "without ']'")],
)
def test_bad_range_names_file_line_and_pattern(tmp_path: Path, bad: str, why: str) -> None:
    err = error_of(tmp_path, f'all:\n  children:\n    web:\n      hosts:\n        "{bad}":\n')
    assert err.message.startswith(f"{tmp_path / 'x.yml'} line 5: bad host range '{bad}'")
    assert why in err.message
    assert "group 'web'" in err.message
    assert err.hint and "app[01:25]" in err.hint


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    text = "all:\n  hosts:\n    a:\n    b:\n  vars:\n    x: 1\n    y: z: 2\n"
    err = error_of(tmp_path, text)
    assert err.message == f"{tmp_path / 'x.yml'} line 7: mapping values are not allowed here"
    assert err.hint and "column" in err.hint


def test_unclosed_bracket_yaml(tmp_path: Path) -> None:
    err = error_of(tmp_path, "all:\n  hosts: {a:, b:\n")
    assert err.message.startswith(f"{tmp_path / 'x.yml'} line 3: ")


def test_missing_file_hint(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as err:
        inventory.load(tmp_path / "nope.yml")
    assert err.value.message == f"inventory not found: {tmp_path / 'nope.yml'}"
    assert err.value.hint == "pass -i PATH or set OPSKIT_INVENTORY"


def test_hosts_as_list(tmp_path: Path) -> None:
    err = error_of(tmp_path, "all:\n  children:\n    web:\n      hosts:\n        - app01\n")
    assert err.message == (
        f"{tmp_path / 'x.yml'} line 4: hosts of group 'web' must be a mapping (got a list)"
    )
    assert err.hint and "app01:" in err.hint


def test_children_as_list(tmp_path: Path) -> None:
    err = error_of(tmp_path, "all:\n  children: [web, db]\n")
    assert "line 2: children of group 'all' must be a mapping" in err.message


def test_vars_not_a_mapping(tmp_path: Path) -> None:
    err = error_of(tmp_path, "web:\n  hosts: {a:}\n  vars: [1, 2]\n")
    assert err.message == (
        f"{tmp_path / 'x.yml'} line 3: vars of group 'web' must be a mapping (got a list)"
    )


def test_host_vars_not_a_mapping(tmp_path: Path) -> None:
    err = error_of(tmp_path, "web:\n  hosts:\n    a: 10.0.0.1\n")
    assert "line 3: vars of host 'a' must be a mapping" in err.message


@pytest.mark.parametrize("port", ["ssh", "0", "70000", "true", "2.5"])
def test_port_not_an_int(tmp_path: Path, port: str) -> None:
    err = error_of(tmp_path, f"web:\n  hosts:\n    a:\n      ansible_port: {port}\n")
    # The line of the var itself (the YAML parser keeps every key's line).
    assert err.message.startswith(f"{tmp_path / 'x.yml'} line 4: ansible_port of host 'a'")


def test_port_in_group_vars(tmp_path: Path) -> None:
    err = error_of(tmp_path, "web:\n  vars:\n    ansible_port: [22]\n")
    assert "line 3: ansible_port of group 'web' must be an integer" in err.message


def test_unsupported_connection(tmp_path: Path) -> None:
    err = error_of(tmp_path, "web:\n  hosts:\n    a: {ansible_connection: winrm}\n")
    assert "ansible_connection of host 'a' is 'winrm'" in err.message


def test_domain_key_must_be_mapping(tmp_path: Path) -> None:
    err = error_of(tmp_path, "db:\n  vars:\n    postgres: 9.1\n")
    assert "'postgres' of group 'db' must be a mapping" in err.message


def test_unknown_group_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, "web:\n  hosts: {a:}\n  host: {b:}\n")
    assert err.message == f"{tmp_path / 'x.yml'} line 3: unknown key 'host' in group 'web'"


def test_group_not_a_mapping(tmp_path: Path) -> None:
    err = error_of(tmp_path, "web: [a, b]\n")
    assert "line 1: group 'web' must be a mapping" in err.message


def test_top_level_list(tmp_path: Path) -> None:
    err = error_of(tmp_path, "- a\n- b\n")
    assert "top level must be a mapping" in err.message


@pytest.mark.parametrize("text", ["web:\n  hosts:\n    '':\n", "web:\n  hosts:\n    12:\n"])
def test_host_names_must_be_non_empty_strings(tmp_path: Path, text: str) -> None:
    err = error_of(tmp_path, text)
    assert "line 3: host names must be non-empty strings" in err.message


def test_odd_host_names_are_kept() -> None:
    # opskit quotes every value it sends, so names are not policed beyond being strings.
    inv = inventory.loads("web:\n  hosts:\n    'app 01; rm -rf':\n    'db$(x)':\n")
    assert list(inv.hosts) == ["app 01; rm -rf", "db$(x)"]


def test_cycle_is_detected(tmp_path: Path) -> None:
    err = error_of(tmp_path, """
a:
  children:
    b:
      children:
        c:
c:
  children:
    a:
""")
    assert "group cycle" in err.message
    assert "a → b → c → a" in err.message
    assert err.message.startswith(f"{tmp_path / 'x.yml'} line 9:")


def test_self_cycle() -> None:
    with pytest.raises(InventoryError, match="group cycle a → a"):
        inventory.loads("a:\n  children:\n    a:\n")


def test_all_as_child_rejected() -> None:
    with pytest.raises(InventoryError, match="'all' cannot be a child"):
        inventory.loads("web:\n  children:\n    all:\n")


def test_ansible_plugin_file_rejected() -> None:
    with pytest.raises(InventoryError) as err:
        inventory.loads("plugin: amazon.aws.aws_ec2\n")
    assert err.value.hint and "source: ec2" in err.value.hint


def test_directory_merges_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path, "20-late.yml", """
web:
  hosts:
    app01: {color: blue}
    app03:
  vars: {tier: late}
""")
    write(tmp_path, "10-early.yaml", """
all:
  vars: {ansible_user: ubuntu}
web:
  hosts:
    app01: {color: green, size: xl}
    app02:
  vars: {tier: early, keep: 1}
""")
    write(tmp_path, ".hidden.yml", "broken: [")
    write(tmp_path, "ec2.example.yml", "source: ec2\nregions: [us-east-1]\n")
    write(tmp_path, "notes.txt", "not yaml: [")
    inv = inventory.load(tmp_path)
    assert [Path(s).name for s in inv.sources] == ["10-early.yaml", "20-late.yml"]
    assert list(inv.hosts) == ["app01", "app02", "app03"]
    assert inv.hosts["app01"].vars == {
        "ansible_user": "ubuntu", "tier": "late", "keep": 1, "color": "blue", "size": "xl",
    }  # fmt: skip
    assert inv.groups["web"].hosts == ["app01", "app02", "app03"]


def test_directory_error_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "web:\n  hosts: {a:}\n")
    write(tmp_path, "b.yml", "web:\n  hosts:\n    - b\n")
    with pytest.raises(InventoryError) as err:
        inventory.load(tmp_path)
    assert err.value.message.startswith(f"{tmp_path / 'b.yml'} line 2:")


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no \\*.yml") as err:
        inventory.load(tmp_path)
    assert err.value.hint == "pass -i PATH or set OPSKIT_INVENTORY"


def test_yaml_anchors_and_merge_keys() -> None:
    inv = inventory.loads("""
db:
  vars:
    postgres: &pg {port: 5432, data_dir: /data/pg}
  children:
    shard1:
      hosts: {pg1:}
      vars: {postgres: {<<: *pg, shard: 1}}
""")
    assert inv.hosts["pg1"].domain("postgres") == {"port": 5432, "data_dir": "/data/pg", "shard": 1}


def test_graph() -> None:
    inv = inventory.loads("""
all:
  hosts: {lonely:}
  children:
    web:
      hosts: {w2:, w1:}
      children:
        canary: {hosts: {w1:}}
    db: {hosts: {pg1:}}
""")
    assert inv.graph() == {
        "name": "all",
        "hosts": [],
        "children": [
            {"name": "db", "hosts": ["pg1"], "children": []},
            {"name": "ungrouped", "hosts": ["lonely"], "children": []},
            {
                "name": "web",
                "hosts": ["w2", "w1"],
                "children": [{"name": "canary", "hosts": ["w1"], "children": []}],
            },
        ],
    }


def test_graph_hides_empty_ungrouped() -> None:
    inv = inventory.loads("web:\n  hosts: {w1:}\n")
    assert [c["name"] for c in inv.graph()["children"]] == ["web"]


def test_to_dict_is_json() -> None:
    inv = inventory.loads("""
web:
  hosts:
    w1: {since: 2024-03-01, tags: !!set {a, b}}
  vars: {deploy: {keep: 3}}
""")
    data = json.loads(json.dumps(inv.to_dict()))
    assert data["hosts"]["w1"] == {
        "groups": ["all", "web"],
        "vars": {"deploy": {"keep": 3}, "since": "2024-03-01", "tags": ["a", "b"]},
    }
    web = {"hosts": ["w1"], "children": [], "vars": {"deploy": {"keep": 3}}}
    assert data["groups"]["web"] == web
    assert data["groups"]["all"]["children"] == ["web", "ungrouped"]


def test_from_dict() -> None:
    inv = inventory.from_dict({"web": {"hosts": {"w1": {"ansible_port": 22}}}})
    assert inv.hosts["w1"].port == 22
    with pytest.raises(InventoryError, match="<dict>: hosts of group 'web' must be a mapping"):
        inventory.from_dict({"web": {"hosts": ["w1"]}})


