"""EC2 source against a real moto server over HTTP (the production code path, lab endpoint)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from helpers import AWS_ENV, free_port, private_moto

from opskit import aws, inventory
from opskit.errors import InventoryError

AMI = "ami-12c6146b"  # ships with moto


@pytest.fixture(scope="module")
def moto() -> Iterator[dict[str, Any]]:
    """A moto server with a small tagged fleet; yields the endpoint and instance ids."""
    with private_moto() as endpoint:
        yield {"endpoint": endpoint, "ids": _make_fleet(endpoint)}


def _make_fleet(endpoint: str) -> dict[str, str]:
    east = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)
    west = boto3.client("ec2", region_name="us-west-2", endpoint_url=endpoint)
    ids = {
        "app01": _run(east, "us-east-1a", Name="app01", Role="app"),
        "app02": _run(east, "us-east-1b", Name="app02", Role="app"),
        "app03": _run(east, "us-east-1a", Name="app03", Role="app"),
        "noname": _run(east, "us-east-1b", Role="app"),
        "pg01a": _run(east, "us-east-1a", Name="pg01a", Role="db", Shard="01"),
        "dup1": _run(east, "us-east-1a", Name="dup", Role="dup"),
        "dup2": _run(east, "us-east-1a", Name="dup", Role="dup"),
        "west01": _run(west, "us-west-2a", Name="west01", Role="app"),
    }
    east.stop_instances(InstanceIds=[ids["app03"]])
    return ids


def _run(ec2: Any, zone: str, **tags: str) -> str:
    reply = ec2.run_instances(
        ImageId=AMI,
        MinCount=1,
        MaxCount=1,
        InstanceType="c1.xlarge",
        Placement={"AvailabilityZone": zone},
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return reply["Instances"][0]["InstanceId"]


@pytest.fixture(autouse=True)
def fresh_clients(moto: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    aws.reset()  # credentials are cached per session; each test starts clean
    yield
    aws.reset()


def source(tmp_path: Path, moto: dict[str, Any], name: str = "ec2.yml", **config: Any) -> Path:
    data = {"source": "ec2", "regions": ["us-east-1"], "aws": {"endpoint_url": moto["endpoint"]}}
    data.update(config)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def describe(moto: dict[str, Any], name: str, region: str = "us-east-1") -> dict[str, Any]:
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto["endpoint"])
    reply = ec2.describe_instances(InstanceIds=[moto["ids"][name]])
    return reply["Reservations"][0]["Instances"][0]


def test_filters_and_running_only_by_default(tmp_path: Path, moto: dict[str, Any]) -> None:
    inv = inventory.load(source(tmp_path, moto, filters={"tag:Role": "app"}))
    noname_dns = describe(moto, "noname")["PrivateDnsName"]
    # app03 is stopped, pg01a/dup are other roles, west01 is in another region.
    assert sorted(inv.hosts) == sorted(["app01", "app02", noname_dns])
    assert inv.sources == [str(tmp_path / "ec2.yml")]


def test_explicit_state_filter_and_list_values(tmp_path: Path, moto: dict[str, Any]) -> None:
    path = source(
        tmp_path,
        moto,
        filters={"tag:Role": ["app", "db"], "instance-state-name": ["running", "stopped"]},
        hostnames=["tag:Name", "instance-id"],
    )
    inv = inventory.load(path)
    assert {"app01", "app02", "app03", "pg01a", moto["ids"]["noname"]} == set(inv.hosts)
    assert inv.hosts["app03"].vars["aws"]["state"] == "stopped"


def test_keyed_groups_and_static_groups(tmp_path: Path, moto: dict[str, Any]) -> None:
    path = source(
        tmp_path,
        moto,
        filters={"tag:Role": ["app", "db"]},
        keyed_groups=[
            {"key": "tags.Role", "prefix": "role", "separator": "_"},
            {"key": "tags.Shard", "prefix": "shard", "separator": ""},
            {"key": "placement.availability_zone"},
            {"key": "tags.Missing", "prefix": "never"},
        ],
        groups=["ec2", "prod"],
    )
    inv = inventory.load(path)
    assert [h.name for h in inv.members("role_db")] == ["pg01a"]
    assert {h.name for h in inv.members("role_app")} >= {"app01", "app02"}
    assert [h.name for h in inv.members("shard01")] == ["pg01a"]
    assert {"app01", "pg01a"} <= {h.name for h in inv.members("us_east_1a")}
    assert "app02" in {h.name for h in inv.members("us_east_1b")}
    assert not any(g.startswith("never") for g in inv.groups)
    assert {h.name for h in inv.members("ec2")} == set(inv.hosts) == {
        h.name for h in inv.members("prod")
    }
    assert inv.hosts["pg01a"].groups == ("all", "ec2", "prod", "role_db", "shard01", "us_east_1a")
    # --limit works on the discovered groups like on static ones.
    assert [h.name for h in inv.select("role_app:&us_east_1a:!app03")] == ["app01"]


def test_hostnames_preference(tmp_path: Path, moto: dict[str, Any]) -> None:
    noname = describe(moto, "noname")
    # tag:Name wins when present; the untagged instance falls through to the next key.
    inv = inventory.load(
        source(tmp_path, moto, filters={"tag:Role": "app"},
               hostnames=["tag:Name", "private-ip-address", "instance-id"])
    )  # fmt: skip
    assert sorted(inv.hosts) == sorted(["app01", "app02", noname["PrivateIpAddress"]])
    # A missing first choice is skipped; instance-id names every instance.
    inv = inventory.load(
        source(tmp_path, moto, filters={"tag:Role": "app"}, hostnames=["tag:Nope", "instance-id"])
    )
    ids = moto["ids"]
    assert sorted(inv.hosts) == sorted([ids["app01"], ids["app02"], ids["noname"]])
    # Nothing matches at all: the instance id is the last resort.
    inv = inventory.load(source(tmp_path, moto, filters={"tag:Role": "db"}, hostnames="tag:Nope"))
    assert list(inv.hosts) == [ids["pg01a"]]


def test_host_vars(tmp_path: Path, moto: dict[str, Any]) -> None:
    path = source(
        tmp_path,
        moto,
        filters={"tag:Name": "app01"},
        vars={"ansible_user": "ubuntu", "deploy": {"path": "/srv/instagram"}},
        compose={"ec2_instance_type": "instance_type", "ec2_zone": "placement.availability_zone"},
    )
    host = inventory.load(path).hosts["app01"]
    raw = describe(moto, "app01")
    assert host.address == raw["PrivateIpAddress"]
    assert host.user == "ubuntu"
    assert host.domain("deploy") == {"path": "/srv/instagram"}
    assert host.vars["ec2_instance_type"] == "c1.xlarge"
    assert host.vars["ec2_zone"] == "us-east-1a"
    assert host.vars["ec2_tags"] == {"Name": "app01", "Role": "app"}
    assert host.domain("aws") == {
        "endpoint_url": moto["endpoint"],
        "region": "us-east-1",
        "instance_id": moto["ids"]["app01"],
        "availability_zone": "us-east-1a",
        "private_ip": raw["PrivateIpAddress"],
        "public_ip": raw.get("PublicIpAddress"),
        "instance_type": "c1.xlarge",
        "state": "running",
        "tags": {"Name": "app01", "Role": "app"},
    }


def test_aws_vars_reach_aws_for_the_host(tmp_path: Path, moto: dict[str, Any]) -> None:
    """The host's aws: vars are enough for later code to call AWS about that host."""
    host = inventory.load(source(tmp_path, moto, filters={"tag:Name": "pg01a"})).hosts["pg01a"]
    ec2 = aws.client("ec2", host.domain("aws"))
    reply = ec2.describe_instances(InstanceIds=[host.domain("aws")["instance_id"]])
    assert reply["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"] == "us-east-1a"
    assert aws.client("ec2", host.domain("aws")) is ec2  # cached, shared by threads


def test_public_ip_as_ansible_host(tmp_path: Path, moto: dict[str, Any]) -> None:
    path = source(
        tmp_path, moto, filters={"tag:Name": "app02"}, ansible_host_from="public-ip-address"
    )
    host = inventory.load(path).hosts["app02"]
    raw = describe(moto, "app02")
    assert raw["PublicIpAddress"] != raw["PrivateIpAddress"]
    assert host.address == raw["PublicIpAddress"]


def test_several_regions(tmp_path: Path, moto: dict[str, Any]) -> None:
    path = source(
        tmp_path,
        moto,
        regions=["us-east-1", "us-west-2"],
        filters={"tag:Name": ["app01", "west01"]},
        keyed_groups=[{"key": "placement.region", "prefix": "region"}],
    )
    inv = inventory.load(path)
    assert set(inv.hosts) == {"app01", "west01"}
    assert inv.hosts["west01"].domain("aws")["region"] == "us-west-2"
    assert inv.hosts["west01"].domain("aws")["availability_zone"] == "us-west-2a"


def test_directory_mixes_static_group_vars_with_ec2(tmp_path: Path, moto: dict[str, Any]) -> None:
    (tmp_path / "10-groups.yml").write_text(
        "all:\n  vars: {ansible_user: ubuntu}\n"
        "role_app:\n  vars: {deploy: {service: gunicorn}}\n"
        "role_db:\n  vars: {postgres: {port: 5432}}\n"
    )
    source(
        tmp_path,
        moto,
        name="20-ec2.yml",
        filters={"tag:Role": ["app", "db"]},
        keyed_groups=[{"key": "tags.Role", "prefix": "role"}],
    )
    (tmp_path / "ec2.example.yml").write_text("source: ec2\nregions: [nowhere-1]\n")
    inv = inventory.load(tmp_path)
    assert [Path(s).name for s in inv.sources] == ["10-groups.yml", "20-ec2.yml"]
    assert inv.hosts["app01"].domain("deploy") == {"service": "gunicorn"}
    assert inv.hosts["pg01a"].domain("postgres") == {"port": 5432}
    assert inv.hosts["pg01a"].user == "ubuntu"


def test_duplicate_names_are_an_error(tmp_path: Path, moto: dict[str, Any]) -> None:
    with pytest.raises(InventoryError) as err:
        inventory.load(source(tmp_path, moto, filters={"tag:Role": "dup"}))
    ids = moto["ids"]
    assert "are both named 'dup'" in err.value.message
    assert ids["dup1"] in err.value.message and ids["dup2"] in err.value.message
    # Falling through to instance ids makes them unique.
    path = source(tmp_path, moto, filters={"tag:Role": "dup"}, hostnames="instance-id")
    inv = inventory.load(path)
    assert set(inv.hosts) == {ids["dup1"], ids["dup2"]}


def test_no_credentials_is_one_line_with_hint(
    tmp_path: Path, moto: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    aws.reset()
    path = source(tmp_path, moto)
    with pytest.raises(InventoryError) as err:
        inventory.load(path)
    assert err.value.message == f"{path}: EC2 discovery in us-east-1: no usable AWS credentials"
    assert err.value.hint and "AWS_PROFILE" in err.value.hint


def test_unknown_profile(tmp_path: Path, moto: dict[str, Any]) -> None:
    path = source(tmp_path, moto, aws={"endpoint_url": moto["endpoint"], "profile": "nope"})
    with pytest.raises(InventoryError) as err:
        inventory.load(path)
    assert "AWS profile 'nope' not found" in err.value.message
    assert err.value.hint and "aws.profile" in err.value.hint


def test_unreachable_endpoint(tmp_path: Path, moto: dict[str, Any]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    path = source(tmp_path, moto, aws={"endpoint_url": closed})
    with pytest.raises(InventoryError) as err:
        inventory.load(path)
    assert err.value.message.startswith(f"{path}: EC2 discovery in us-east-1: cannot reach")
    assert closed in err.value.message
