"""A host's ``snapshot:`` settings (inventory), with command-line overrides.

The keys, their types and grammar are the schema's (``snapshot/settings.py``, read through
``settings.of``); this module makes the host's :class:`SnapshotConfig` from them and the
options, and answers whether a host may be snapshotted at all (``snapshot.enabled``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from opskit import settings
from opskit.errors import SafetyError, UsageError
from opskit.inventory import Host

if TYPE_CHECKING:
    from opskit.snapshot.settings import SnapshotSettings

DEFAULT_FREEZE_TIMEOUT = 30.0
DISABLED = "snapshot.enabled is false"  # why such a host is skipped: never frozen


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


def _settings(host: Host) -> SnapshotSettings:
    return cast("SnapshotSettings", settings.of(host, "snapshot"))


def enabled(host: Host) -> bool:
    """False when the inventory says ``snapshot: {enabled: false}``: never freeze that host."""
    return _settings(host).enabled


def load(host: Host, mount: str | None, freeze_timeout: float | None,
         retention: str | None = None) -> SnapshotConfig:
    """``host``'s snapshot config; the options (``--mount``…) override the inventory.

    A host with ``snapshot.enabled: false`` has none: SafetyError, so no code path can freeze
    it (``snapshot create`` leaves such hosts out first, see :func:`enabled`).
    """
    d = _settings(host)
    if not d.enabled:
        raise SafetyError(f"host {host.name}: {DISABLED}: it is never frozen nor snapshotted",
                          hint="leave it out of the selection (-l), or set snapshot.enabled "
                               "to true in the inventory")
    mount = mount or d.mount
    if not isinstance(mount, str) or not mount.startswith("/"):
        raise UsageError(f"host {host.name}: which mount? got {mount!r}",
                         hint="pass --mount /data or set snapshot.mount in the inventory")
    if not posixpath.normpath(mount).strip("/"):  # "/", "//", "/./.."
        raise UsageError("refusing to freeze /: it would block the whole host",
                         hint="snapshot a data mount such as /data")
    timeout = freeze_timeout if freeze_timeout is not None else d.freeze_timeout
    if not 0 < timeout <= 600:
        raise UsageError(f"--freeze-timeout must be in (0, 600] seconds, got {timeout:g}",
                         hint="the default is 30")
    return SnapshotConfig(
        mount=posixpath.normpath(mount),
        freeze_timeout=timeout,
        discovery_root=d.discovery_root,
        volumes=tuple(d.volumes),
        pre_freeze=tuple(d.pre_freeze),
        retention=retention or d.retention,
        aws=dict(host.domain("aws")),
    )
