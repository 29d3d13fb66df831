"""Restore a snapshot set: a volume from every member, attached in member order.

The array is then assembled on the instance by the operator (the printed steps), since the
instance may not be one opskit reaches; member order matters for RAID0, so device names are
assigned in member order.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from opskit import aws
from opskit.errors import SafetyError
from opskit.snapshot.sets import SnapshotSet

DEVICE_LETTERS = string.ascii_lowercase[5:16]  # /dev/sdf .. /dev/sdp, as AWS recommends


def plan(s: SnapshotSet, ec2: Any, instance_id: str, az: str | None) -> dict[str, Any]:
    """Which volume from which snapshot goes to which device; nothing is created."""
    if not s.complete:
        raise SafetyError(f"set {s.set_id} is {s.state}: {s.reason}",
                          hint="restore only a complete set (see `opskit snapshot list`)")
    inst = aws.call(lambda: ec2.describe_instances(InstanceIds=[instance_id]))
    inst = inst["Reservations"][0]["Instances"][0]
    used = {m["DeviceName"] for m in inst.get("BlockDeviceMappings", [])}
    free = [f"/dev/sd{c}" for c in DEVICE_LETTERS if f"/dev/sd{c}" not in used
            and f"/dev/xvd{c}" not in used]
    members = sorted(s.members, key=lambda m: m.index or 0)
    if len(free) < len(members):
        raise SafetyError(f"{instance_id} has only {len(free)} free device names for "
                          f"{len(members)} volumes", hint="detach unused volumes first")
    zone = az or inst["Placement"]["AvailabilityZone"]
    steps = [{"member": m.index, "snapshot": m.snapshot_id, "device": dev, "size_gib": m.size_gib}
             for m, dev in zip(members, free, strict=False)]
    return {"set_id": s.set_id, "instance_id": instance_id, "availability_zone": zone,
            "members": steps}


def restore(s: SnapshotSet, aws_vars: Mapping[str, Any], instance_id: str,
            az: str | None) -> dict[str, Any]:
    ec2 = aws.client("ec2", aws_vars)
    p = plan(s, ec2, instance_id, az)
    for step in p["members"]:
        vol = aws.call(lambda step=step: ec2.create_volume(
            SnapshotId=step["snapshot"], AvailabilityZone=p["availability_zone"],
            VolumeType="gp3", TagSpecifications=[{"ResourceType": "volume", "Tags": [
                {"Key": "opskit:restored-from", "Value": s.set_id},
                {"Key": "opskit:member", "Value": str(step["member"])}]}]))
        step["volume"] = vol["VolumeId"]
        aws.call(lambda vol=vol: ec2.get_waiter("volume_available").wait(
            VolumeIds=[vol["VolumeId"]], WaiterConfig={"Delay": 2, "MaxAttempts": 60}))
        aws.call(lambda step=step: ec2.attach_volume(
            Device=step["device"], InstanceId=instance_id, VolumeId=step["volume"]))
    p["next_steps"] = next_steps(s, p)
    return p


def next_steps(s: SnapshotSet, p: dict[str, Any]) -> list[str]:
    """What to run on the instance to bring the filesystem up (NVMe names may differ)."""
    vols = " ".join(str(m.get("volume", m["snapshot"])).replace("-", "") for m in p["members"])
    lines = [f"# on {p['instance_id']}: find each volume's NVMe device (serial = volume id "
             f"without '-'): lsblk -o NAME,SERIAL | grep -E '{vols.replace(' ', '|')}'"]
    if len(p["members"]) > 1:
        lines.append(f"mdadm --assemble /dev/md/restore <the {len(p['members'])} devices, "
                     "member 0 first>   # or: mdadm --assemble --scan")
        dev = "/dev/md/restore"
    else:
        dev = "<the device>"
    lines.append(f"mkdir -p /mnt/restore && mount -o ro,nouuid {dev} /mnt/restore   "
                 f"# nouuid: an XFS clone of {s.mount} may sit beside the original")
    return lines
