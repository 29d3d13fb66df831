"""Reading and deleting snapshot sets on EC2 (the AWS side of list, verify, prune, restore)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opskit import aws
from opskit.errors import OpskitError, UsageError
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


@dataclass
class PruneOutcome:
    deleted: list[str] = field(default_factory=list)  # set ids, every snapshot gone
    failed: dict[str, str] = field(default_factory=dict)  # set id -> the first error


def delete_planned(plans: Sequence[tuple[Mapping[str, Any], PrunePlan]],
                   on_snapshot: Callable[[SnapshotSet, str, str | None], None]) -> PruneOutcome:
    """Delete every set a prune plan marked, account by account, snapshot by snapshot.

    ``on_snapshot(set, snapshot_id, error)`` is called as each deletion ends (error None when
    it is gone), so the journal holds each one as it happens. A failed deletion does not stop
    the others: every doomed set is tried; those left with a snapshot are ``failed``.
    """
    out = PruneOutcome()
    for aws_vars, p in plans:
        ec2 = aws.client("ec2", aws_vars) if p.delete else None
        for s in p.delete:
            for snap in s.snapshot_ids:
                try:
                    aws.call(lambda ec2=ec2, snap=snap: ec2.delete_snapshot(SnapshotId=snap),
                             f"delete {snap} of {s.set_id}")
                except OpskitError as exc:
                    out.failed.setdefault(s.set_id, exc.message)
                    on_snapshot(s, snap, exc.message)
                else:
                    on_snapshot(s, snap, None)
            if s.set_id not in out.failed:
                out.deleted.append(s.set_id)
    return out
