"""Run on a target host (stdlib only): which block devices hold a mount, in RAID member order.

argv: MOUNT [ROOT]
ROOT (default /) prefixes proc/mounts, sys/block and dev/disk/by-id, so tests and the lab can
give a fixture tree (a kernel without md cannot show a real array).
Prints one JSON document: {"mount", "device", "fstype", "array", "level", "order_known",
"members": [{"index", "device", "volume_id" or null, "via"}]}; exit 0, or 3 with "error".
"""

import json
import os
import re
import sys

EBS_BY_ID = "nvme-Amazon_Elastic_Block_Store_"


def path(root, *parts):
    return os.path.join(root, *parts)


def read(p):
    try:
        with open(p) as fh:
            return fh.read().strip()
    except OSError:
        return None


def mount_device(root, mount):
    """The device and fs type of the last (topmost) mount of MOUNT."""
    found = None
    for line in (read(path(root, "proc/mounts")) or "").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == mount:
            found = fields[0], fields[2]
    return found


def members(root, dev):
    """Member devices in array order, and whether that order is known (md's rdN links)."""
    md_dir = path(root, "sys/block", dev, "md")
    ordered = []
    if os.path.isdir(md_dir):
        for name in os.listdir(md_dir):
            m = re.match(r"^rd(\d+)$", name)
            if m:
                target = os.path.basename(os.readlink(path(md_dir, name)))
                member = target[4:] if target.startswith("dev-") else target
                ordered.append((int(m.group(1)), member))
    if ordered:
        return [d for _, d in sorted(ordered)], True
    slaves = path(root, "sys/block", dev, "slaves")
    listed = sorted(os.listdir(slaves)) if os.path.isdir(slaves) else []
    if listed:
        return listed, False
    return [dev], True


def volume_id(root, dev):
    """The EBS volume id of a device: NVMe serial, or the by-id link naming it; else None."""
    serial = read(path(root, "sys/block", dev, "device/serial"))
    if serial and serial.startswith("vol") and not serial.startswith("vol-"):
        return "vol-" + serial[3:], "nvme-serial"
    by_id = path(root, "dev/disk/by-id")
    if os.path.isdir(by_id):
        for name in sorted(os.listdir(by_id)):
            if name.startswith(EBS_BY_ID + "vol") and "-part" not in name:
                if os.path.basename(os.readlink(path(by_id, name))) == dev:
                    return "vol-" + name[len(EBS_BY_ID) + 3:], "by-id"
    return None, None


def main():
    mount = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else "/"
    found = mount_device(root, mount)
    if not found:
        print(json.dumps({"error": f"{mount} is not a mount point"}))
        return 3
    device, fstype = found
    dev = os.path.basename(device)
    names, order_known = members(root, dev)
    out = []
    for i, name in enumerate(names):
        vol, via = volume_id(root, name)
        out.append({"index": i, "device": "/dev/" + name, "volume_id": vol, "via": via})
    print(json.dumps({
        "mount": mount, "device": device, "fstype": fstype,
        "array": None if names == [dev] else dev,
        "level": read(path(root, "sys/block", dev, "md/level")),
        "order_known": order_known, "members": out,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
