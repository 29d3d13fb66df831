"""A host's ``deploy:`` settings, checked before anything runs.

The keys, their types and grammar are the schema's (``deploy/settings.py``, read through
``settings.of``); this module makes the host's :class:`DeployConfig` from them.

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
from typing import TYPE_CHECKING, Any, cast

from opskit import settings
from opskit.deploy import validate
from opskit.errors import InventoryError
from opskit.inventory import Host

if TYPE_CHECKING:
    from opskit.deploy.settings import DeploySettings

RELOAD_METHODS = ("hup", "usr2")  # as in deploy/settings.py (not imported: pydantic)
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


def load(host: Host) -> DeployConfig:
    """The deploy settings of ``host``; InventoryError (one line) when they are unusable.

    The values are checked by the schema (``deploy/settings.py``, with file and line); what
    needs the host -- its name and address in the templates -- is checked here.
    """
    d = cast("DeploySettings", settings.of(host, "deploy"))
    reload, reload_command = d.reload, None
    if reload not in RELOAD_METHODS:
        # Anything else is a command, e.g. "systemctl reload app".
        reload, reload_command = "command", d.reload
    return DeployConfig(
        root=d.root,
        repo=d.repo,
        keep_releases=d.keep_releases,
        shared_dirs=tuple(d.shared_dirs),
        shared_files=tuple(d.shared_files),
        install=_fill(d.install, host, "install"),
        reload=reload,
        reload_command=_fill(reload_command, host, "reload"),
        pid_file=d.pid_file,
        start=_fill(d.start, host, "start"),
        # An argument of the probe, not shell: no quotes in the URL.
        health_url=_fill(d.health_url, host, "health_url", shell=False),
        health_timeout=d.health_timeout,
        expect_release=d.expect_release,
        target_group_arn=d.target_group_arn,
        drain_timeout=d.drain_timeout,
        healthy_timeout=d.healthy_timeout,
        aws=dict(host.domain("aws")),
    )


def repo(host: Host) -> str | None:
    """``deploy.repo`` of ``host`` (the git repository ``deploy --ref`` archives from)."""
    return cast("DeploySettings", settings.of(host, "deploy")).repo


def check_release_name(name: str) -> str:
    """Release ids become directory names and words of commands: only opskit's own grammar."""
    return validate.check_release_id(name)
