"""Volume discovery over fixture sysfs/dev trees (this kernel has no md driver)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from opskit import lock
from opskit.errors import SafetyError
from opskit.inventory import Host
from opskit.runner import fleet
from opskit.snapshot import config, discovery

VOLS = ["vol-0a1", "vol-0b2", "vol-0c3", "vol-0d4"]


def tree(root: Path, *, order: bool = True, serial: bool = True, by_id: bool = True,
         unmapped: int | None = None) -> Path:
    (root / "proc").mkdir(parents=True)
    (root / "proc/mounts").write_text("/dev/vda / ext4 rw 0 0\n/dev/md0 /data xfs rw 0 0\n")
    md = root / "sys/block/md0"
    (md / "slaves").mkdir(parents=True)
    (md / "md").mkdir()
    (md / "md/level").write_text("raid0\n")
    (root / "dev/disk/by-id").mkdir(parents=True)
    # Member i is nvme(4-i)n1: array order is NOT name order, so only rdN tells it.
    for i, vol in enumerate(VOLS):
        dev = f"nvme{4 - i}n1"
        (md / "slaves" / dev).write_text("")
        if order:
            os.symlink(f"../../{dev}", md / "md" / f"rd{i}")
            (md / "md" / f"rd{i}").unlink()
            os.symlink(f"dev-{dev}", md / "md" / f"rd{i}")
        (root / "sys/block" / dev / "device").mkdir(parents=True)
        if i == unmapped:
            continue
        if serial:
            (root / "sys/block" / dev / "device/serial").write_text(vol.replace("-", "") + "\n")
        if by_id:
            os.symlink(f"../../{dev}", root / "dev/disk/by-id" /
                       f"nvme-Amazon_Elastic_Block_Store_{vol.replace('-', '')}")
    return root


def local_host(root: Path, **snapshot: object) -> Host:
    return Host("db1", {"ansible_connection": "local",
                        "snapshot": {"mount": "/data", "discovery_root": str(root), **snapshot},
                        "aws": {"instance_id": "i-1"}})


def discover(host: Host) -> fleet.HostResult:
    cfg = config.load(host, None, None)
    return fleet.run([host], lambda s: discovery.discover(s, cfg)).results[0]


def test_members_in_rd_order_from_nvme_serials(tmp_path: Path) -> None:
    r = discover(local_host(tree(tmp_path, by_id=False)))
    assert r.status == "ok", r.error
    assert r.value.volumes == tuple(VOLS) and r.value.array == "md0"
    assert r.value.devices[0] == "/dev/nvme4n1" and r.value.source == "discovered"


def test_by_id_links_when_no_serial(tmp_path: Path) -> None:
    r = discover(local_host(tree(tmp_path, serial=False)))
    assert r.status == "ok" and r.value.volumes == tuple(VOLS)


def test_unmappable_member_is_refused(tmp_path: Path) -> None:
    r = discover(local_host(tree(tmp_path, unmapped=2)))
    assert r.status == "refused" and "nvme2n1" in (r.error or "")
    assert "part of the array" in (r.error or "")


def test_unknown_order_refused_unless_declared(tmp_path: Path) -> None:
    root = tree(tmp_path, order=False)
    assert discover(local_host(root)).status == "refused"
    r = discover(local_host(root, volumes=VOLS))
    assert r.status == "ok" and r.value.source == "inventory"


def test_declared_volumes_must_match(tmp_path: Path) -> None:
    r = discover(local_host(tree(tmp_path), volumes=list(reversed(VOLS))))
    assert r.status == "refused" and "declares" in (r.error or "")


def test_not_a_mount_point_fails(tmp_path: Path) -> None:
    r = discover(local_host(tree(tmp_path), mount="/nope"))
    assert r.status == "failed" and "not a mount point" in (r.error or "")


def test_refused_host_exits_4(tmp_path: Path) -> None:
    host = local_host(tree(tmp_path, unmapped=0))
    res = fleet.run([host], lambda s: discovery.discover(s, config.load(host, None, None)))
    assert res.exit_code == 4


def test_freezing_root_is_refused_before_anything_runs() -> None:
    with pytest.raises(Exception, match="snapshot.mount: must be a directory below /"):
        config.load(Host("h", {"snapshot": {"mount": "/"}}), None, None)
    with pytest.raises(Exception, match="refusing to freeze /"):
        config.load(Host("h", {"snapshot": {"mount": "/data"}}), "//", None)


def test_lock_refuses_a_second_holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSKIT_LOCK_DIR", str(tmp_path))
    with lock.exclusive("snapshot"):
        # A second process (as a second cron run would be) cannot take it.
        code = ("import sys; from opskit import lock\n"
                "try:\n    lock.exclusive('snapshot').__enter__()\n"
                "except Exception as e:\n    print(e); sys.exit(4)\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "OPSKIT_LOCK_DIR": str(tmp_path)})
        assert proc.returncode == 4 and f"pid {os.getpid()}" in proc.stdout
        with pytest.raises(SafetyError):
            with lock.exclusive("snapshot"):
                pass  # flock is per open file: even this process's second open is refused
    with lock.exclusive("snapshot"):
        pass  # released: free again


def test_xen_device_names_map_through_the_instance_attachments(tmp_path: Path) -> None:
    # A Xen instance: md0 over xvdf..xvdi, no NVMe serials; DescribeInstances says sdf..sdi.
    root = tmp_path
    (root / "proc").mkdir()
    (root / "proc/mounts").write_text("/dev/md0 /data xfs rw 0 0\n")
    md = root / "sys/block/md0"
    (md / "md").mkdir(parents=True)
    for i in range(4):
        os.symlink(f"dev-xvd{'fghi'[i]}", md / "md" / f"rd{i}")
    host = local_host(root)
    cfg = config.load(host, None, None)
    attachments = {f"/dev/sd{'fghi'[i]}": vol for i, vol in enumerate(VOLS)}
    attachments["/dev/sda1"] = "vol-boot"
    r = fleet.run([host], lambda s: discovery.discover(s, cfg, attachments)).results[0]
    assert r.status == "ok" and r.value.volumes == tuple(VOLS)
    del attachments["/dev/sdh"]
    r = fleet.run([host], lambda s: discovery.discover(s, cfg, attachments)).results[0]
    assert r.status == "refused" and "/dev/xvdh" in (r.error or "")
