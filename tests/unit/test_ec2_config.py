"""EC2 source: config validation and instance → host mapping, without AWS."""

from __future__ import annotations

from typing import Any

import pytest

from opskit import inventory
from opskit.errors import InventoryError
from opskit.inventory import ec2


def config(**extra: Any) -> ec2.Ec2Config:
    return ec2.parse_config({"source": "ec2", "regions": "eu-west-1", **extra}, "ec2.yml")


def instance(iid: str, ip: str = "10.0.0.1", **tags: str) -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "InstanceType": "r3.4xlarge",
        "PrivateIpAddress": ip,
        "PrivateDnsName": f"ip-{ip.replace('.', '-')}.ec2.internal",
        "PublicDnsName": "",
        "Placement": {"AvailabilityZone": "eu-west-1c"},
        "State": {"Name": "running"},
        "SecurityGroups": [{"GroupName": "db-sg", "GroupId": "sg-1"}],
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }


def test_defaults() -> None:
    cfg = config()
    assert cfg.regions == ["eu-west-1"]
    assert cfg.filters == [{"Name": "instance-state-name", "Values": ["running"]}]
    assert cfg.hostnames == list(ec2.DEFAULT_HOSTNAMES)
    assert cfg.ansible_host_from == "private-ip-address"


def test_scalar_filter_becomes_list() -> None:
    cfg = config(filters={"tag:Role": "app", "tag:Shard": [1, 2], "instance-state-name": "stopped"})
    assert cfg.filters == [
        {"Name": "tag:Role", "Values": ["app"]},
        {"Name": "tag:Shard", "Values": ["1", "2"]},
        {"Name": "instance-state-name", "Values": ["stopped"]},
    ]


def test_region_from_aws_settings() -> None:
    cfg = ec2.parse_config({"source": "ec2", "aws": {"region": "us-east-1"}}, "e.yml")
    assert cfg.regions == ["us-east-1"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"regionz": ["x"]}, "unknown key 'regionz'"),
        ({"regions": None}, "has no regions"),
        ({"regions": [1]}, "'regions' must be a string or a list"),
        ({"filters": ["tag:Role=app"]}, "'filters' must be a mapping"),
        ({"filters": {"tag:Role": []}}, "filter 'tag:Role' needs a value"),
        ({"filters": {"tag:Role": {"a": 1}}}, "filter 'tag:Role' needs a value"),
        ({"keyed_groups": {"key": "tags.Role"}}, "keyed_groups must be a list"),
        ({"keyed_groups": [{"prefix": "role"}]}, "needs a 'key' string"),
        ({"keyed_groups": [{"key": "tags.Role", "parent": "x"}]}, "unknown keyed_groups option"),
        ({"compose": {"x": 1}}, "'compose.x' must be a string"),
        ({"vars": [1]}, "'vars' must be a mapping"),
    ],
)
def test_config_errors_name_the_file(extra: dict[str, Any], message: str) -> None:
    data = {"source": "ec2", "regions": ["us-east-1"], **extra}
    with pytest.raises(InventoryError) as err:
        ec2.parse_config(data, "inventory/ec2.yml")
    assert err.value.message.startswith("inventory/ec2.yml: ")
    assert message in err.value.message
    assert err.value.hint


def test_bad_config_fails_before_any_aws_call() -> None:
    with pytest.raises(InventoryError, match="<string>: unknown key 'filter'"):
        inventory.loads("source: ec2\nregions: [us-east-1]\nfilter: {tag:Role: app}\n")


def test_unknown_source_kind() -> None:
    with pytest.raises(InventoryError, match="unknown inventory source 'gcp'"):
        inventory.loads("source: gcp\n")


def test_build_hosts_names_vars_groups() -> None:
    cfg = config(
        keyed_groups=[
            {"key": "tags.Role", "prefix": "role"},
            {"key": "placement.availability_zone", "prefix": "az", "separator": "-"},
            {"key": "security_groups.0.group_name"},
            {"key": "tags"},
        ],
        groups="ec2",
        aws={"profile": "prod"},
        vars={"ansible_user": "ubuntu"},
        compose={"sg": "security_groups.0.group_id", "none": "no.such.path"},
    )
    found = [("eu-west-1", instance("i-1", "10.0.0.1", Name="redis01a", Role="redis"))]
    (host,) = ec2.build_hosts(cfg, found, "ec2.yml")
    assert host.name == "redis01a"
    assert host.groups == ["ec2", "role_redis", "az-eu_west_1c", "db_sg",
                           "Name_redis01a", "Role_redis"]  # fmt: skip
    assert host.vars["ansible_host"] == "10.0.0.1"
    assert host.vars["ansible_user"] == "ubuntu"
    assert host.vars["sg"] == "sg-1"
    assert "none" not in host.vars
    assert host.vars["aws"]["profile"] == "prod"
    assert host.vars["aws"]["public_ip"] is None
    assert host.vars["aws"]["region"] == "eu-west-1"


def test_empty_strings_count_as_absent() -> None:
    cfg = config(hostnames=["public-dns-name", "dns-name", "private-dns-name"])
    (host,) = ec2.build_hosts(cfg, [("eu-west-1", instance("i-9", "10.1.2.3"))], "e.yml")
    assert host.name == "ip-10-1-2-3.ec2.internal"


def test_public_ip_missing_falls_back_to_private() -> None:
    cfg = config(ansible_host_from="public-ip-address")
    (host,) = ec2.build_hosts(cfg, [("eu-west-1", instance("i-9", "10.1.2.3"))], "e.yml")
    assert host.vars["ansible_host"] == "10.1.2.3"


def test_duplicate_names() -> None:
    found = [("eu-west-1", instance(i, Name="same")) for i in ("i-1", "i-2")]
    with pytest.raises(InventoryError, match="instances i-1 and i-2 are both named 'same'"):
        ec2.build_hosts(config(), found, "e.yml")


def test_lookup() -> None:
    data = ec2.snake_instance(instance("i-5", Name="x"))
    assert ec2.lookup(data, "tag:Name") == "x"
    assert ec2.lookup(data, "instance-id") == "i-5"
    assert ec2.lookup(data, "placement.availability_zone") == "eu-west-1c"
    assert ec2.lookup(data, "security_groups.0.group_id") == "sg-1"
    assert ec2.lookup(data, "security_groups.5.group_id") is None
    assert ec2.lookup(data, "public-dns-name") is None
    assert data["tags"] == {"Name": "x"}
