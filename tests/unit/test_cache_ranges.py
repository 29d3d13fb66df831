"""Page-range arithmetic and warm plans, checked against plain sets of page numbers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from opskit.cache import ranges as rg
from opskit.cache.pagemap import PageMap, compare, plan_warm, resident_bytes


def to_ranges(pages: set[int]) -> rg.Ranges:
    out: rg.Ranges = []
    for p in sorted(pages):
        if out and out[-1][0] + out[-1][1] == p:
            out[-1][1] += 1
        else:
            out.append([p, 1])
    return out


def to_set(r: rg.Ranges) -> set[int]:
    return {a + i for a, n in r for i in range(n)}


page_sets = st.sets(st.integers(0, 300), max_size=120)


@given(page_sets, page_sets)
def test_intersect_and_subtract_match_sets(a: set[int], b: set[int]) -> None:
    ra, rb = to_ranges(a), to_ranges(b)
    assert to_set(rg.intersect(ra, rb)) == a & b
    assert to_set(rg.subtract(ra, rb)) == a - b
    assert rg.count(ra) == len(a)


@given(page_sets, st.integers(0, 320))
def test_clamp_and_take(a: set[int], n: int) -> None:
    r = to_ranges(a)
    assert to_set(rg.clamp(r, n)) == {p for p in a if p < n}
    assert to_set(rg.take(r, n)) == set(sorted(a)[:n])


def pmap(host: str, files: dict[str, tuple[int, set[int]]]) -> PageMap:
    return PageMap.from_doc(host, {"root": "/data", "page_size": 4096, "files": {
        rel: {"size": pages * 4096, "pages": pages, "resident": to_ranges(res)}
        for rel, (pages, res) in files.items()}})


def test_plan_reads_only_missing_pages_hottest_first_within_budget() -> None:
    src = pmap("a", {"hot": (10, set(range(10))), "warm": (100, {1, 2, 3, 50}),
                     "gone": (5, {0})})
    dst = pmap("b", {"hot": (10, {0, 1}), "warm": (100, {2}), "cold": (7, set())})
    plan = plan_warm(src, dst)
    assert [f for f, _ in plan.files] == ["hot", "warm"]  # 100% resident before 4%
    assert to_set(dict(plan.files)["hot"]) == set(range(2, 10))
    assert to_set(dict(plan.files)["warm"]) == {1, 3, 50}
    assert (plan.wanted_pages, plan.already_pages, plan.to_read_pages) == (15, 3, 11)
    assert plan.missing_files == ["gone"]
    capped = plan_warm(src, dst, max_bytes=9 * 4096)
    assert capped.to_read_pages == 9 and capped.capped
    assert [f for f, _ in capped.files] == ["hot", "warm"]


def test_compare_is_jaccard_of_resident_pages() -> None:
    a = pmap("a", {"f": (10, {0, 1, 2, 3})})
    b = pmap("b", {"f": (10, {2, 3, 4, 5})})
    rows, total = compare(a, b)
    assert rows[0].both == 2 and abs(total.jaccard - 2 / 6) < 1e-9


def test_fully_resident_files_of_unaligned_sizes_are_100_percent() -> None:
    # The last page of a 10_000-byte file holds 1_808 bytes, not 4_096.
    pm = PageMap.from_doc("a", {"root": "/data", "page_size": 4096, "files": {
        "base/1": {"size": 10_000, "pages": 3, "resident": [[0, 3]]},
        "base/2": {"size": 1, "pages": 1, "resident": [[0, 1]]},
        "base/3": {"size": 0, "pages": 0, "resident": []}}})
    t = pm.totals()
    assert t["resident_bytes"] == t["bytes"] == 10_001
    assert t["resident_pages"] == t["pages"] == 4


@given(st.integers(0, 40_000), page_sets)
def test_resident_bytes_are_the_resident_pages_bytes_within_the_file(size: int,
                                                                       res: set[int]) -> None:
    page = 4096
    pages = -(-size // page)
    f = {"size": size, "pages": pages, "resident": to_ranges(res)}
    expected = sum(min(size, (p + 1) * page) - p * page for p in res if p < pages)
    assert resident_bytes(f, page) == expected
