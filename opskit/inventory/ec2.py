"""EC2 discovery: turn a ``source: ec2`` inventory file into hosts, vars and groups.

The file says where to look (``regions``, ``filters``), how to name hosts (``hostnames``
preference list), how to group them (``keyed_groups``, static ``groups``) and which vars to
give them (``vars``, ``compose``). Instances are read with the ``describe_instances``
paginator through :func:`opskit.aws.client`, so a lab file that sets ``aws.endpoint_url``
(moto) runs exactly the production code.

Instance data is addressed with Ansible's snake_case keys (``placement.availability_zone``,
``private_ip_address``, ``tags.Role``), as in Ansible's aws_ec2 plugin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opskit.errors import InventoryError, OpskitError

KEYS = frozenset(
    {
        "source",
        "regions",
        "filters",
        "keyed_groups",
        "hostnames",
        "ansible_host_from",
        "compose",
        "vars",
        "aws",
        "groups",
    }
)
DEFAULT_HOSTNAMES = ("tag:Name", "private-dns-name", "private-ip-address", "instance-id")
# Filter-style names that are not simply the snake_case field name.
_ALIASES = {"dns-name": "public_dns_name", "ip-address": "public_ip_address"}
_UNSAFE_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_]")


@dataclass
class KeyedGroup:
    key: str
    prefix: str = ""
    separator: str = "_"


@dataclass
class Ec2Config:
    regions: list[str]
    filters: list[dict[str, Any]]
    keyed_groups: list[KeyedGroup]
    hostnames: list[str]
    ansible_host_from: str
    compose: dict[str, str]
    vars: dict[str, Any]
    aws: dict[str, Any]
    groups: list[str]


@dataclass
class Ec2Host:
    """A discovered instance, ready for the inventory: name, host vars, group names."""

    name: str
    vars: dict[str, Any]
    groups: list[str] = field(default_factory=list)


def discover(data: Mapping[str, Any], source: str) -> list[Ec2Host]:
    """Query EC2 as ``data`` (the parsed file) says; ``source`` names the file in errors."""
    config = parse_config(data, source)
    found: list[tuple[str, dict[str, Any]]] = []
    for region in config.regions:
        found.extend((region, inst) for inst in _describe(config, region, source))
    return build_hosts(config, found, source)


def parse_config(data: Mapping[str, Any], source: str) -> Ec2Config:
    """Validate the file's keys and types before any AWS call."""
    unknown = sorted(set(map(str, data)) - KEYS)
    if unknown:
        raise InventoryError(
            f"{source}: unknown key '{unknown[0]}' in EC2 source",
            hint="known keys: " + ", ".join(sorted(KEYS)),
        )
    aws_vars = _mapping(data.get("aws"), "aws", source)
    regions = _str_list(data.get("regions"), "regions", source) or (
        [aws_vars["region"]] if aws_vars.get("region") else []
    )
    if not regions:
        raise InventoryError(
            f"{source}: EC2 source has no regions",
            hint="add `regions: [us-east-1]` (or aws.region) to the source file",
        )
    return Ec2Config(
        regions=regions,
        filters=_filters(data.get("filters"), source),
        keyed_groups=_keyed_groups(data.get("keyed_groups"), source),
        hostnames=_str_list(data.get("hostnames"), "hostnames", source) or list(DEFAULT_HOSTNAMES),
        ansible_host_from=_str(data.get("ansible_host_from"), "ansible_host_from", source)
        or "private-ip-address",
        compose={
            k: _str(v, f"compose.{k}", source)
            for k, v in _mapping(data.get("compose"), "compose", source).items()
        },
        vars=_mapping(data.get("vars"), "vars", source),
        aws=aws_vars,
        groups=_str_list(data.get("groups"), "groups", source),
    )


def _filters(value: Any, source: str) -> list[dict[str, Any]]:
    """``{name: value-or-list}`` → boto3 Filters; defaults to running instances only."""
    filters = _mapping(value, "filters", source)
    out = []
    for name, values in filters.items():
        items = values if isinstance(values, list) else [values]
        if not items or any(isinstance(v, (dict, list)) or v is None for v in items):
            raise InventoryError(
                f"{source}: filter '{name}' needs a value or a list of values",
                hint="e.g. `tag:Role: [app, db]` or `instance-state-name: running`",
            )
        out.append({"Name": str(name), "Values": [str(v) for v in items]})
    # Stopped hosts cannot be reached; ask for them explicitly if wanted.
    if "instance-state-name" not in filters:
        out.append({"Name": "instance-state-name", "Values": ["running"]})
    return out


def _keyed_groups(value: Any, source: str) -> list[KeyedGroup]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InventoryError(
            f"{source}: keyed_groups must be a list",
            hint="e.g. `keyed_groups: [{key: tags.Role, prefix: role}]`",
        )
    out = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise InventoryError(
                f"{source}: each keyed_groups item needs a 'key' string",
                hint="e.g. `- {key: placement.availability_zone}`",
            )
        extra = set(item) - {"key", "prefix", "separator"}
        if extra:
            raise InventoryError(
                f"{source}: unknown keyed_groups option '{sorted(map(str, extra))[0]}'",
                hint="keyed_groups items take key, prefix and separator",
            )
        out.append(
            KeyedGroup(
                key=item["key"],
                prefix=_str(item.get("prefix"), "keyed_groups.prefix", source) or "",
                separator=_str(item.get("separator"), "keyed_groups.separator", source)
                if item.get("separator") is not None
                else "_",
            )
        )
    return out


def _mapping(value: Any, what: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InventoryError(f"{source}: '{what}' must be a mapping", hint=f"write `{what}: {{…}}`")
    return dict(value)


def _str(value: Any, what: str, source: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InventoryError(f"{source}: '{what}' must be a string", hint="quote the value")
    return value


def _str_list(value: Any, what: str, source: str) -> list[str]:
    """A string or a list of strings (a scalar becomes a one-item list)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in items):
        raise InventoryError(
            f"{source}: '{what}' must be a string or a list of strings",
            hint=f"e.g. `{what}: [a, b]`",
        )
    return list(items)


def _describe(config: Ec2Config, region: str, source: str) -> Iterator[dict[str, Any]]:
    """Every instance matching the filters in ``region``; AWS errors become InventoryError."""
    from opskit import aws

    what = f"{source}: EC2 discovery in {region}"
    try:
        ec2 = aws.client("ec2", config.aws, region=region)
    except OpskitError as exc:  # e.g. an unknown profile: explained already, give it our context
        raise InventoryError(f"{what}: {exc.message}", exc.hint) from exc
    with aws.errors(what, error=InventoryError):
        pages = ec2.get_paginator("describe_instances").paginate(Filters=config.filters)
        instances = [
            inst
            for page in pages
            for res in page.get("Reservations", [])
            for inst in res["Instances"]
        ]
    yield from instances


def build_hosts(
    config: Ec2Config, found: list[tuple[str, dict[str, Any]]], source: str
) -> list[Ec2Host]:
    """Name, vars and groups for each (region, raw instance) pair; pure, no AWS calls."""
    hosts: dict[str, Ec2Host] = {}
    owners: dict[str, str] = {}
    for region, raw in found:
        data = snake_instance(raw)
        name = _hostname(data, config.hostnames)
        if name in hosts:
            raise InventoryError(
                f"{source}: instances {owners[name]} and {data['instance_id']} are both "
                f"named '{name}'",
                hint="make the names unique (Name tags) or put instance-id earlier in hostnames",
            )
        owners[name] = data["instance_id"]
        hosts[name] = Ec2Host(name, _host_vars(config, data, region), _groups(config, data))
    return list(hosts.values())


def snake_instance(raw: Mapping[str, Any]) -> dict[str, Any]:
    """describe_instances data with snake_case keys; ``tags`` becomes a plain dict."""
    data = _snake(raw)
    data["tags"] = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
    return data


def _snake(value: Any) -> Any:
    from botocore import xform_name

    if isinstance(value, Mapping):
        return {xform_name(k): _snake(v) for k, v in value.items() if k != "Tags"}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def lookup(data: Mapping[str, Any], key: str) -> Any:
    """Resolve ``tag:Name``, a filter-style name (``private-ip-address``) or a dotted path.

    Returns None when absent; empty strings count as absent (EC2 reports "" for a missing
    public DNS name).
    """
    if key.startswith("tag:"):
        value: Any = data.get("tags", {}).get(key[4:])
    else:
        path = _ALIASES.get(key, key.replace("-", "_"))
        value = data
        for part in path.split("."):
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
    return None if value == "" else value


def _hostname(data: Mapping[str, Any], preferences: list[str]) -> str:
    for key in preferences:
        value = lookup(data, key)
        if value is not None and not isinstance(value, (dict, list)):
            return str(value)
    return str(data["instance_id"])  # always present: the name of last resort


def _host_vars(config: Ec2Config, data: Mapping[str, Any], region: str) -> dict[str, Any]:
    private_ip = data.get("private_ip_address") or None
    address = lookup(data, config.ansible_host_from) or private_ip
    aws_vars = {
        **config.aws,
        "region": region,
        "instance_id": data["instance_id"],
        "availability_zone": lookup(data, "placement.availability_zone"),
        "private_ip": private_ip,
        "public_ip": data.get("public_ip_address") or None,
        "instance_type": data.get("instance_type"),
        "state": lookup(data, "state.name"),
        "tags": dict(data["tags"]),
    }
    host_vars: dict[str, Any] = {"aws": aws_vars, "ec2_tags": dict(data["tags"])}
    if address is not None:
        host_vars["ansible_host"] = str(address)
    host_vars.update(config.vars)
    for var, key in config.compose.items():
        value = lookup(data, key)
        if value is not None:
            host_vars[var] = value
    return host_vars


def _groups(config: Ec2Config, data: Mapping[str, Any]) -> list[str]:
    names = list(config.groups)
    for keyed in config.keyed_groups:
        for value in _group_values(lookup(data, keyed.key)):
            safe = _UNSAFE_GROUP_CHARS.sub("_", value)
            names.append(f"{keyed.prefix}{keyed.separator}{safe}" if keyed.prefix else safe)
    return list(dict.fromkeys(names))


def _group_values(value: Any) -> list[str]:
    """A scalar gives one group, a list one per item, a dict one per ``key_value``."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [f"{k}_{v}" for k, v in value.items()]
    if isinstance(value, list):
        return [str(v) for v in value if v not in (None, "")]
    return [str(value)]
