"""What the lab creates on its moto server: EC2 instances, EBS volumes, target groups.

One instance per lab host (moto gives it its boot volume at /dev/sda1); each ``db`` host also
gets DATA_MEMBERS data volumes attached at /dev/sdf, /dev/sdg, ... in member order (the
md RAID0 members its /data is made of, as the ebs_fixture tree describes them).

Idempotent against a running server: instances are found by the tag ``opskit-lab=<state_dir>``
and matched to hosts by their ``Name`` tag; missing ones are created, ones of hosts that left
the lab are terminated. A restarted server is empty, so everything is created again (new
ids; ``up`` rewrites lab.yml with them).

Each kind of resource is one ``_ensure_*`` step that fills ``AwsLab``; a new kind is one
more step plus its ids in ``AwsLab``. Data volumes are matched by their ``Name`` tag
(``<host>-data-<i>``) and kept only while attached to their host's instance at their device;
any other lab data volume (a host that left, an instance that was replaced) is deleted.
Dummy credentials are passed to boto3 explicitly: the operator's AWS_* variables are
neither needed nor used.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from opskit.errors import LabError
from opskit.lab.layout import HostSpec

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
LAB_TAG = "opskit-lab"
IMAGE_ID = "ami-785db401"  # one of moto's built-in AMIs (Ubuntu 16.04): a real-looking id
INSTANCE_TYPE = "t3.micro"
# name -> (role whose hosts are its targets, traffic port); the deploy drains/registers them.
TARGET_GROUPS: dict[str, tuple[str, int]] = {"lab-app": ("app", 8000)}
# Data volumes: the hosts of DATA_ROLE get DATA_MEMBERS of them, member i at DATA_DEVICES[i].
DATA_ROLE = "db"
DATA_MEMBERS = 4
DATA_DEVICES = tuple(f"/dev/sd{chr(ord('f') + i)}" for i in range(DATA_MEMBERS))  # sdf..sdi
DATA_VOLUME_SIZE = 8  # GiB
DATA_VOLUME_TYPE = "gp3"
_DATA_NAME = re.compile(r"^(?P<host>.+)-data-(?P<index>\d+)$")


def data_volume_name(host: str, index: int) -> str:
    return f"{host}-data-{index}"


@dataclass
class AwsLab:
    """The lab's AWS resources, as lab.yml and services need them."""

    endpoint_url: str
    instances: dict[str, str] = field(default_factory=dict)  # host name -> instance id
    target_groups: dict[str, str] = field(default_factory=dict)  # name -> ARN
    boot_volumes: dict[str, str] = field(default_factory=dict)  # host name -> root volume id
    # host name -> data volume ids in member order (DATA_DEVICES[i]); db hosts only
    data_volumes: dict[str, list[str]] = field(default_factory=dict)

    def client_vars(self) -> dict[str, Any]:
        """The ``aws:`` settings every lab client needs (opskit.aws.client reads these)."""
        return {
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
        }

    def host_aws(self, name: str) -> dict[str, Any]:
        """A host's whole ``aws:`` var (dict vars replace, so it carries everything)."""
        base = self.client_vars()
        return {
            "endpoint_url": base["endpoint_url"],
            "region": base["region"],
            "instance_id": self.instances[name],
            "access_key_id": base["access_key_id"],
            "secret_access_key": base["secret_access_key"],
        }


def clients(endpoint_url: str) -> tuple[Any, Any]:
    """(ec2, elbv2) clients of the lab's server; boto3 is imported only here (~0.5 s).

    The session reads no AWS_PROFILE and no ~/.aws files: an operator's profile (even a
    missing one) must not break the lab, and their real credentials are never used here.
    """
    import boto3.session
    import botocore.session
    from botocore.config import Config

    # session_vars: (config-file key, env vars, default, converter) -- here: no env, no files.
    isolated = botocore.session.Session(
        session_vars={
            "profile": (None, None, None, None),
            "config_file": (None, None, os.devnull, None),
            "credentials_file": (None, None, os.devnull, None),
        }
    )
    session = boto3.session.Session(
        botocore_session=isolated,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=REGION,
    )
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2})
    return (
        session.client("ec2", endpoint_url=endpoint_url, config=config),
        session.client("elbv2", endpoint_url=endpoint_url, config=config),
    )


def provision(endpoint_url: str, state_dir: pathlib.Path, specs: Sequence[HostSpec]) -> AwsLab:
    """Make the server hold exactly this lab's resources; returns their ids."""
    from opskit import aws

    with aws.errors("setting up the lab's AWS resources failed", error=LabError,
                    hint=f"see {state_dir / 'aws' / 'moto_server.log'}; `opskit lab down` then up"):
        ec2, elbv2 = clients(endpoint_url)
        found = AwsLab(endpoint_url)
        _ensure_instances(ec2, found, str(state_dir), specs)
        _ensure_volumes(ec2, found, str(state_dir), specs)
        _ensure_target_groups(ec2, elbv2, found, specs)
        return found


def _ensure_instances(ec2: Any, found: AwsLab, lab_id: str, specs: Sequence[HostSpec]) -> None:
    existing: dict[str, str] = {}
    extra: list[str] = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": f"tag:{LAB_TAG}", "Values": [lab_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    for page in pages:
        for res in page["Reservations"]:
            for inst in res["Instances"]:
                name = _tag(inst, "Name")
                if name in existing or name not in {s.name for s in specs}:
                    extra.append(inst["InstanceId"])  # a duplicate, or a host that left
                else:
                    existing[name] = inst["InstanceId"]
    if extra:
        ec2.terminate_instances(InstanceIds=extra)
    subnet = _default_subnet(ec2)
    missing = [s for s in specs if s.name not in existing]
    # One run_instances per host (each has its own Name tag); a few in flight at once.
    with ThreadPoolExecutor(max_workers=min(8, len(missing) or 1)) as pool:
        made = list(pool.map(lambda s: _run_instance(ec2, s, lab_id, subnet), missing))
    existing.update(zip((s.name for s in missing), made, strict=True))
    found.instances = {s.name: existing[s.name] for s in specs}


def _run_instance(ec2: Any, spec: HostSpec, lab_id: str, subnet: str | None) -> str:
    tags = [
        {"Key": "Name", "Value": spec.name},
        {"Key": "Role", "Value": spec.role},
        {"Key": LAB_TAG, "Value": lab_id},
    ]
    # The root volume moto creates at launch (8 GiB gp2 at /dev/sda1) gets tags too.
    volume_tags = [{"Key": "Name", "Value": f"{spec.name}-boot"}, *tags[1:]]
    extra = {"SubnetId": subnet} if subnet else {}
    resp = ec2.run_instances(
        ImageId=IMAGE_ID,
        InstanceType=INSTANCE_TYPE,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": volume_tags},
        ],
        **extra,
    )
    return str(resp["Instances"][0]["InstanceId"])


@dataclass
class _Slot:
    """Where data volume ``index`` of a host belongs."""

    host: str
    index: int
    instance_id: str
    device: str
    zone: str


def _ensure_volumes(ec2: Any, found: AwsLab, lab_id: str, specs: Sequence[HostSpec]) -> None:
    """Boot volume of every instance; DATA_MEMBERS data volumes attached to each db host."""
    ids = list(found.instances.values())
    names = {iid: name for name, iid in found.instances.items()}
    placed: dict[str, tuple[str, dict[str, str]]] = {}  # instance -> (zone, {device: volume})
    for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=ids):
        for res in page["Reservations"]:
            for inst in res["Instances"]:
                mapping = {
                    m["DeviceName"]: m["Ebs"]["VolumeId"]
                    for m in inst.get("BlockDeviceMappings", [])
                    if "Ebs" in m
                }
                placed[inst["InstanceId"]] = (inst["Placement"]["AvailabilityZone"], mapping)
                root = mapping.get(inst.get("RootDeviceName", ""))
                if root:
                    found.boot_volumes[names[inst["InstanceId"]]] = root
    wanted: dict[str, _Slot] = {}
    for spec in specs:
        if spec.role != DATA_ROLE:
            continue
        iid = found.instances[spec.name]
        for i, device in enumerate(DATA_DEVICES):
            wanted[data_volume_name(spec.name, i)] = _Slot(
                spec.name, i, iid, device, placed[iid][0]
            )
    kept: dict[str, str] = {}  # volume name -> id
    dropped: set[str] = set()
    pages = ec2.get_paginator("describe_volumes").paginate(
        Filters=[{"Name": f"tag:{LAB_TAG}", "Values": [lab_id]}]
    )
    for page in pages:
        for vol in page["Volumes"]:
            name = _tag(vol, "Name") or ""
            if not _DATA_NAME.match(name):
                continue  # a boot volume: moto deletes it with its instance
            slot = wanted.get(name)
            attached = [(a["InstanceId"], a["Device"]) for a in vol.get("Attachments", [])]
            if slot and name not in kept and attached == [(slot.instance_id, slot.device)]:
                kept[name] = vol["VolumeId"]
                continue
            for iid, device in attached:  # a host that left, or a replaced instance
                ec2.detach_volume(VolumeId=vol["VolumeId"], InstanceId=iid, Device=device,
                                  Force=True)  # fmt: skip
            ec2.delete_volume(VolumeId=vol["VolumeId"])
            dropped.add(vol["VolumeId"])
    missing = [slot for name, slot in wanted.items() if name not in kept]
    for slot in missing:  # a device a volume that is not the lab's holds (a manual test): free it
        other = placed[slot.instance_id][1].get(slot.device)
        if other and other not in dropped:
            ec2.detach_volume(VolumeId=other, InstanceId=slot.instance_id, Device=slot.device,
                              Force=True)  # fmt: skip
    # A host missing any member gets all its members (re)attached in member order, so the
    # instance's BlockDeviceMappings (and CreateSnapshots' answer) list them in that order.
    repair = sorted({slot.host for slot in missing})
    for slot in wanted.values():
        vid = kept.get(data_volume_name(slot.host, slot.index))
        if slot.host in repair and vid:
            ec2.detach_volume(VolumeId=vid, InstanceId=slot.instance_id, Device=slot.device)
    by_host = {h: [s for s in wanted.values() if s.host == h] for h in repair}
    reuse = dict(kept)
    with ThreadPoolExecutor(max_workers=min(8, len(by_host) or 1)) as pool:
        made = pool.map(
            lambda slots: [(s, _attach_member(ec2, s, lab_id, reuse)) for s in slots],
            by_host.values(),
        )
        for pairs in made:
            kept.update((data_volume_name(s.host, s.index), vid) for s, vid in pairs)
    found.data_volumes = {
        spec.name: [kept[data_volume_name(spec.name, i)] for i in range(DATA_MEMBERS)]
        for spec in specs
        if spec.role == DATA_ROLE
    }


def _attach_member(ec2: Any, slot: _Slot, lab_id: str, kept: dict[str, str]) -> str:
    """Attach the slot's volume (kept, or a new one) at its device; returns its id."""
    vid = kept.get(data_volume_name(slot.host, slot.index)) or _create_volume(ec2, slot, lab_id)
    ec2.attach_volume(VolumeId=vid, InstanceId=slot.instance_id, Device=slot.device)
    return vid


def _create_volume(ec2: Any, slot: _Slot, lab_id: str) -> str:
    tags = [
        {"Key": "Name", "Value": data_volume_name(slot.host, slot.index)},
        {"Key": "Role", "Value": DATA_ROLE},
        {"Key": LAB_TAG, "Value": lab_id},
    ]
    vol = ec2.create_volume(
        AvailabilityZone=slot.zone,
        Size=DATA_VOLUME_SIZE,
        VolumeType=DATA_VOLUME_TYPE,
        TagSpecifications=[{"ResourceType": "volume", "Tags": tags}],
    )
    return str(vol["VolumeId"])


def _default_vpc(ec2: Any) -> str:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise LabError("the moto server has no default VPC", hint="restart the lab's AWS: down, up")
    return str(vpcs[0]["VpcId"])


def _default_subnet(ec2: Any) -> str | None:
    # Instances in the default VPC's subnet, like the target groups: as on real AWS.
    subnets = ec2.describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [_default_vpc(ec2)]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"]
    if not subnets:
        return None
    return str(min(subnets, key=lambda s: s["AvailabilityZone"])["SubnetId"])


def _ensure_target_groups(ec2: Any, elbv2: Any, found: AwsLab, specs: Sequence[HostSpec]) -> None:
    for name, (role, port) in TARGET_GROUPS.items():
        members = [found.instances[s.name] for s in specs if s.role == role]
        if not members:
            continue
        arn = _target_group(ec2, elbv2, name, port)
        registered = {
            d["Target"]["Id"]
            for d in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        }
        gone = sorted(registered - set(members))
        if gone:
            elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": i} for i in gone])
        # Registering is idempotent: a host a crashed deploy left deregistered comes back.
        elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": i} for i in members])
        found.target_groups[name] = arn


def _target_group(ec2: Any, elbv2: Any, name: str, port: int) -> str:
    try:
        groups = elbv2.describe_target_groups(Names=[name])["TargetGroups"]
    except Exception as exc:  # TargetGroupNotFound is a ClientError with that code
        if getattr(exc, "response", {}).get("Error", {}).get("Code") != "TargetGroupNotFound":
            raise
        groups = []
    if groups:
        return str(groups[0]["TargetGroupArn"])
    made = elbv2.create_target_group(
        Name=name,
        Protocol="HTTP",
        Port=port,
        VpcId=_default_vpc(ec2),
        TargetType="instance",
        HealthCheckPath="/health",
    )
    return str(made["TargetGroups"][0]["TargetGroupArn"])


def _tag(resource: dict[str, Any], key: str) -> str | None:
    for tag in resource.get("Tags", []):
        if tag["Key"] == key:
            return str(tag["Value"])
    return None
