"""How to warm exactly the pages asked for: pread with readahead off, vmtouch -t -p, or
posix_fadvise(WILLNEED) -- measured on this machine's real page cache.

A 64 MiB file of random bytes, synced and evicted; a random set of page runs (about 10% of
the file, runs of 1-32 pages) is warmed by each method in turn (evicting in between), and the
pages that became resident are counted with mincore right after the method returned and again
0.5 s later (WILLNEED is asynchronous). Reported: pages wanted, pages resident after, extra
pages (read but not wanted), missing pages, time. `opskit cache warm` uses the first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import write_section

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")
SIZE = 64 << 20


def resident(path: Path) -> set[int]:
    out = subprocess.run([sys.executable, str(ROOT / "opskit/remote/page_map.py"),
                          str(path.parent)], capture_output=True, text=True, check=True)
    f = json.loads(out.stdout)["files"][path.name]
    return {a + i for a, n in f["resident"] for i in range(n)}


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def plan(seed: int) -> list[list[int]]:
    r = random.Random(seed)
    pages, want, out, used = SIZE // PAGE, SIZE // PAGE // 10, [], set()
    while sum(n for _, n in out) < want:
        n = r.randint(1, 32)
        a = r.randrange(0, pages - n)
        if any(a - 1 <= b + m and b - 1 <= a + n for b, m in used):
            continue  # keep runs apart, so extra pages are visible as extra
        used.add((a, n))
        out.append([a, n])
    return sorted(out)


def by_pread(path: Path, ranges: list[list[int]]) -> None:
    doc = json.dumps({"root": str(path.parent), "files": [[path.name, ranges]]})
    subprocess.run([sys.executable, str(ROOT / "opskit/remote/warm_pages.py")], input=doc,
                   text=True, capture_output=True, check=True)


def by_vmtouch(path: Path, ranges: list[list[int]]) -> None:
    for a, n in ranges:  # vmtouch -p takes one byte range per run
        subprocess.run(["vmtouch", "-q", "-t", "-p", f"{a * PAGE}-{(a + n) * PAGE}", str(path)],
                       check=True)


def by_willneed(path: Path, ranges: list[list[int]]) -> None:
    fd = os.open(path, os.O_RDONLY)
    for a, n in ranges:
        os.posix_fadvise(fd, a * PAGE, n * PAGE, os.POSIX_FADV_WILLNEED)
    os.close(fd)


METHODS = {"pread, FADV_RANDOM (opskit)": by_pread, "vmtouch -t -p per run": by_vmtouch,
           "posix_fadvise WILLNEED": by_willneed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="opskit-bench-cache-") as d:
        path = Path(d) / "data.bin"
        with open(path, "wb") as fh:
            fh.write(random.Random(1).randbytes(SIZE))
            fh.flush()
            os.fsync(fh.fileno())
        rows = {m: [] for m in METHODS}
        for i in range(args.repeat):
            ranges = plan(i)
            want = {a + k for a, n in ranges for k in range(n)}
            for name, fn in METHODS.items():
                evict(path)
                assert len(resident(path)) < 16, "eviction did not work"
                t0 = time.perf_counter()
                fn(path, ranges)
                secs = time.perf_counter() - t0
                now = resident(path)
                time.sleep(0.5)
                later = resident(path)
                rows[name].append((len(want), len(now & want), len(later - want),
                                   len(want - later), secs))
        evict(path)
    write_section(args.out, report(rows, args.repeat))


def report(rows: dict[str, list[tuple[int, int, int, int, float]]], repeat: int) -> str:
    med = statistics.median
    lines = [
        "## Cache: which way of warming reads exactly the pages asked for", "",
        "A 64 MiB file of random bytes on this machine's disk, synced and evicted; a random "
        "set of page runs (10% of the file, runs of 1-32 pages, kept apart) warmed by each "
        "method, evicting in between; residency counted with mincore at once and 0.5 s later. "
        f"Medians of {repeat} runs with different page sets. `bench/cache.py`.", "",
        "| method | pages wanted | resident when it returned | extra pages (not wanted) | "
        "missing pages | seconds |", "|---|---:|---:|---:|---:|---:|",
    ]
    for name, rs in rows.items():
        lines.append(f"| {name} | {med(r[0] for r in rs):.0f} | {med(r[1] for r in rs):.0f} | "
                     f"{med(r[2] for r in rs):.0f} | {med(r[3] for r in rs):.0f} | "
                     f"{med(r[4] for r in rs):.3f} |")
    lines += ["", "Extra pages are cold pages read anyway (readahead or read-around): they cost "
              "I/O and evict someone else's pages. `opskit cache warm` uses the method with "
              "none, which is also synchronous (the match is measured when it returns).", "",
              f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
