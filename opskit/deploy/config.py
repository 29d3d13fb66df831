"""A host's ``deploy:`` settings, checked before anything runs.

Placeholders ``{address}`` and ``{name}`` in ``health_url`` and ``start`` are filled with the
host's address and inventory name (the lab binds each host's gunicorn to its own address).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from opskit.errors import InventoryError, UsageError
from opskit.inventory import Host

RELOAD_METHODS = ("hup", "usr2")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class DeployConfig:
    root: str
    repo: str | None = None
    keep_releases: int = 5
    shared_dirs: tuple[str, ...] = ()
    shared_files: tuple[str, ...] = ()
    install: str | None = None
    reload: str = "hup"
    reload_command: str | None = None
    pid_file: str | None = None
    start: str | None = None
    health_url: str | None = None
    health_timeout: float = 10.0
    expect_release: bool = True
    target_group_arn: str | None = None
    drain_timeout: float = 30.0
    healthy_timeout: float = 60.0
    aws: dict[str, Any] = field(default_factory=dict)

    @property
    def releases_dir(self) -> str:
        return posixpath.join(self.root, "releases")

    @property
    def shared_dir(self) -> str:
        return posixpath.join(self.root, "shared")

    @property
    def current(self) -> str:
        return posixpath.join(self.root, "current")

    def release_dir(self, release: str) -> str:
        return posixpath.join(self.releases_dir, release)


def _fill(template: str | None, host: Host) -> str | None:
    if template is None:
        return None
    values = {"address": host.address, "name": host.name}

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise InventoryError(
                f"host {host.name}: unknown placeholder {{{m.group(1)}}} in deploy settings",
                hint="only {address} and {name} are filled in",
            )
        return values[m.group(1)]

    return _PLACEHOLDER.sub(sub, template)


def _rel_paths(host: Host, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InventoryError(f"host {host.name}: deploy.{key} must be a list of relative paths")
    for v in value:
        norm = posixpath.normpath(v)
        if v.startswith("/") or norm.startswith("..") or norm == ".":
            raise InventoryError(
                f"host {host.name}: deploy.{key} entry {v!r} must be a path inside the release",
                hint="e.g. shared_dirs: [log, tmp/pids]",
            )
    return tuple(posixpath.normpath(v) for v in value)


def load(host: Host) -> DeployConfig:
    """The deploy settings of ``host``; InventoryError (one line) when they are unusable."""
    d = host.domain("deploy")
    root = d.get("root")
    if not isinstance(root, str) or not root.startswith("/") or posixpath.normpath(root) == "/":
        raise InventoryError(
            f"host {host.name}: deploy.root must be an absolute path below /, got {root!r}",
            hint="set deploy: {root: /srv/APP} in the group vars of the app hosts",
        )
    keep = d.get("keep_releases", 5)
    if not isinstance(keep, int) or keep < 2:
        raise InventoryError(
            f"host {host.name}: deploy.keep_releases must be an integer >= 2, got {keep!r}",
            hint="current and previous are always kept; 5 is the default",
        )
    reload = d.get("reload", "hup")
    reload_command = None
    if reload not in RELOAD_METHODS:
        # Anything else is a command, e.g. "systemctl reload app".
        reload, reload_command = "command", str(reload)
    if reload in ("hup", "usr2") and not d.get("pid_file"):
        raise InventoryError(
            f"host {host.name}: deploy.reload {reload} needs deploy.pid_file",
            hint="the gunicorn master's pid file, e.g. /srv/APP/shared/pids/gunicorn.pid",
        )
    return DeployConfig(
        root=posixpath.normpath(root),
        repo=d.get("repo"),
        keep_releases=keep,
        shared_dirs=_rel_paths(host, "shared_dirs", d.get("shared_dirs")),
        shared_files=_rel_paths(host, "shared_files", d.get("shared_files")),
        install=_fill(d.get("install"), host),
        reload=reload,
        reload_command=_fill(reload_command, host),
        pid_file=d.get("pid_file"),
        start=_fill(d.get("start"), host),
        health_url=_fill(d.get("health_url"), host),
        health_timeout=host.seconds("deploy", "health_timeout", 10),
        expect_release=bool(d.get("expect_release", True)),
        target_group_arn=d.get("target_group_arn"),
        drain_timeout=host.seconds("deploy", "drain_timeout", 30),
        healthy_timeout=host.seconds("deploy", "healthy_timeout", 60),
        aws=dict(host.domain("aws")),
    )


def check_release_name(name: str) -> str:
    """Release ids become directory names: refuse anything that could escape releases/."""
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise UsageError(f"bad release name {name!r}", hint="release ids look like "
                             "20261124034512123-abc1234")
    return name
