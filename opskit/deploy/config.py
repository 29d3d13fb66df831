"""A host's ``deploy:`` settings, checked before anything runs.

Placeholders ``{address}`` and ``{name}`` in ``health_url``, ``install``, ``start`` and a
``reload`` command are filled with the host's address and inventory name (the lab binds each
host's gunicorn to its own address): in the commands as quoted shell words, and only when the
value is a plain host word (``validate.is_host_word``): with the EC2 source a name is a tag.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from opskit.deploy import validate
from opskit.errors import InventoryError
from opskit.inventory import Host

RELOAD_METHODS = ("hup", "usr2")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


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
        # Every path of a release is made here: the last guard against a name from a host.
        return posixpath.join(self.releases_dir, validate.check_release_id(release))


def _fill(template: str | None, host: Host, key: str, shell: bool = True) -> str | None:
    """``template`` with its placeholders filled; ``shell``: as quoted shell words."""
    if template is None:
        return None
    values = {"address": host.address, "name": host.name}

    def sub(m: re.Match[str]) -> str:
        what = m.group(1)
        if what not in values:
            raise InventoryError(
                f"host {host.name!r}: unknown placeholder {{{what}}} in deploy.{key}",
                hint="only {address} and {name} are filled in",
            )
        value = str(values[what])
        if not validate.is_host_word(value):
            said = "its name" if what == "name" else f"its address {value!r}"
            raise InventoryError(
                f"host {host.name!r}: {said} cannot be filled into deploy.{key} (not a plain "
                f"host name or address)",
                hint="letters, digits and . _ : - only (check the inventory or the EC2 Name "
                     "tag), or leave {" + what + "} out of the template",
            )
        return shlex.quote(value) if shell else value

    return _PLACEHOLDER.sub(sub, template)


def _rel_paths(host: Host, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InventoryError(f"host {host.name}: deploy.{key} must be a list of relative paths")
    for v in value:
        if not validate.is_inside_path(v):
            raise InventoryError(
                f"host {host.name}: deploy.{key} entry {v!r} must be a relative path without "
                f"'..' (inside the release)",
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
        install=_fill(d.get("install"), host, "install"),
        reload=reload,
        reload_command=_fill(reload_command, host, "reload"),
        pid_file=d.get("pid_file"),
        start=_fill(d.get("start"), host, "start"),
        # An argument of the probe, not shell: no quotes in the URL.
        health_url=_fill(d.get("health_url"), host, "health_url", shell=False),
        health_timeout=host.seconds("deploy", "health_timeout", 10),
        expect_release=bool(d.get("expect_release", True)),
        target_group_arn=d.get("target_group_arn"),
        drain_timeout=host.seconds("deploy", "drain_timeout", 30),
        healthy_timeout=host.seconds("deploy", "healthy_timeout", 60),
        aws=dict(host.domain("aws")),
    )


def check_release_name(name: str) -> str:
    """Release ids become directory names and words of commands: only opskit's own grammar."""
    return validate.check_release_id(name)
