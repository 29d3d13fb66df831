"""--limit patterns: names, globs, regex, ranges, union, intersection, exclusion, errors."""

from __future__ import annotations

import pytest

from opskit import inventory
from opskit.errors import PatternError
from opskit.inventory.patterns import Term, split

INV = """
all:
  hosts:
    bastion:
  children:
    web:
      hosts:
        lb[1:2]:
        app[01:06]:
    db:
      children:
        pg_primary:
          hosts: {pg01a:, pg02a:}
        pg_replica:
          hosts: {pg01b:, pg02b:}
    zone_a:
      hosts: {app01:, app03:, app05:, pg01a:, pg02a:}
    canary:
      hosts: {app02:}
"""


@pytest.fixture(scope="module")
def inv() -> inventory.Inventory:
    return inventory.loads(INV, "inventory/test.yml")


def names(inv: inventory.Inventory, pattern: str | None) -> list[str]:
    return [h.name for h in inv.select(pattern)]


ALL = ["bastion", "lb1", "lb2", "app01", "app02", "app03", "app04", "app05", "app06",
       "pg01a", "pg02a", "pg01b", "pg02b"]  # fmt: skip


@pytest.mark.parametrize("pattern", [None, "", "all", "*", "  all  "])
def test_everything(inv: inventory.Inventory, pattern: str | None) -> None:
    assert names(inv, pattern) == ALL


def test_host_name(inv: inventory.Inventory) -> None:
    assert names(inv, "app03") == ["app03"]


def test_group_name_includes_descendants(inv: inventory.Inventory) -> None:
    assert names(inv, "db") == ["pg01a", "pg02a", "pg01b", "pg02b"]


def test_ungrouped(inv: inventory.Inventory) -> None:
    assert names(inv, "ungrouped") == ["bastion"]


def test_glob_over_host_names(inv: inventory.Inventory) -> None:
    assert names(inv, "app0[1-3]") == ["app01", "app02", "app03"]
    assert names(inv, "lb?") == ["lb1", "lb2"]


def test_glob_over_group_names(inv: inventory.Inventory) -> None:
    # 'pg_*' names no host but matches the groups pg_primary and pg_replica.
    assert names(inv, "pg_*") == ["pg01a", "pg02a", "pg01b", "pg02b"]
    assert names(inv, "zone*") == ["app01", "app03", "app05", "pg01a", "pg02a"]


def test_regex_matches_from_start(inv: inventory.Inventory) -> None:
    assert names(inv, r"~pg\d+b") == ["pg01b", "pg02b"]
    assert names(inv, "~(lb|bast)") == ["bastion", "lb1", "lb2"]
    with pytest.raises(PatternError):
        inv.select("~01b")  # re.match: '01b' is not at the start of any name


def test_host_range_in_pattern(inv: inventory.Inventory) -> None:
    assert names(inv, "app[02:04]") == ["app02", "app03", "app04"]
    assert names(inv, "pg0[1:2]a") == ["pg01a", "pg02a"]
    # Names the range produces that do not exist are ignored.
    assert names(inv, "app[05:09]") == ["app05", "app06"]


def test_union_colon_and_comma(inv: inventory.Inventory) -> None:
    expected = ["lb1", "app02", "pg01b", "pg02b"]
    assert names(inv, "pg_replica:lb1:app02") == expected
    assert names(inv, "pg_replica,lb1,app02") == expected
    assert names(inv, "app02, lb1 ,pg_replica") == expected  # inventory order, spaces ok


def test_union_deduplicates(inv: inventory.Inventory) -> None:
    assert names(inv, "app01:zone_a:app0[1-2]") == ["app01", "app02", "app03", "app05",
                                                    "pg01a", "pg02a"]  # fmt: skip


def test_exclusion(inv: inventory.Inventory) -> None:
    assert names(inv, "web:!app0[3-6]") == ["lb1", "lb2", "app01", "app02"]


def test_intersection(inv: inventory.Inventory) -> None:
    assert names(inv, "web:&zone_a") == ["app01", "app03", "app05"]


def test_unions_then_intersections_then_exclusions(inv: inventory.Inventory) -> None:
    # Order of terms does not matter: (web ∪ db) ∩ zone_a − app03.
    expected = ["app01", "app05", "pg01a", "pg02a"]
    assert names(inv, "web:db:&zone_a:!app03") == expected
    assert names(inv, "!app03:&zone_a:web:db") == expected
    assert names(inv, "!app03,&zone_a,db,web") == expected


def test_several_intersections(inv: inventory.Inventory) -> None:
    assert names(inv, "all:&zone_a:&web:&app0[3-9]") == ["app03", "app05"]


def test_only_exclusions_start_from_all(inv: inventory.Inventory) -> None:
    assert names(inv, "!web:!db") == ["bastion"]
    assert names(inv, "&zone_a:!web") == ["pg01a", "pg02a"]


def test_exclusion_matching_nothing_is_fine(inv: inventory.Inventory) -> None:
    assert names(inv, "lb*:!nosuchhost") == ["lb1", "lb2"]


def test_range_colon_is_not_a_separator(inv: inventory.Inventory) -> None:
    assert names(inv, "app[01:02]:lb1") == ["lb1", "app01", "app02"]


def test_group_wins_over_host_of_same_name() -> None:
    inv = inventory.loads("all:\n  hosts: {web:, other:}\n  children:\n    web:\n"
                          "      hosts: {w1:, w2:}\n")  # fmt: skip
    assert names(inv, "web") == ["w1", "w2"]


def test_no_match_names_close_matches(inv: inventory.Inventory) -> None:
    with pytest.raises(PatternError) as err:
        inv.select("apx01")
    assert err.value.message == "no hosts match 'apx01'"
    assert err.value.hint.startswith("close matches: ")
    assert "app01" in err.value.hint


def test_no_match_without_close_names_lists_groups(inv: inventory.Inventory) -> None:
    with pytest.raises(PatternError) as err:
        inv.select("zzzzzzzz")
    assert "groups are: canary, db," in err.value.hint


def test_the_unmatched_term_is_named(inv: inventory.Inventory) -> None:
    with pytest.raises(PatternError) as err:
        inv.select("lb1:&dbx")
    assert err.value.message == "no hosts match 'dbx'"
    assert "db" in err.value.hint


def test_union_with_one_typo_is_an_error(inv: inventory.Inventory) -> None:
    # Acting on lb1 alone when the operator also asked for "lbx" would be a silent surprise.
    with pytest.raises(PatternError) as err:
        inv.select("lb1:lbx")
    assert err.value.message == "no hosts match 'lbx'"
    assert "lb1" in (err.value.hint or "")


def test_exclusion_of_unknown_name_is_fine(inv: inventory.Inventory) -> None:
    assert names(inv, "lb1:!nosuchhost") == ["lb1"]


def test_empty_after_exclusion_is_an_error(inv: inventory.Inventory) -> None:
    with pytest.raises(PatternError) as err:
        inv.select("canary:!app02")
    assert err.value.message == "no hosts left after 'canary:!app02'"


def test_empty_intersection_is_an_error(inv: inventory.Inventory) -> None:
    with pytest.raises(PatternError, match="no hosts left"):
        inv.select("canary:&db")


@pytest.mark.parametrize("pattern", ["!", "web:&", "web:!!db", "&!db"])
def test_bad_terms(inv: inventory.Inventory, pattern: str) -> None:
    with pytest.raises(PatternError, match="bad term"):
        inv.select(pattern)


def test_bad_regex(inv: inventory.Inventory) -> None:
    with pytest.raises(PatternError, match="bad regex"):
        inv.select("~app(")


def test_bad_range_in_pattern(inv: inventory.Inventory) -> None:
    with pytest.raises(PatternError, match="after end"):
        inv.select("app[05:01]")


def test_empty_inventory_selects_nothing_loudly() -> None:
    with pytest.raises(PatternError, match="no hosts"):
        inventory.loads("").select(None)


def test_split() -> None:
    assert split("a:!b:&c") == [Term("", "a"), Term("!", "b"), Term("&", "c")]
    assert split("a,,b,") == [Term("", "a"), Term("", "b")]
    assert split("x[1:3]:y") == [Term("", "x[1:3]"), Term("", "y")]
    # With a comma, ':' is not a separator (room for regexes).
    assert split("~a:b,c") == [Term("", "~a:b"), Term("", "c")]


def test_an_ansible_subscript_of_a_group_is_refused(inv: inventory.Inventory) -> None:
    """Ansible reads web[0:1] as the first two hosts of group web; a range of names would
    select other hosts silently (app[01:02] is app02, app03 in Ansible when app is a group)."""
    for pattern in ("web[0:1]", "web[1]", "web[-1]", "db[1-2]", "web[:3]"):
        with pytest.raises(PatternError, match="Ansible subscript") as caught:
            inv.select(pattern)
        assert "app[01:05]" in str(caught.value.hint)
    # Not a group: a range or a glob class of names, as before.
    assert names(inv, "app[02:03]") == ["app02", "app03"]
    assert names(inv, "pg0[1-2]a") == ["pg01a", "pg02a"]
