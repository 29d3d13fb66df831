"""Run on a host (stdlib only): one health sample of the machine, as JSON on stdout.

argv: INTERVAL [TOP_N]
Reads /proc and statvfs only, because opskit (and psutil) is not installed on targets: CPU
and load, memory and swap, usage and inodes per mounted filesystem, disk I/O and network
error rates over INTERVAL seconds, system and per-process open file descriptors, and the
top processes by CPU and RSS. The JSON has the same shape as opskit.health.local's psutil
sample, so one set of checks judges both.
"""

import json
import os
import sys
import time

PSEUDO_FS = {
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore",
    "ramfs", "rpc_pipefs", "securityfs", "squashfs", "sysfs", "tmpfs", "tracefs", "fuse.lxcfs",
    "fuse.gvfsd-fuse", "fuse.portal", "nfsd", "selinuxfs",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def read(path):
    with open(path) as fh:
        return fh.read()


def cpu_times():
    v = [int(x) for x in read("/proc/stat").splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is already inside user)
    total = sum(v[:8])
    return total, v[3] + (v[4] if len(v) > 4 else 0)


def meminfo():
    out = {}
    for line in read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0]) * 1024
    return out


def diskstats():
    out = {}
    for line in read("/proc/diskstats").splitlines():
        f = line.split()
        if len(f) < 14 or f[2].startswith("ram"):
            continue
        out[f[2]] = (int(f[3]), int(f[5]) * 512, int(f[7]), int(f[9]) * 512, int(f[12]))
    return out


def netdev():
    out = {}
    for line in read("/proc/net/dev").splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = [int(x) for x in rest.split()]
        out[name.strip()] = {"errin": f[2], "dropin": f[3], "errout": f[10], "dropout": f[11]}
    return out


def proc_ticks():
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = read(f"/proc/{pid}/stat")
        except OSError:
            continue
        f = stat[stat.rfind(")") + 2:].split()
        out[int(pid)] = int(f[11]) + int(f[12])
    return out


def proc_info(pid):
    comm = read(f"/proc/{pid}/comm").strip()
    rss = int(read(f"/proc/{pid}/statm").split()[1]) * PAGE
    return comm, rss


def fd_limit(pid):
    for line in read(f"/proc/{pid}/limits").splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return None if soft == "unlimited" else int(soft)
    return None


def disks():
    out, seen = [], set()
    for line in read("/proc/self/mounts").splitlines():
        dev, mount, fstype = line.split()[:3]
        mount = mount.replace("\\040", " ")
        if fstype in PSEUDO_FS:
            continue
        try:
            st_dev = os.stat(mount).st_dev
            vfs = os.statvfs(mount)
        except OSError:
            continue
        if st_dev in seen or vfs.f_blocks == 0:
            continue  # bind mounts show the same filesystem again
        seen.add(st_dev)
        total = vfs.f_blocks * vfs.f_frsize
        free = vfs.f_bavail * vfs.f_frsize
        used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
        inodes_used = vfs.f_files - vfs.f_ffree
        out.append({
            "mount": mount, "device": dev, "fstype": fstype, "total": total, "used": used,
            "free": free,
            # like df and psutil: used over what non-root users can have
            "percent": round(100.0 * used / max(1, used + free), 1),
            "inodes": vfs.f_files, "inodes_used": inodes_used,
            "inodes_percent": round(100.0 * inodes_used / vfs.f_files, 1) if vfs.f_files else None,
        })
    return out


def fds():
    allocated, unused, limit = (int(x) for x in read("/proc/sys/fs/file-nr").split())
    return {"open": allocated - unused, "max": limit,
            "percent": round(100.0 * (allocated - unused) / max(1, limit), 2)}


def fd_worst():
    worst = None
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            n = len(os.listdir(f"/proc/{pid}/fd"))
            limit = fd_limit(int(pid))
            name = read(f"/proc/{pid}/comm").strip()
        except OSError:
            continue
        if not limit:
            continue
        pct = 100.0 * n / limit
        if worst is None or pct > worst["percent"]:
            worst = {"pid": int(pid), "name": name, "open": n, "limit": limit,
                     "percent": round(pct, 2)}
    return worst


def rates(a, b, seconds):
    return {k: round((b[k] - a[k]) / seconds, 2) for k in b}


def main():
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    top_n = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    t0 = time.monotonic()
    c0, d0, n0, p0 = cpu_times(), diskstats(), netdev(), proc_ticks()
    time.sleep(max(interval, 0.05))
    c1, d1, n1, p1 = cpu_times(), diskstats(), netdev(), proc_ticks()
    dt = time.monotonic() - t0
    busy_total = (c1[0] - c0[0]) or 1
    cpu_percent = round(100.0 * (busy_total - (c1[1] - c0[1])) / busy_total, 1)
    procs = []
    for pid, ticks in p1.items():
        try:
            name, rss = proc_info(pid)
        except OSError:
            continue
        pct = 100.0 * (ticks - p0.get(pid, ticks)) / CLK_TCK / dt
        procs.append({"pid": pid, "name": name, "cpu_percent": round(pct, 1), "rss": rss})
    io = []
    for name, b in sorted(d1.items()):
        a = d0.get(name, b)
        if b[0] + b[2] == 0:
            continue
        io.append({"device": name, "reads_s": round((b[0] - a[0]) / dt, 2),
                   "read_bytes_s": round((b[1] - a[1]) / dt),
                   "writes_s": round((b[2] - a[2]) / dt, 2),
                   "write_bytes_s": round((b[3] - a[3]) / dt),
                   "busy_percent": round(min(100.0, (b[4] - a[4]) / (10.0 * dt)), 1)})
    net = []
    for nic, b in sorted(n1.items()):
        r = rates(n0.get(nic, b), b, dt)
        net.append(dict({"nic": nic}, **b, **{k + "_s": v for k, v in r.items()}))
    m = meminfo()
    total, avail = m["MemTotal"], m.get("MemAvailable", m.get("MemFree", 0))
    swap_total, swap_used = m.get("SwapTotal", 0), m.get("SwapTotal", 0) - m.get("SwapFree", 0)
    doc = {
        "source": "probe",
        "hostname": os.uname()[1],
        "interval": round(dt, 3),
        "uptime": float(read("/proc/uptime").split()[0]),
        "cpu_count": os.cpu_count() or 1,
        "cpu_percent": cpu_percent,
        "load": list(os.getloadavg()),
        "memory": {"total": total, "available": avail, "used": total - avail,
                   "cached": m.get("Cached", 0),
                   "percent": round(100.0 * (total - avail) / max(1, total), 1)},
        "swap": {"total": swap_total, "used": swap_used,
                 "percent": round(100.0 * swap_used / swap_total, 1) if swap_total else 0.0},
        "disks": disks(),
        "disk_io": io,
        "net": net,
        "fds": fds(),
        "fd_worst": fd_worst(),
        "top_cpu": sorted(procs, key=lambda p: -p["cpu_percent"])[:top_n],
        "top_rss": sorted(procs, key=lambda p: -p["rss"])[:top_n],
    }
    sys.stdout.write(json.dumps(doc))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
