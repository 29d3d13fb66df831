"""Host-range expansion: app[01:25], strides, letters, several ranges, errors."""

from __future__ import annotations

import pytest

from opskit.inventory.hostrange import RangeError, expand, has_range


def test_plain_name_is_returned_as_is() -> None:
    assert expand("app01") == ["app01"]


def test_zero_padding_is_kept() -> None:
    names = expand("app[01:25]")
    assert len(names) == 25
    assert names[:3] == ["app01", "app02", "app03"]
    assert names[-1] == "app25"


def test_no_padding_without_leading_zero() -> None:
    assert expand("web[8:11]") == ["web8", "web9", "web10", "web11"]


def test_wide_padding() -> None:
    assert expand("n[098:101]") == ["n098", "n099", "n100", "n101"]


def test_stride() -> None:
    assert expand("app[1:25:5]") == ["app1", "app6", "app11", "app16", "app21"]
    assert expand("app[01:10:4]") == ["app01", "app05", "app09"]


def test_letters() -> None:
    assert expand("db[a:c]") == ["dba", "dbb", "dbc"]
    assert expand("db[A:E:2]") == ["dbA", "dbC", "dbE"]


def test_range_in_the_middle_and_suffix() -> None:
    assert expand("pg[01:03]b.prod") == ["pg01b.prod", "pg02b.prod", "pg03b.prod"]


def test_several_ranges_multiply_in_order() -> None:
    assert expand("r[1:2]-[a:b]") == ["r1-a", "r1-b", "r2-a", "r2-b"]


def test_empty_begin_means_zero() -> None:
    assert expand("x[:2]") == ["x0", "x1", "x2"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("app[5:1]", "after end"),
        ("db[c:a]", "after end"),
        ("app[a:3]", "numbers or both be single letters"),
        ("app[a:C]", "same case"),
        ("app[ab:cd]", "single letters"),
        ("app[01:25", "'[' without ']'"),
        ("app01:25]", "']' without '['"),
        ("app[[1:2]]", "'[' without ']'"),
        ("app[1:5:0]", "stride"),
        ("app[1:5:x]", "stride"),
        ("app[1:2:3:4]", "begin:end[:stride]"),
        ("app[01:100]", "same width"),
        ("app[1]", "not begin:end"),
    ],
)
def test_bad_ranges_name_the_pattern(name: str, why: str) -> None:
    with pytest.raises(RangeError) as err:
        expand(name)
    assert f"'{name}'" in str(err.value)
    assert why in str(err.value)


def test_glob_class_kept_when_asked() -> None:
    assert expand("app0[1-5]", keep_classes=True) == ["app0[1-5]"]
    assert expand("app[01:02]x[1-3]", keep_classes=True) == ["app01x[1-3]", "app02x[1-3]"]


def test_has_range() -> None:
    assert has_range("app[01:05]")
    assert has_range("x[1-2]y[a:b]")
    assert not has_range("app0[1-5]")
    assert not has_range("app01")
    assert not has_range("app[01:05")
