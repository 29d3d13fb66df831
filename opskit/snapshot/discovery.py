"""Which EBS volumes hold a mount, in RAID member order; refuse when any is unknown.

Never snapshot only part of an array: every member must map to a volume id, and when the
inventory declares ``snapshot.volumes`` they must agree with what the host shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from opskit.errors import SafetyError
from opskit.onhost import script
from opskit.snapshot.config import SnapshotConfig
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session


@dataclass(frozen=True)
class Layout:
    mount: str
    device: str
    fstype: str
    array: str | None
    volumes: tuple[str, ...]      # member order
    devices: tuple[str, ...]
    source: str                   # how the volume ids were found

    def to_dict(self) -> dict[str, Any]:
        return {"mount": self.mount, "device": self.device, "fstype": self.fstype,
                "array": self.array, "volumes": list(self.volumes),
                "devices": list(self.devices), "source": self.source}


def _attachment_name(device: str) -> str:
    """/dev/xvdf and /dev/sdf name the same attachment (Xen renames sdX to xvdX)."""
    name = device.removeprefix("/dev/")
    return "sd" + name[3:] if name.startswith("xvd") else name


def discover(s: Session, cfg: SnapshotConfig,
             attachments: dict[str, str] | None = None) -> Layout:
    """``attachments``: the instance's device name -> volume id (DescribeInstances), used for
    members without an NVMe serial or by-id link (xvdX/sdX on Xen instances)."""
    out = s.run_argv(["python3", "-c", script("discover_volumes"), cfg.mount,
                      cfg.discovery_root], check=False)
    try:
        doc = json.loads(out.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise CommandFailed(f"volume discovery failed: {out.stderr.strip()[-200:]}",
                         out.exit_status) from None
    if "error" in doc:
        raise CommandFailed(f"volume discovery: {doc['error']}", out.exit_status)
    members = doc["members"]
    by_name = {_attachment_name(k): v for k, v in (attachments or {}).items()}
    found = tuple(m["volume_id"] or by_name.get(_attachment_name(m["device"]))
                  for m in members)
    devices = tuple(m["device"] for m in members)
    if not doc.get("order_known", True) and len(members) > 1 and not cfg.volumes:
        raise SafetyError(
            f"{s.host.name}: the member order of {doc['device']} is unknown",
            hint="declare snapshot.volumes (member order) in the inventory",
        )
    if cfg.volumes:
        known = [v for v in found if v]
        # Without md's rdN links the member order is unknown: then only the set must agree.
        same = (sorted(known) == sorted(cfg.volumes) if not doc.get("order_known", True)
                else tuple(known) == cfg.volumes)
        if known and not same:
            raise SafetyError(
                f"{s.host.name}: {cfg.mount} is on {', '.join(known)} but the inventory "
                f"declares {', '.join(cfg.volumes)}",
                hint="fix snapshot.volumes, or remove it to trust discovery",
            )
        volumes, source = cfg.volumes, "inventory"
    else:
        missing = [d for d, v in zip(devices, found, strict=True) if not v]
        if missing:
            raise SafetyError(
                f"{s.host.name}: cannot map {', '.join(missing)} of {cfg.mount} to an EBS "
                "volume; refusing to snapshot part of the array",
                hint="declare snapshot.volumes (member order) in the inventory",
            )
        volumes, source = tuple(v for v in found if v), "discovered"
    return Layout(cfg.mount, doc["device"], doc["fstype"], doc.get("array"), volumes, devices,
                  source)
