"""The ``snapshot:`` settings: which mount of a host is snapshotted, and how.

``enabled: false`` is a promise: that host is never frozen nor snapshotted (``snapshot
create`` skips it, visibly, and refuses a selection of only such hosts).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from opskit.settings.base import AbsPath, BelowRoot, Distinct, Field, PlainName, Seconds, Settings

MAX_FREEZE_TIMEOUT = 600.0  # as --freeze-timeout: a longer freeze blocks the database too long
_VOLUME_ID = re.compile(r"vol-[0-9a-f]{1,32}\Z")


def _freeze_timeout(value: float) -> float:
    if value > MAX_FREEZE_TIMEOUT:
        raise ValueError(f"must be at most {MAX_FREEZE_TIMEOUT:g} seconds (got {value:g})")
    return value


def _volume_id(value: str) -> str:
    if not _VOLUME_ID.match(value):
        raise ValueError(f"must be an EBS volume id such as vol-0a1b2c3d (got {value!r})")
    return value


def _command(value: str) -> str:
    if not value.strip() or "\0" in value:
        raise ValueError(f"must be a shell command (not empty, no NUL), got {value!r}")
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


FreezeTimeout = Annotated[Seconds, AfterValidator(_freeze_timeout)]
VolumeId = Annotated[str, AfterValidator(_volume_id)]
Command = Annotated[str, AfterValidator(_command)]


class SnapshotSettings(Settings):
    """Consistent EBS snapshot sets of a RAID-backed mount, under one guarded freeze."""

    enabled: bool = Field(True, description="false: never freeze nor snapshot this host "
                          "(`snapshot create` skips it and says so; e.g. a primary whose "
                          "replica is snapshotted instead).")
    mount: BelowRoot | None = Field(None, description="The mount point to freeze and snapshot, "
                                "e.g. /data (absolute, not /); `--mount` overrides it.")
    freeze_timeout: FreezeTimeout = Field(30.0, description="Seconds after which the freeze "
                                          "guard thaws whatever happens (at most 600); a set "
                                          "whose snapshot call outlasts it is discarded. "
                                          "`--freeze-timeout` overrides it.")
    discovery_root: AbsPath = Field("/", description="Prefix under which discovery reads "
                                    "proc/mounts, sys/block and dev/disk/by-id (the lab and "
                                    "tests point it at a fixture tree).")
    volumes: Annotated[list[VolumeId], Distinct] = Field(
        [], description="The mount's EBS member volume ids in member order, where discovery "
        "cannot tell the order; when set, discovery must agree with it.")
    pre_freeze: Annotated[list[Command], BeforeValidator(_one_or_many)] = Field(
        [], description="Shell command, or list of them, run on the host before the freeze "
        "(e.g. psql -c CHECKPOINT); a failing one stops that host before anything is frozen.")
    retention: PlainName = Field("default", description="The retention class tagged on each "
                                 "set (opskit:retention), for prune policies; `--retention` "
                                 "overrides it.")
