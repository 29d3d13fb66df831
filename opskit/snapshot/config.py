"""A host's ``snapshot:`` settings (inventory), with command-line overrides."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from opskit.errors import InventoryError, UsageError
from opskit.inventory import Host

DEFAULT_FREEZE_TIMEOUT = 30.0


@dataclass(frozen=True)
class SnapshotConfig:
    mount: str
    freeze_timeout: float = DEFAULT_FREEZE_TIMEOUT
    discovery_root: str = "/"
    volumes: tuple[str, ...] = ()          # declared member volume ids, in member order
    pre_freeze: tuple[str, ...] = ()       # shell commands run before the freeze
    retention: str = "default"
    aws: dict[str, Any] = field(default_factory=dict)

    @property
    def instance_id(self) -> str | None:
        value = self.aws.get("instance_id")
        return str(value) if value else None


def load(host: Host, mount: str | None, freeze_timeout: float | None,
         retention: str | None = None) -> SnapshotConfig:
    d = host.domain("snapshot")
    mount = mount or d.get("mount")
    if not isinstance(mount, str) or not mount.startswith("/"):
        raise UsageError(f"host {host.name}: which mount? got {mount!r}",
                         hint="pass --mount /data or set snapshot.mount in the inventory")
    if posixpath.normpath(mount) == "/":
        raise UsageError("refusing to freeze /: it would block the whole host",
                         hint="snapshot a data mount such as /data")
    timeout = (freeze_timeout if freeze_timeout is not None
               else host.seconds("snapshot", "freeze_timeout", DEFAULT_FREEZE_TIMEOUT))
    if not 0 < timeout <= 600:
        raise UsageError(f"--freeze-timeout must be in (0, 600] seconds, got {timeout:g}",
                         hint="the default is 30")
    volumes = d.get("volumes") or []
    hooks = d.get("pre_freeze") or []
    if not isinstance(volumes, list) or not all(isinstance(v, str) for v in volumes):
        raise InventoryError(f"host {host.name}: snapshot.volumes must be a list of volume ids")
    if isinstance(hooks, str):
        hooks = [hooks]
    return SnapshotConfig(
        mount=posixpath.normpath(mount),
        freeze_timeout=timeout,
        discovery_root=str(d.get("discovery_root") or "/"),
        volumes=tuple(volumes),
        pre_freeze=tuple(str(h) for h in hooks),
        retention=retention or str(d.get("retention", "default")),
        aws=dict(host.domain("aws")),
    )
