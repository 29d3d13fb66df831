"""A health sample of the machine opskit runs on, with psutil (the operator side only).

The shape matches opskit/onhost/health_probe.py's JSON, key for key, so the same checks apply.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import psutil

# Filesystems that are not disks: same list as the probe, so both sides see the same mounts.
PSEUDO_FS = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore",
    "ramfs", "rpc_pipefs", "securityfs", "squashfs", "sysfs", "tmpfs", "tracefs", "fuse.lxcfs",
    "fuse.gvfsd-fuse", "fuse.portal", "nfsd", "selinuxfs",
})


def _disks() -> list[dict[str, Any]]:
    out, seen = [], set()
    # all=True: psutil's own filter drops overlay, i.e. a container's root disk.
    for part in psutil.disk_partitions(all=True):
        if part.fstype in PSEUDO_FS:
            continue
        try:
            st_dev = os.stat(part.mountpoint).st_dev
            usage = psutil.disk_usage(part.mountpoint)
            vfs = os.statvfs(part.mountpoint)
        except OSError:
            continue
        if st_dev in seen or usage.total == 0:
            continue  # bind mounts show the same filesystem again
        seen.add(st_dev)
        inodes_used = vfs.f_files - vfs.f_ffree
        out.append({
            "mount": part.mountpoint, "device": part.device, "fstype": part.fstype,
            "total": usage.total, "used": usage.used, "free": usage.free,
            "percent": round(usage.percent, 1),
            "inodes": vfs.f_files, "inodes_used": inodes_used,
            "inodes_percent": round(100.0 * inodes_used / vfs.f_files, 1) if vfs.f_files else None,
        })
    return out


def _fds() -> dict[str, Any] | None:
    # psutil has no system-wide count of open files; Linux keeps it here.
    try:
        with open("/proc/sys/fs/file-nr") as fh:
            allocated, unused, limit = (int(x) for x in fh.read().split())
    except (OSError, ValueError):
        return None
    return {"open": allocated - unused, "max": limit,
            "percent": round(100.0 * (allocated - unused) / max(1, limit), 2)}


def _fd_worst(procs: list[psutil.Process]) -> dict[str, Any] | None:
    worst: dict[str, Any] | None = None
    for p in procs:
        try:
            n = p.num_fds()
            soft = p.rlimit(psutil.RLIMIT_NOFILE)[0]
            name = p.name()
        except (psutil.Error, OSError):
            continue
        if soft <= 0:  # RLIM_INFINITY
            continue
        pct = 100.0 * n / soft
        if worst is None or pct > worst["percent"]:
            worst = {"pid": p.pid, "name": name, "open": n, "limit": soft, "percent": round(pct, 2)}
    return worst


def _busy_ms(a: Any, b: Any) -> float:
    return float(getattr(b, "busy_time", 0) - getattr(a, "busy_time", 0))  # Linux only


def collect(interval: float = 1.0, top_n: int = 5, *, processes: bool = True) -> dict[str, Any]:
    """One sample; rates (CPU, disk I/O, network errors, per-process CPU) over ``interval`` s.

    ``interval`` 0 skips the wait: rates are then absent (Munin's fetch needs no rates).
    """
    t0 = time.monotonic()
    procs = list(psutil.process_iter()) if processes else []
    psutil.cpu_percent(None)
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    d0 = psutil.disk_io_counters(perdisk=True) or {}
    n0 = psutil.net_io_counters(pernic=True)
    if interval > 0:
        time.sleep(interval)
    dt = max(time.monotonic() - t0, 1e-3)
    cpu_percent = psutil.cpu_percent(None) if interval > 0 else None
    d1 = psutil.disk_io_counters(perdisk=True) or {}
    n1 = psutil.net_io_counters(pernic=True)
    rows = []
    for p in procs:
        try:
            with p.oneshot():
                rows.append({"pid": p.pid, "name": p.name(),
                             "cpu_percent": round(p.cpu_percent(None), 1),
                             "rss": p.memory_info().rss})
        except psutil.Error:
            continue
    io = []
    for name, b in sorted(d1.items()):
        a = d0.get(name, b)
        if name.startswith("ram") or b.read_count + b.write_count == 0:
            continue
        io.append({"device": name, "reads_s": round((b.read_count - a.read_count) / dt, 2),
                   "read_bytes_s": round((b.read_bytes - a.read_bytes) / dt),
                   "writes_s": round((b.write_count - a.write_count) / dt, 2),
                   "write_bytes_s": round((b.write_bytes - a.write_bytes) / dt),
                   "busy_percent": round(min(100.0, _busy_ms(a, b) / (10 * dt)), 1)})
    net = []
    for nic, b in sorted(n1.items()):
        a = n0.get(nic, b)
        entry: dict[str, Any] = {"nic": nic}
        for k in ("errin", "dropin", "errout", "dropout"):
            entry[k] = getattr(b, k)
            entry[k + "_s"] = round((getattr(b, k) - getattr(a, k)) / dt, 2)
        net.append(entry)
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    return {
        "source": "psutil",
        "hostname": socket.gethostname(),
        "interval": round(dt, 3) if interval > 0 else 0.0,
        "uptime": round(time.time() - psutil.boot_time(), 2),
        "cpu_count": psutil.cpu_count() or 1,
        "cpu_percent": cpu_percent,
        "load": list(psutil.getloadavg()),
        "memory": {"total": vm.total, "available": vm.available, "used": vm.total - vm.available,
                   "cached": getattr(vm, "cached", 0),
                   "percent": round(100.0 * (vm.total - vm.available) / max(1, vm.total), 1)},
        "swap": {"total": sw.total, "used": sw.used, "percent": round(sw.percent, 1)},
        "disks": _disks(),
        "disk_io": io if interval > 0 else [],
        "net": net if interval > 0 else [],
        "fds": _fds(),
        "fd_worst": _fd_worst(procs) if processes else None,
        "top_cpu": sorted(rows, key=lambda r: -r["cpu_percent"])[:top_n],
        "top_rss": sorted(rows, key=lambda r: -r["rss"])[:top_n],
    }
