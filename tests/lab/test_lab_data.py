"""The db hosts' data: a real XFS at /data, EBS volumes on moto, the md/NVMe fixture tree.

What ``snapshot create`` will use: /data (XFS on a loop device, private to each db host,
freezable), each db instance's 4 data volumes attached in member order, and the fixture
tree at ``snapshot.discovery_root`` mapping md0's members to exactly those volume ids.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import worker
import yaml
from worker import SMALL_PORT

import opskit.lab as labmod
from opskit.lab import LabStatus, aws_resources, data_fs

pytestmark = pytest.mark.lab

DB_HOSTS = ("db1", "db2", "db3")
BY_ID = "dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_"


def host_vars(path: pathlib.Path | str | None) -> dict[str, Any]:
    assert path is not None
    return yaml.safe_load(pathlib.Path(path).read_text())["all"]["hosts"]  # type: ignore[no-any-return]


def boot_of(ec2: Any, instance_id: str) -> str:
    inst = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    root = inst["RootDeviceName"]
    return next(m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]
                if m["DeviceName"] == root)  # fmt: skip


def in_host(lab: LabStatus, name: str, script: str) -> subprocess.CompletedProcess[str]:
    return labmod.run_in_host(name, ["sh", "-c", script], state_dir=lab.state_dir, timeout=30)


def loops_of(state_dir: pathlib.Path | str) -> dict[str, str]:
    """Loop devices whose backing file is in the state dir, from sysfs and from losetup -a."""
    found = data_fs.lab_loops(state_dir)
    listed = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert all(f"/dev/{loop}:" in listed for loop in found)
    return found


# ---------------------------------------------------------------- /data on the session lab


def test_data_is_a_private_xfs_on_each_db_host(lab: LabStatus, lab_ssh) -> None:
    for name in DB_HOSTS:
        assert lab.host(name).services.get("data-xfs") is True
    sources = {}
    for name in DB_HOSTS:
        # The XFS sits on top of the host's /data bind mount: stat -f sees the topmost one.
        done = in_host(lab, name, "stat -f -c %T /data; findmnt -no FSTYPE,SOURCE /data | tail -1")
        assert done.returncode == 0, done.stderr
        fstype, last = done.stdout.split("\n", 1)
        assert fstype == "xfs" and last.split()[0] == "xfs"
        sources[name] = last.split()[1]
    assert sources["db1"] != sources["db2"]  # each its own loop device
    assert {pathlib.Path(f).name for f in loops_of(lab.state_dir).values()} == {"data.img"}
    assert in_host(lab, "app1", "stat -f -c %T /data").stdout.strip() != "xfs"
    assert lab_ssh("db1", "stat -f -c %T /data").stdout.strip() == "xfs"  # a login sees it too

    fname = f"private-{uuid.uuid4().hex}"
    try:
        done = in_host(lab, "db1", f"echo hello > /data/{fname} && cat /data/{fname}")
        assert (done.returncode, done.stdout) == (0, "hello\n"), done.stderr
        assert in_host(lab, "db2", f"test -e /data/{fname}").returncode == 1
        assert not pathlib.Path("/data", fname).exists()  # the root namespace
        assert not (lab.host("db1").state_dir / "data" / fname).exists()  # not the bind below
    finally:
        in_host(lab, "db1", f"rm -f /data/{fname}")


def test_a_writer_blocks_on_frozen_data_until_thawed(lab: LabStatus) -> None:
    pid = labmod.host_pid("db1", state_dir=lab.state_dir)
    assert pid
    fname = f"/data/frozen-{uuid.uuid4().hex}"
    frozen = in_host(lab, "db1", "fsfreeze -f /data")
    assert frozen.returncode == 0, frozen.stderr
    writer = None
    try:
        writer = subprocess.Popen(
            ["nsenter", "-t", str(pid), "-m", "-u", "--", "sh", "-c", f"echo x > {fname}"],
            stdin=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        assert writer.poll() is None  # blocked in the kernel on the frozen XFS
        # status must not hang on a frozen /data (health never writes there).
        assert labmod.status(state_dir=lab.state_dir).host("db1").services["data-xfs"]
    finally:
        thawed = in_host(lab, "db1", "fsfreeze -u /data")
    assert thawed.returncode == 0, thawed.stderr
    assert writer is not None and writer.wait(timeout=10) == 0
    assert in_host(lab, "db1", f"cat {fname} && rm {fname}").stdout == "x\n"


# ---------------------------------------------------------------- EBS on moto + fixture tree


def test_db_instances_have_data_volumes_in_member_order_and_the_fixture_names_them(
    lab: LabStatus,
) -> None:
    hvars = host_vars(lab.inventory_path)
    ec2, _ = aws_resources.clients(hvars["db1"]["aws"]["endpoint_url"])
    for name in DB_HOSTS:
        snap = hvars[name]["snapshot"]
        assert set(snap) == {"mount", "discovery_root", "volumes"}
        assert (snap["mount"], snap["discovery_root"]) == ("/data", "/etc/opskit-lab/fsroot")
        members = snap["volumes"]
        assert len(members) == 4 and len(set(members)) == 4
        inst = ec2.describe_instances(InstanceIds=[hvars[name]["aws"]["instance_id"]])
        inst = inst["Reservations"][0]["Instances"][0]
        mapping = [(m["DeviceName"], m["Ebs"]["VolumeId"]) for m in inst["BlockDeviceMappings"]]
        assert mapping[0][0] == inst["RootDeviceName"] == "/dev/sda1"
        boot = mapping[0][1]
        # Other tests may attach more (a restore on db2 uses /dev/sdj..): look at sdf..sdi.
        data = [m for m in mapping if m[0] in ("/dev/sdf", "/dev/sdg", "/dev/sdh", "/dev/sdi")]
        assert data == list(zip(["/dev/sdf", "/dev/sdg", "/dev/sdh", "/dev/sdi"],
                                members, strict=True))  # fmt: skip
        vols = {v["VolumeId"]: v for v in ec2.describe_volumes(VolumeIds=members)["Volumes"]}
        for i, vol_id in enumerate(members):
            vol = vols[vol_id]
            tags = {t["Key"]: t["Value"] for t in vol["Tags"]}
            assert tags["Name"] == f"{name}-data-{i}" and tags["opskit-lab"] == str(lab.state_dir)
            assert (vol["Size"], vol["VolumeType"]) == (8, "gp3")
            assert vol["AvailabilityZone"] == inst["Placement"]["AvailabilityZone"]

        # The fixture tree, as the host sees it (and as discovery reads it).
        root = snap["discovery_root"]
        script = (
            f"cd {root} && cat proc/mounts sys/block/md0/md/level sys/block/md0/md/raid_disks"
            " && ls sys/block/md0/slaves"
            " && for i in 0 1 2 3; do readlink sys/block/md0/md/rd$i; done"
            " && for d in nvme0n1 nvme1n1 nvme2n1 nvme3n1 nvme4n1;"
            " do cat sys/block/$d/device/serial; done"
        )
        done = in_host(lab, name, script)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert any(line.startswith("/dev/md0 /data xfs ") for line in lines)
        out = lines[lines.index("raid0"):]
        assert out[:2] == ["raid0", "4"]
        assert out[2:6] == ["nvme1n1", "nvme2n1", "nvme3n1", "nvme4n1"]
        assert out[6:10] == ["dev-nvme1n1", "dev-nvme2n1", "dev-nvme3n1", "dev-nvme4n1"]
        serials = out[10:15]
        assert serials == [v.replace("-", "") for v in (boot, *members)]
        fsroot = lab.host(name).state_dir / "etc" / "fsroot"  # the same tree, our side
        for i, vol_id in enumerate(members):
            link = fsroot / (BY_ID + vol_id.replace("-", ""))
            assert os.readlink(link) == f"../../nvme{i + 1}n1"

    # moto's CreateSnapshots on such an instance (what `snapshot create` calls): the four
    # members, in member order, tagged; the boot volume left out (docs/lab.md).
    iid = hvars["db1"]["aws"]["instance_id"]
    mark = uuid.uuid4().hex
    made = ec2.create_snapshots(
        InstanceSpecification={"InstanceId": iid, "ExcludeBootVolume": True},
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "t", "Value": mark}]}],
    )["Snapshots"]
    try:
        members = hvars["db1"]["snapshot"]["volumes"]
        assert [s["VolumeId"] for s in made if s["VolumeId"] in members] == members
        assert boot_of(ec2, iid) not in {s["VolumeId"] for s in made}
        assert all({"Key": "t", "Value": mark} in s["Tags"] for s in made)
    finally:
        for snap in made:
            ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])

    # Provisioning again (what every `up` does) keeps the volumes: nothing new, nothing gone.
    endpoint = hvars["db1"]["aws"]["endpoint_url"]
    again = aws_resources.provision(endpoint, lab.state_dir, labmod.plan(len(lab.hosts)))
    assert again.data_volumes == {n: hvars[n]["snapshot"]["volumes"] for n in DB_HOSTS}
    lab_vols = ec2.describe_volumes(
        Filters=[{"Name": "tag:opskit-lab", "Values": [str(lab.state_dir)]}])["Volumes"]
    names = sorted(t["Value"] for v in lab_vols for t in v["Tags"] if t["Key"] == "Name")
    assert names == sorted([f"{h.name}-boot" for h in lab.hosts]
                           + [f"{n}-data-{i}" for n in DB_HOSTS for i in range(4)])


# ---------------------------------------------------------------- a separate small lab


@pytest.fixture
def small_lab(tmp_path: pathlib.Path) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {
        "hosts": 2,  # app1, db1
        "port": SMALL_PORT,
        "net": worker.NET,
        "state_dir": tmp_path / "state",
        "inventory_path": tmp_path / "lab.yml",
    }
    try:
        yield params
    finally:
        labmod.down(state_dir=params["state_dir"])
        data_fs.detach_unmounted(params["state_dir"])  # never leave a loop device behind


def test_stale_loop_devices_are_detached_and_down_leaves_none(small_lab) -> None:
    state_dir = pathlib.Path(small_lab["state_dir"])
    first = labmod.up(**small_lab)
    assert first.host("db1").services == {"data-xfs": True}
    image = state_dir / "hosts" / "db1" / "data.img"
    assert list(loops_of(state_dir).values()) == [str(image)]

    # A killed session: db1's namespace dies (its mount and autoclear loop with it), and a
    # loop device attached without autoclear (no mount) is left behind.
    os.kill(first.host("db1").pid, signal.SIGKILL)
    stray = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    second = labmod.up(**small_lab)
    assert second.host("db1").services == {"data-xfs": True}
    assert second.host("db1").pid != first.host("db1").pid
    attached = loops_of(state_dir)
    assert list(attached.values()) == [str(image)]  # the stray one is gone
    done = labmod.run_in_host("db1", ["findmnt", "-no", "FSTYPE,SOURCE", "/data"],
                              state_dir=state_dir)  # fmt: skip
    assert done.stdout.splitlines()[-1].split() == ["xfs", f"/dev/{next(iter(attached))}"]
    assert stray.startswith("/dev/loop")

    lines = labmod.down(state_dir=state_dir)
    assert "stopped data-xfs on db1" in lines
    assert loops_of(state_dir) == {}
    assert labmod.lab_mounts(state_dir, ["app1", "db1"]) == []
    assert str(state_dir) not in pathlib.Path("/proc/self/mountinfo").read_text()
