"""The ``db`` hosts' /data: a real XFS on a loop device, mounted in the host's namespace only.

Each db host has a sparse image ``<state>/hosts/<name>/data.img`` (IMAGE_SIZE, made with
``truncate`` semantics and ``mkfs.xfs -f -q`` once, into a temp file renamed into place, so a
crash never leaves a half-formatted image). The ``data-xfs`` service mounts it with
``mount -o loop -t xfs IMAGE /data`` *inside* the host's namespace: the mount is private to
that host, and ``-o loop`` sets autoclear, so the loop device goes away with its last mount
(``stop``, or the namespace dying).

The host's /data is already a private bind mount of ``<state>/hosts/<name>/data`` (hosts.py
MOUNTS); the XFS goes *on top* of it. So /data is private even while the XFS is not mounted,
``stat -f /data``, ``df /data`` and ``fsfreeze /data`` see the XFS (the topmost mount), and
``findmnt /data`` lists both (the bind first, the XFS second).

``stop`` thaws /data first (``fsfreeze -u``; "not frozen" is fine), so no writer stays
blocked, then unmounts the XFS (only if the topmost /data is this host's image). Health is
"the topmost /data is an rw XFS on a loop device backed by this host's image"; it never
writes there (a writer on a frozen /data would block, and status must not hang).

Loop devices are global: ``lab_loops`` lists those whose backing file is in a state dir,
``detach_unmounted`` detaches the ones no mount namespace uses (``up`` runs it for stale
devices of a killed session), ``release`` waits for autoclear after ``down`` and detaches
what is left.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from dataclasses import dataclass

from opskit.errors import LabError
from opskit.lab import procs
from opskit.lab.models import LabHost
from opskit.lab.services import LabContext, register
from opskit.runner import wait as waiting  # `wait` is a parameter name here

NAME = "data-xfs"
ROLE = "db"
MOUNT = "/data"
IMAGE = "data.img"  # in the host's state dir
# XFS (xfsprogs 6.x) refuses filesystems below 300 MiB; 512 leaves PostgreSQL (db1-3: ~105 MB
# at start, WAL up to max_wal_size + max_slot_wal_keep_size) room. Sparse: costs what is used.
IMAGE_SIZE = 512 * 1024 * 1024
TOOLS = ("mkfs.xfs", "losetup", "fsfreeze", "mount", "umount")
XFS_MAGIC = b"XFSB"


def image_path(host_dir: pathlib.Path) -> pathlib.Path:
    return host_dir / IMAGE


def ensure_image(host_dir: pathlib.Path) -> pathlib.Path:
    """The host's XFS image; created and formatted only when it is not an XFS yet."""
    image = image_path(host_dir)
    if _is_xfs(image):
        return image
    tmp = host_dir / f".{IMAGE}.tmp"
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as fh:
        fh.truncate(IMAGE_SIZE)  # sparse, as `truncate -s`
    done = subprocess.run(["mkfs.xfs", "-f", "-q", str(tmp)], capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise LabError(f"mkfs.xfs of {image} failed: {done.stderr.strip()}",
                       hint="apt-get install -y xfsprogs")  # fmt: skip
    os.replace(tmp, image)
    return image


def _is_xfs(path: pathlib.Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == XFS_MAGIC
    except OSError:
        return False


# ---------------------------------------------------------------- the service


@dataclass
class _Mount:
    """One line of /proc/self/mountinfo."""

    dev: str  # major:minor
    point: str
    options: str
    fstype: str
    source: str
    super_options: str


def _top_mount(host: LabHost, ctx: LabContext) -> _Mount | None:
    """The topmost mount on /data in the host's namespace (None if nothing is mounted)."""
    done = ctx.run(host, ["cat", "/proc/self/mountinfo"])
    if done.returncode != 0:
        raise LabError(f"cannot read the mounts of {host.name}: {done.stderr.strip()}")
    top = None
    for mount in parse_mountinfo(done.stdout):
        if mount.point == MOUNT:
            top = mount  # later lines are mounted on top of earlier ones
    return top


def parse_mountinfo(text: str) -> list[_Mount]:
    found = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if sep and len(fields) >= 6 and len(tail) >= 3:
            found.append(_Mount(fields[2], _unescape(fields[4]), fields[5], tail[0],
                                _unescape(tail[1]), tail[2]))  # fmt: skip
    return found


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _is_ours(mount: _Mount | None, image: pathlib.Path) -> bool:
    if mount is None or mount.fstype != "xfs" or not mount.source.startswith("/dev/loop"):
        return False
    backing = backing_file(os.path.basename(mount.source))
    return backing is not None and backing.removesuffix(" (deleted)") == str(image)


class DataFsService:
    name = NAME
    roles = (ROLE,)
    start_timeout = 15.0

    def prepare(self, ctx: LabContext) -> None:
        missing = [tool for tool in TOOLS if not shutil.which(tool)]
        if missing:
            raise LabError(f"the lab's db hosts need {', '.join(missing)}",
                           hint="apt-get install -y xfsprogs util-linux")  # fmt: skip

    def start(self, host: LabHost, ctx: LabContext) -> None:
        image = ensure_image(host.state_dir)
        if _is_ours(_top_mount(host, ctx), image):
            return  # mounted (health failed for another reason: ro?); never stack a second one
        detach_unmounted(image, wait=2.0)  # a loop a dead namespace of this host left
        done = ctx.run(host, ["mount", "-o", "loop", "-t", "xfs", str(image), MOUNT])
        if done.returncode != 0:
            raise LabError(f"mounting {image} on {host.name}:{MOUNT} failed: "
                           f"{done.stderr.strip()}", hint="is the loop driver there? "
                           "(ls /dev/loop-control; losetup -a)")  # fmt: skip

    def stop(self, host: LabHost, ctx: LabContext) -> None:
        image = image_path(host.state_dir)
        for _ in range(3):  # normally once; more only if someone stacked another mount of it
            if not _is_ours(_top_mount(host, ctx), image):
                return
            # Thaw first: a frozen /data cannot be unmounted and blocks every writer.
            # "Invalid argument" just means it was not frozen.
            ctx.run(host, ["fsfreeze", "-u", MOUNT])
            if ctx.run(host, ["umount", MOUNT]).returncode != 0:
                # Busy (a process has files open there): detach it now; the loop device
                # goes when the last user dies, i.e. when down kills the namespace.
                ctx.run(host, ["umount", "-l", MOUNT])

    def health(self, host: LabHost, ctx: LabContext) -> bool:
        top = _top_mount(host, ctx)
        if top is None or not _is_ours(top, image_path(host.state_dir)):
            return False
        return "rw" in top.options.split(",") and "rw" in top.super_options.split(",")


register(DataFsService())


# ---------------------------------------------------------------- loop devices


def backing_file(loop: str) -> str | None:
    """The backing file of /dev/<loop> (e.g. "loop3"), None if it is not attached."""
    try:
        return pathlib.Path(f"/sys/block/{loop}/loop/backing_file").read_text().strip()
    except OSError:
        return None


def lab_loops(prefix: pathlib.Path | str) -> dict[str, str]:
    """Attached loop devices whose backing file is ``prefix`` or under it: {"loop3": file}.

    The file may be shown with " (deleted)" (its host dir was removed while attached).
    """
    base = str(prefix)
    found = {}
    for entry in sorted(pathlib.Path("/sys/block").glob("loop*")):
        backing = backing_file(entry.name)
        if backing is None:
            continue
        path = backing.removesuffix(" (deleted)")
        if path == base or path.startswith(base.rstrip("/") + "/"):
            found[entry.name] = backing
    return found


def dev_number(loop: str) -> str | None:
    try:
        return pathlib.Path(f"/sys/block/{loop}/dev").read_text().strip()
    except OSError:
        return None


def mounted_devices() -> set[str]:
    """major:minor of every mounted device, in every mount namespace on the machine."""
    seen = set()
    for pids in procs.ns_table().values():
        for pid in pids:  # one readable member per namespace is enough
            try:
                text = pathlib.Path(f"/proc/{pid}/mountinfo").read_text()
            except OSError:
                continue
            seen.update(m.dev for m in parse_mountinfo(text))
            break
    seen.update(m.dev for m in parse_mountinfo(pathlib.Path("/proc/self/mountinfo").read_text()))
    return seen


def detach_unmounted(prefix: pathlib.Path | str, *, wait: float = 0.0) -> list[str]:
    """Detach the loop devices of ``prefix`` that no mount namespace uses; one line each.

    Mounted ones (a running host's /data) are left alone. ``wait``: first give autoclear up
    to that long (a namespace that just died releases its mounts, and with them their loop
    devices, a moment later).
    """
    def probe() -> tuple[bool, dict[str, str]]:
        loops = lab_loops(prefix)
        used = mounted_devices() if loops else set()
        idle = {loop: f for loop, f in loops.items() if dev_number(loop) not in used}
        return not idle, idle  # done once autoclear took every unmounted one

    try:
        waiting.until(probe, what="unmounted lab loop devices to clear", timeout=wait,
                      interval=0.05)
        return []
    except waiting.WaitTimedOut as exc:
        idle = dict(exc.seen)  # type: ignore[call-overload]
    lines = []
    for loop, backing in idle.items():
        done = subprocess.run(["losetup", "-d", f"/dev/{loop}"], capture_output=True, text=True)
        if done.returncode == 0:
            lines.append(f"detached /dev/{loop} ({backing})")
        elif backing_file(loop) is not None:  # not gone in the meantime
            lines.append(f"could not detach /dev/{loop} ({backing}): {done.stderr.strip()}")
    return lines


def release(state_dir: pathlib.Path, *, wait: float = 5.0) -> list[str]:
    """After ``down`` killed the hosts: no loop device of the lab may stay attached.

    Waits for autoclear, detaches the unmounted rest; lines name what is left (a loop device
    still mounted somewhere).
    """
    lines = detach_unmounted(state_dir, wait=wait)
    left = lab_loops(state_dir)
    lines += [f"loop device /dev/{loop} ({f}) is still attached (mounted somewhere?)"
              for loop, f in left.items()]  # fmt: skip
    return lines
