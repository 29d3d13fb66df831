"""Sorted, disjoint page ranges ``[[first, count], ...]`` (the maps' run-length form)."""

from __future__ import annotations

from collections.abc import Iterable

Ranges = list[list[int]]


def _spans(r: Iterable[list[int]]) -> list[tuple[int, int]]:
    return [(a, a + n) for a, n in r if n > 0]


def _back(spans: Iterable[tuple[int, int]]) -> Ranges:
    return [[a, b - a] for a, b in spans if b > a]


def count(r: Ranges) -> int:
    return sum(n for _, n in r)


def intersect(x: Ranges, y: Ranges) -> Ranges:
    a, b = _spans(x), _spans(y)
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return _back(out)


def subtract(x: Ranges, y: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    b = _spans(y)
    j = 0
    for lo, hi in _spans(x):
        cur = lo
        while j < len(b) and b[j][1] <= cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] < hi:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < hi:
            out.append((cur, hi))
    return _back(out)


def clamp(r: Ranges, pages: int) -> Ranges:
    """Only the pages below ``pages`` (a file that shrank)."""
    return _back((a, min(b, pages)) for a, b in _spans(r) if a < pages)


def take(r: Ranges, n: int) -> Ranges:
    """The first ``n`` pages of the ranges."""
    out: Ranges = []
    for a, c in r:
        if n <= 0:
            break
        out.append([a, min(c, n)])
        n -= min(c, n)
    return out
