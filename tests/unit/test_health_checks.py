"""Thresholds, Nagios statuses and the checks over a synthetic sample."""

from __future__ import annotations

from typing import Any

import pytest

from opskit.errors import InventoryError, UsageError
from opskit.health import checks as ck


def sample(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cpu_count": 4, "cpu_percent": 10.0, "load": [1.0, 1.0, 1.0],
        "memory": {"total": 8 << 30, "available": 6 << 30, "used": 2 << 30, "percent": 25.0},
        "swap": {"total": 0, "used": 0, "percent": 0.0},
        "disks": [{"mount": "/", "percent": 50.0, "inodes_percent": 10.0},
                  {"mount": "/data", "percent": 85.0, "inodes_percent": None}],
        "disk_io": [{"device": "sda", "busy_percent": 5.0}],
        "net": [{"nic": "eth0", "errin_s": 0, "errout_s": 0, "dropin_s": 0, "dropout_s": 0}],
        "fds": {"open": 100, "max": 1000, "percent": 10.0},
        "fd_worst": {"pid": 7, "name": "pg", "open": 950, "limit": 1024, "percent": 92.8},
    }
    base.update(over)
    return base


def by_label(checks: list[ck.Check]) -> dict[str, ck.Check]:
    return {c.label: c for c in checks}


def test_levels_and_worst_order() -> None:
    assert ck.level(79, 80, 90) == ck.NAGIOS_OK
    assert ck.level(80, 80, 90) == ck.NAGIOS_WARNING
    assert ck.level(95, 80, None) == ck.NAGIOS_WARNING
    assert ck.level(90, 80, 90) == ck.NAGIOS_CRITICAL
    assert ck.worst([]) == ck.NAGIOS_OK
    assert ck.worst([ck.NAGIOS_OK, ck.NAGIOS_WARNING, ck.NAGIOS_UNKNOWN]) == ck.NAGIOS_UNKNOWN
    # A known CRITICAL is never hidden behind an UNKNOWN.
    worst = ck.worst([ck.NAGIOS_UNKNOWN, ck.NAGIOS_CRITICAL, ck.NAGIOS_WARNING])
    assert worst == ck.NAGIOS_CRITICAL


def test_evaluate_flags_full_disk_and_fd_hungry_process() -> None:
    got = by_label(ck.evaluate(sample(), ck.Thresholds()))
    assert got["disk_percent /data"].status == ck.NAGIOS_WARNING
    assert got["disk_percent /"].status == ck.NAGIOS_OK
    assert "inode_percent /data" not in got  # a filesystem without inode counts
    assert got["process_fd_percent pg[7]"].status == ck.NAGIOS_CRITICAL
    assert got["load_per_cpu"].value == 0.25
    assert "swap_percent" not in got  # no swap configured: nothing to judge


def test_working_set_entries_and_unknown_when_not_measurable() -> None:
    ws = [{"service": "postgres", "percent_of_ram": 120.0, "detail": "9 GiB"},
          {"service": "redis", "error": "no INFO"}]
    got = by_label(ck.evaluate(sample(working_set=ws), ck.Thresholds()))
    assert got["working_set_percent postgres"].status == ck.NAGIOS_CRITICAL
    assert got["working_set_percent redis"].status == ck.NAGIOS_UNKNOWN


def test_overrides_from_vars_then_flags() -> None:
    t = ck.from_vars({"health": {"disk_percent": {"warn": 90, "crit": 95}}}, "db1")
    assert t.get("disk_percent") == (90.0, 95.0)
    t2 = t.with_overrides(ck.parse_overrides(["disk_percent=off"], "--warn"),
                          ck.parse_overrides(["load_per_cpu=0.1"], "--crit"))
    assert t2.get("disk_percent") == (None, 95.0)
    assert t2.get("load_per_cpu")[1] == 0.1
    got = by_label(ck.evaluate(sample(), t2))
    assert got["disk_percent /data"].status == ck.NAGIOS_OK
    assert got["load_per_cpu"].status == ck.NAGIOS_CRITICAL


@pytest.mark.parametrize("cfg", [
    {"health": {"disk_pct": {"warn": 1}}},
    {"health": {"disk_percent": 80}},
    {"health": {"disk_percent": {"warn": "high"}}},
    {"health": ["disk_percent"]},
])
def test_bad_inventory_thresholds(cfg: dict[str, Any]) -> None:
    with pytest.raises(InventoryError):
        ck.from_vars(cfg, "db1")


def test_bad_flags_name_close_matches() -> None:
    with pytest.raises(UsageError, match="unknown health threshold") as exc:
        ck.parse_overrides(["disk_percnt=3"], "--warn")
    assert "disk_percent" in (exc.value.hint or "")
    with pytest.raises(UsageError):
        ck.parse_overrides(["disk_percent"], "--warn")
    with pytest.raises(UsageError):
        ck.parse_overrides(["disk_percent=lots"], "--crit")


def test_status_line_is_nagios_plugin_output() -> None:
    checks = ck.evaluate(sample(), ck.Thresholds())
    line = ck.status_line("HEALTH", checks)
    assert line.startswith("HEALTH CRITICAL - process_fd_percent pg[7] 92.8 (>= 90)")
    assert "| " in line and "'disk_percent_/data'=85;80;90" in line
