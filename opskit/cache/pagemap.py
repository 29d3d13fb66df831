"""The residency map of a directory (as ``opskit/onhost/page_map.py`` prints it), compared
with another host's, and the plan to warm one from the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opskit.cache import ranges as rg


@dataclass
class PageMap:
    host: str
    root: str
    page_size: int
    files: dict[str, dict[str, Any]]  # relpath -> {size, pages, resident}
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, host: str, doc: dict[str, Any]) -> PageMap:
        return cls(host, doc["root"], int(doc["page_size"]), doc["files"], doc.get("skipped", {}))

    def to_doc(self) -> dict[str, Any]:
        return {"host": self.host, "root": self.root, "page_size": self.page_size,
                "totals": self.totals(), "files": self.files, "skipped": self.skipped}

    def resident(self, rel: str) -> rg.Ranges:
        f = self.files.get(rel)
        return f["resident"] if f else []

    def totals(self) -> dict[str, int]:
        pages = sum(f["pages"] for f in self.files.values())
        res = sum(rg.count(f["resident"]) for f in self.files.values())
        return {"files": len(self.files), "pages": pages, "resident_pages": res,
                "bytes": sum(f["size"] for f in self.files.values()),
                "resident_bytes": sum(resident_bytes(f, self.page_size)
                                      for f in self.files.values())}


def resident_bytes(f: dict[str, Any], page_size: int) -> int:
    """Bytes of the file in the page cache: at most its size.

    A file's last page is mostly past its end; counting it whole made a fully resident set
    read more than 100 % of its size.
    """
    pages, size = f["pages"], f["size"]
    resident = rg.clamp(f["resident"], pages)
    total = rg.count(resident) * page_size
    if pages and any(a <= pages - 1 < a + n for a, n in resident):
        total -= pages * page_size - size
    return max(0, min(total, size))


@dataclass
class FileCompare:
    path: str
    a_pages: int
    b_pages: int
    both: int

    @property
    def jaccard(self) -> float:
        union = self.a_pages + self.b_pages - self.both
        return 1.0 if union == 0 else self.both / union


def compare(a: PageMap, b: PageMap) -> tuple[list[FileCompare], FileCompare]:
    """Per file and in total: resident pages on each side and on both (Jaccard)."""
    rows = []
    for rel in sorted(set(a.files) | set(b.files)):
        ra, rb = a.resident(rel), b.resident(rel)
        rows.append(FileCompare(rel, rg.count(ra), rg.count(rb), rg.count(rg.intersect(ra, rb))))
    total = FileCompare("TOTAL", sum(r.a_pages for r in rows), sum(r.b_pages for r in rows),
                        sum(r.both for r in rows))
    return rows, total


@dataclass
class WarmPlan:
    files: list[tuple[str, rg.Ranges]]  # hottest first
    wanted_pages: int  # resident on the source
    already_pages: int  # of those, already resident on the destination
    to_read_pages: int  # what the plan reads (after --max-bytes)
    missing_files: list[str]  # on the source, not (or not as large) on the destination
    capped: bool

    def to_doc(self, page_size: int) -> dict[str, Any]:
        return {"wanted_pages": self.wanted_pages, "already_pages": self.already_pages,
                "to_read_pages": self.to_read_pages,
                "to_read_bytes": self.to_read_pages * page_size,
                "files": len(self.files), "missing_files": self.missing_files,
                "capped_by_max_bytes": self.capped}


def plan_warm(src: PageMap, dst: PageMap, max_bytes: int | None = None) -> WarmPlan:
    """Pages resident on ``src`` and not on ``dst``, hottest files first (the larger share of
    the file resident on the source), up to ``max_bytes``."""
    wanted = already = 0
    todo: list[tuple[float, int, str, rg.Ranges]] = []
    missing = []
    for rel, f in src.files.items():
        res = f["resident"]
        if not res:
            continue
        wanted += rg.count(res)
        d = dst.files.get(rel)
        if d is None:
            missing.append(rel)
            continue
        have = rg.intersect(res, d["resident"])
        already += rg.count(have)
        need = rg.clamp(rg.subtract(res, d["resident"]), d["pages"])
        if need:
            heat = rg.count(res) / max(1, f["pages"])
            todo.append((-heat, -rg.count(res), rel, need))
    todo.sort()
    budget = None if max_bytes is None else max_bytes // src.page_size
    files, total, capped = [], 0, False
    for _h, _c, rel, need in todo:
        n = rg.count(need)
        if budget is not None and total + n > budget:
            need = rg.take(need, budget - total)
            n = rg.count(need)
            capped = True
        if n:
            files.append((rel, need))
            total += n
        if capped:
            break
    return WarmPlan(files, wanted, already, total, sorted(missing), capped)
