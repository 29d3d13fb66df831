"""Reading and deleting snapshot sets on EC2 (the AWS side of list, verify, prune, restore)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opskit import aws
from opskit.errors import UsageError
from opskit.inventory import Host
from opskit.snapshot import sets as sets_mod
from opskit.snapshot.retention import PrunePlan
from opskit.snapshot.sets import SnapshotSet


def _accounts(hosts: Sequence[Host]) -> list[tuple[dict[str, Any], list[str]]]:
    """Hosts grouped by where their snapshots live (region, endpoint, credentials)."""
    groups: dict[tuple[Any, ...], tuple[dict[str, Any], list[str]]] = {}
    for h in hosts:
        a = {k: v for k, v in h.domain("aws").items()
             if k in ("region", "profile", "endpoint_url", "access_key_id", "secret_access_key")}
        key = tuple(sorted(a.items()))
        groups.setdefault(key, (a, []))[1].append(h.name)
    return list(groups.values())


def snapshots(aws_vars: Mapping[str, Any], host_names: Iterable[str]) -> list[dict[str, Any]]:
    ec2 = aws.client("ec2", aws_vars)
    pages = aws.call(lambda: list(ec2.get_paginator("describe_snapshots").paginate(
        OwnerIds=["self"],
        Filters=[{"Name": "tag-key", "Values": [sets_mod.SET_ID]},
                 {"Name": f"tag:{sets_mod.HOST}", "Values": sorted(host_names)}])))
    return [s for page in pages for s in page.get("Snapshots", [])]


def sets_by_account(hosts: Sequence[Host],
                    mount: str | None = None) -> list[tuple[dict[str, Any], list[SnapshotSet]]]:
    """The selected hosts' opskit sets, per AWS account/region they live in."""
    out = []
    for aws_vars, names in _accounts(hosts):
        found = sets_mod.group(snapshots(aws_vars, names))
        out.append((aws_vars, [s for s in found if not mount or s.mount == mount]))
    return out


def list_sets(hosts: Sequence[Host], mount: str | None = None) -> list[SnapshotSet]:
    """Every opskit set of the selected hosts (newest first), optionally of one mount."""
    found = [s for _, sets in sets_by_account(hosts, mount) for s in sets]
    return sets_mod.newest_first(found)


def find_set(hosts: Sequence[Host], set_id: str) -> tuple[SnapshotSet, dict[str, Any]]:
    """One set by id, and the aws vars to reach it."""
    for aws_vars, names in _accounts(hosts):
        for s in sets_mod.group(snapshots(aws_vars, names)):
            if s.set_id == set_id:
                return s, aws_vars
    raise UsageError(f"no snapshot set {set_id!r} for the selected hosts",
                     hint="see `opskit snapshot list`; widen -l if the set is another host's")


def delete_set(aws_vars: Mapping[str, Any], s: SnapshotSet) -> list[str]:
    ec2 = aws.client("ec2", aws_vars)
    for snap in s.snapshot_ids:
        aws.call(lambda snap=snap: ec2.delete_snapshot(SnapshotId=snap))
    return s.snapshot_ids


def delete_planned(plans: Sequence[tuple[Mapping[str, Any], PrunePlan]]) -> list[str]:
    """Delete every set a prune plan marked, account by account; the set ids deleted."""
    deleted = []
    for aws_vars, p in plans:
        for s in p.delete:
            delete_set(aws_vars, s)
            deleted.append(s.set_id)
    return deleted
