"""`opskit cache` on two lab db hosts holding the same data set under /data/cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from opskit.lab import LabStatus, cache_data

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
SRC, DST, DIR = "db2", "db3", cache_data.ROOT


def opskit(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)


def run_json(inv: Path, *args: str) -> dict[str, Any]:
    proc = opskit(inv, *args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def pages(doc: dict[str, Any]) -> dict[str, set[int]]:
    return {rel: {a + i for a, n in f["resident"] for i in range(n)}
            for rel, f in doc["files"].items()}


def resident(inv: Path, host: str) -> dict[str, set[int]]:
    return pages(run_json(inv, "cache", "map", host, "--path", DIR))


@pytest.fixture
def data(lab: LabStatus) -> Path:
    cache_data.ensure(lab.inventory_path)
    inv = lab.inventory_path
    for h in (SRC, DST):
        assert opskit(inv, "cache", "evict", h, "--path", DIR, "--yes").returncode == 0
    cache_data.warm_random(inv, SRC)
    return inv


def total(p: dict[str, set[int]]) -> int:
    return sum(len(v) for v in p.values())


def test_map_is_page_exact_and_agrees_with_vmtouch(data: Path) -> None:
    doc = run_json(data, "cache", "map", SRC, "--path", DIR)
    assert doc["totals"]["files"] == len(cache_data.spec())
    warmed = {rel: {a + i for a, n in rs for i in range(n)}
              for rel, rs in cache_data.random_plan(7)}
    got = pages(doc)
    # Every page the helper read is resident (the kernel may have dropped a few since).
    hit = sum(len(warmed[r] & got.get(r, set())) for r in warmed)
    assert hit >= 0.97 * sum(len(v) for v in warmed.values())
    assert doc["vmtouch"].startswith(f"vmtouch: {doc['totals']['resident_pages']}/")


def test_warm_matches_the_source_and_reads_only_missing_pages(data: Path) -> None:
    src, before = resident(data, SRC), resident(data, DST)
    missing = sum(len(src[r] - before.get(r, set())) for r in src)
    assert missing > 1000 and total(before) < 0.05 * total(src)
    doc = run_json(data, "cache", "warm", "--from", SRC, "--to", DST, "--path", DIR, "--yes")
    after = resident(data, DST)
    both = sum(len(src[r] & after.get(r, set())) for r in src)
    union = total(src) + total(after) - both
    assert both / union >= 0.98, (both, union)
    newly = total(after) - total(before)
    assert newly <= 1.05 * missing, (newly, missing)
    assert doc["after"]["jaccard"] >= 0.98 and doc["result"]["read_pages"] <= 1.05 * missing


def test_max_bytes_is_honoured(data: Path) -> None:
    before = resident(data, DST)
    doc = run_json(data, "cache", "warm", "--from", SRC, "--to", DST, "--path", DIR,
                   "--max-bytes", "2M", "--yes")
    assert doc["result"]["read_bytes"] <= 2 * 1024 * 1024 and doc["plan"]["capped_by_max_bytes"]
    assert total(resident(data, DST)) - total(before) <= 1.05 * 512


def test_dry_run_reads_nothing(data: Path) -> None:
    before = resident(data, DST)
    proc = opskit(data, "cache", "warm", "--from", SRC, "--to", DST, "--path", DIR, "--dry-run")
    assert proc.returncode == 0 and "dry run" in proc.stdout
    assert total(resident(data, DST)) - total(before) <= 2  # a map reads nothing


def test_compare_reports_jaccard_per_file_and_total(data: Path) -> None:
    doc = run_json(data, "cache", "compare", SRC, DST, "--path", DIR)
    assert doc["total"]["jaccard"] < 0.1 and doc["total"]["only_source_bytes"] > 4_000_000
    assert len(doc["files"]) == len(cache_data.spec())


def _inv_with(lab: LabStatus, tmp_path: Path, host: str, **cache: str) -> Path:
    data = yaml.safe_load(lab.inventory_path.read_text())
    _host_vars(data["all"], host)["cache"] = cache
    inv = tmp_path / "lab.yml"
    inv.write_text(yaml.safe_dump(data))
    return inv


def _host_vars(group: dict[str, Any], host: str) -> dict[str, Any]:
    if host in (group.get("hosts") or {}):
        if group["hosts"][host] is None:
            group["hosts"][host] = {}
        return group["hosts"][host]
    for child in (group.get("children") or {}).values():
        found = _host_vars(child or {}, host) if child else None
        if found is not None:
            return found
    return None  # type: ignore[return-value]


def test_bad_path_missing_tools_and_vanished_files(lab: LabStatus, tmp_path: Path) -> None:
    inv = lab.inventory_path
    proc = opskit(inv, "cache", "map", SRC, "--path", "/data/no-such-dir")
    assert proc.returncode == 2 and "no such directory" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 2 and "hint:" in proc.stderr
    no_vmtouch = _inv_with(lab, tmp_path, DST, vmtouch="/nonexistent/vmtouch")
    proc = opskit(no_vmtouch, "cache", "evict", DST, "--path", DIR, "--yes")
    assert proc.returncode == 2 and "vmtouch not found" in proc.stderr
    no_python = _inv_with(lab, tmp_path, DST, python="/nonexistent/python3")
    proc = opskit(no_python, "cache", "map", DST, "--path", DIR)
    assert proc.returncode == 2 and "python3 not found" in proc.stderr

    # A saved source map, then a file gone from the target: reported, the rest warmed.
    d = "/data/cache-vanish"
    for h in (SRC, DST):
        made = opskit(inv, "exec", "-l", h, "--yes", "--", f"mkdir -p {d} && for f in a b c; do "
                      f"head -c 1048576 /dev/zero > {d}/$f; done && sync && vmtouch -e -q {d}")
        assert made.returncode == 0, made.stdout + made.stderr
    assert opskit(inv, "exec", "-l", SRC, "--yes", "--", f"cat {d}/a {d}/b > /dev/null"
                  ).returncode == 0
    saved = tmp_path / "src.json"
    assert opskit(inv, "cache", "map", SRC, "--path", d, "-o", str(saved)).returncode == 0
    assert opskit(inv, "exec", "-l", DST, "--yes", "--", f"rm {d}/b").returncode == 0
    doc = run_json(inv, "cache", "warm", "--map", str(saved), "--to", DST, "--path", d, "--yes")
    assert doc["plan"]["missing_files"] == ["b"]
    after = pages(run_json(inv, "cache", "map", DST, "--path", d))
    assert len(after["a"]) == 256  # the rest was warmed
    text = opskit(inv, "cache", "warm", "--map", str(saved), "--to", DST, "--path", d, "--yes")
    assert text.returncode == 0 and "skipped" in text.stdout and "b" in text.stdout
    opskit(inv, "exec", "-l", f"{SRC}:{DST}", "--yes", "--", f"rm -rf {d}")
