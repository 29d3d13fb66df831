"""A /proc + /sys + /dev tree per ``db`` host, as if its /data were md RAID0 over NVMe EBS.

This kernel has no md driver (and no device-mapper), so a lab host cannot show a real array;
discovery code (``snapshot create``) takes the root of the tree it reads as a parameter, and
each db host gets this tree at ``/etc/opskit-lab/fsroot`` (DISCOVERY_ROOT; on our side
``<state>/hosts/<name>/etc/fsroot``), shaped like the real files of a Nitro instance::

    proc/mounts                          /dev/md0 /data xfs ...  (and a root line)
    sys/block/md0/md/level               raid0
    sys/block/md0/md/raid_disks          4
    sys/block/md0/md/rd<i>            -> dev-nvme<i+1>n1          member order, as the kernel
    sys/block/md0/md/dev-nvme<i+1>n1/    slot (= i), state (in_sync), block -> ../../../nvme<i+1>n1
    sys/block/md0/slaves/nvme<i+1>n1  -> ../../nvme<i+1>n1
    sys/block/nvme<n>n1/device/serial    vol0abc...  (the volume id without its dash)
    sys/block/nvme<n>n1/device/model     Amazon Elastic Block Store
    sys/block/nvme<i+1>n1/holders/md0 -> ../../md0
    dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc... -> ../../nvme<n>n1

``nvme0n1`` is the boot volume, ``nvme1n1``.. the data volumes in member order, which is
the order they are attached on the moto server (/dev/sdf, /dev/sdg, ...): member i of the
array is data volume i. The tree is rewritten by every ``up`` (a restarted moto server gives
new volume ids); it is a description, not the XFS itself (that is a loop device, data_fs).
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import shutil
from collections.abc import Sequence

from opskit.lab import hosts as hostmod

FSROOT = "fsroot"  # under the host's /etc/opskit-lab
DISCOVERY_ROOT = f"/etc/opskit-lab/{FSROOT}"
MOUNT = "/data"
ARRAY = "md0"
LEVEL = "raid0"
CHUNK_SIZE = 524288  # mdadm's default chunk (512 KiB)
BOOT_DEVICE = "nvme0n1"
BY_ID_PREFIX = "nvme-Amazon_Elastic_Block_Store_"
MODEL = "Amazon Elastic Block Store"
ROOT_MOUNT_LINE = "/dev/vda / ext4 rw 0 0"


def serial(volume_id: str) -> str:
    """The NVMe serial of an EBS volume: its id without the dash (vol-0abc -> vol0abc)."""
    return volume_id.replace("-", "", 1)


def member_device(index: int) -> str:
    """Kernel name of member ``index`` (0-based): nvme1n1, nvme2n1, ..."""
    return f"nvme{index + 1}n1"


def fsroot_dir(state_dir: pathlib.Path, name: str) -> pathlib.Path:
    """Where host ``name``'s tree lives on our side (the host sees DISCOVERY_ROOT)."""
    return hostmod.host_dir(state_dir, name) / "etc" / FSROOT


# A tree as data: relative path -> ("file", text) or ("link", target); dirs are implied,
# plus the empty dirs listed under EMPTY_DIRS.
Tree = dict[str, tuple[str, str]]
EMPTY_DIRS = (f"sys/block/{ARRAY}/slaves",)


def tree(members: Sequence[str], boot: str | None) -> Tree:
    """The tree for ``members`` (data volume ids in member order) and the boot volume."""
    mounts = [
        ROOT_MOUNT_LINE,
        "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0",
        "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0",
        f"/dev/{ARRAY} {MOUNT} xfs rw,relatime,attr2,inode64,logbufs=8,logbsize=32k,"
        f"sunit=1024,swidth={1024 * len(members)},noquota 0 0",
    ]
    block, md = "sys/block", f"sys/block/{ARRAY}/md"
    out: Tree = {
        "proc/mounts": ("file", "\n".join(mounts)),
        f"{md}/level": ("file", LEVEL),
        f"{md}/raid_disks": ("file", str(len(members))),
        f"{md}/chunk_size": ("file", str(CHUNK_SIZE)),
        f"{md}/array_state": ("file", "clean"),
        f"{md}/metadata_version": ("file", "1.2"),
    }
    devices = [(BOOT_DEVICE, boot)] if boot else []
    for i, vol in enumerate(members):
        dev = member_device(i)
        devices.append((dev, vol))
        out[f"{md}/dev-{dev}/slot"] = ("file", str(i))
        out[f"{md}/dev-{dev}/state"] = ("file", "in_sync")
        out[f"{md}/dev-{dev}/block"] = ("link", f"../../../{dev}")
        out[f"{md}/rd{i}"] = ("link", f"dev-{dev}")
        out[f"{block}/{ARRAY}/slaves/{dev}"] = ("link", f"../../{dev}")
        out[f"{block}/{dev}/holders/{ARRAY}"] = ("link", f"../../{ARRAY}")
    for dev, vol in devices:
        assert vol is not None
        out[f"{block}/{dev}/device/serial"] = ("file", serial(vol))
        out[f"{block}/{dev}/device/model"] = ("file", MODEL.ljust(40))  # padded, as in sysfs
        out[f"dev/disk/by-id/{BY_ID_PREFIX}{serial(vol)}"] = ("link", f"../../{dev}")
    if boot:
        out[f"dev/disk/by-id/{BY_ID_PREFIX}{serial(boot)}-part1"] = ("link",
                                                                    f"../../{BOOT_DEVICE}p1")
    return out


def build(root: pathlib.Path, members: Sequence[str], boot: str | None) -> None:
    """Write the tree for ``members`` (data volume ids in member order) under ``root``."""
    for rel in EMPTY_DIRS:
        (root / rel).mkdir(parents=True, exist_ok=True)
    for rel, (kind, value) in tree(members, boot).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "link":
            path.symlink_to(value)
        else:
            path.write_text(value + "\n")


def read_tree(root: pathlib.Path) -> Tree:
    """What is under ``root`` now, in ``tree()``'s form (to compare)."""
    found: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            else:
                with open(path) as fh:
                    found[rel] = ("file", fh.read().removesuffix("\n"))
    return found


def write(
    state_dir: pathlib.Path, name: str, members: Sequence[str], boot: str | None
) -> bool:
    """Make host ``name``'s tree name these volumes; True if it had to be (re)written.

    Every ``up`` calls it: new ids after a moto restart, and a tree someone changed is whole
    again. ``fsroot`` is a plain directory (``cp -a`` of it must copy the tree, not a link
    to it); a new version is swapped in with renameat2(RENAME_EXCHANGE), so a reader sees
    the old tree or the new one, never half of one.
    """
    final = fsroot_dir(state_dir, name)
    if final.is_dir() and not final.is_symlink():
        if read_tree(final) == tree(members, boot):
            return False
    fresh = final.with_name(f".{FSROOT}.new-{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    build(fresh, members, boot)
    if final.is_symlink() or final.is_file():
        final.unlink()
    if final.exists():
        _exchange(fresh, final)  # fresh now holds the old tree
        shutil.rmtree(fresh, ignore_errors=True)
    else:
        fresh.rename(final)
    return True


def _exchange(a: pathlib.Path, b: pathlib.Path) -> None:
    """Swap two directories atomically (Linux renameat2); without it, a brief gap."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    fn = getattr(libc, "renameat2", None)
    if fn is not None and fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b),
                             rename_exchange) == 0:  # fmt: skip
        return
    old = b.with_name(b.name + f".old-{os.getpid()}")
    b.rename(old)
    a.rename(b)
    old.rename(a)
