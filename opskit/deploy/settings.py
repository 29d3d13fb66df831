"""The ``deploy:`` settings: where an app lives on its hosts and how a release goes live.

Checked here: the grammar of each value (absolute paths, relative shared paths, the
placeholders a template may use, a URL's scheme, positive durations). Checked when the host's
config is made (``deploy/config.py``), because they need the host: its name and address are
plain host words where a template fills them in.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo, field_validator

from opskit.deploy import validate
from opskit.settings.base import AbsPath, BelowRoot, Field, Seconds, Settings, Text

RELOAD_METHODS = ("hup", "usr2")
PLACEHOLDERS = ("address", "name")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _keep(value: int) -> int:
    if value < 2:
        raise ValueError(f"must be 2 or more: current and previous are always kept (got {value})")
    return value


def _shared(value: str) -> str:
    if not validate.is_inside_path(value):
        raise ValueError(f"must be a relative path without '..' (inside the release), got "
                         f"{value!r}")
    return posixpath.normpath(value)


def _template(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if "\0" in value:
        raise ValueError("must not contain NUL")
    for what in _PLACEHOLDER.findall(value):
        if what not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{what}}}: only {{address}} and {{name}} "
                             f"are filled in")
    return value


def _url(value: str) -> str:
    _template(value)
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL (got {value!r})")
    if any(c.isspace() for c in value):
        raise ValueError(f"must not contain spaces or newlines (got {value!r})")
    return value


def _arn(value: str) -> str:
    if not value.startswith("arn:") or any(c.isspace() for c in value):
        raise ValueError(f"must be an ARN (arn:aws:elasticloadbalancing:...), got {value!r}")
    return value


KeepReleases = Annotated[int, AfterValidator(_keep)]
SharedPath = Annotated[str, AfterValidator(_shared)]
Template = Annotated[str, AfterValidator(_template)]
Url = Annotated[str, AfterValidator(_url)]
Arn = Annotated[str, AfterValidator(_arn)]


class DeploySettings(Settings):
    """An app's releases on its hosts: build, upload, switch, reload, health, prune."""

    root: BelowRoot = Field(description="The app's directory on the host (absolute, below /): "
                       "releases/, shared/ and the current link live here.")
    repo: Text | None = Field(None, description="The app's git repository on the operator "
                              "machine; `deploy --ref` archives the ref from it.")
    keep_releases: KeepReleases = Field(5, description="How many releases to keep on each "
                                        "host (2 or more); current and previous are never "
                                        "pruned.")
    shared_dirs: list[SharedPath] = Field([], description="Directories under shared/ linked "
                                          "into every release (relative paths without '..', "
                                          "e.g. [log, tmp/pids]).")
    shared_files: list[SharedPath] = Field([], description="Files under shared/ linked into "
                                           "every release (they must exist there).")
    install: Template | None = Field(None, description="Shell command run in the new release "
                                     "directory before it goes live (e.g. build the "
                                     "virtualenv); {address} and {name} are filled in.")
    reload: Template = Field("hup", description="How the app picks up the new release: hup "
                             "(SIGHUP to the gunicorn master), usr2 (SIGUSR2, a new master), "
                             "or any other text is a shell command, e.g. `systemctl reload "
                             "app`.")
    pid_file: AbsPath | None = Field(None, validate_default=True, description="The gunicorn "
                                     "master's pid file on the host (absolute); required with "
                                     "reload hup or usr2.")
    start: Template | None = Field(None, description="Shell command that starts the app when "
                                   "no master is running; {address} and {name} are filled in.")
    health_url: Url | None = Field(None, description="URL polled on the host after the reload "
                                   "until it answers 200, e.g. http://{address}:8000/health; "
                                   "unset: no health check.")
    health_timeout: Seconds = Field(10.0, description="Seconds the health URL has to answer "
                                    "200 (with the release id) before the host fails.")
    expect_release: bool = Field(True, description="Whether the health answer must contain the "
                                 "new release id (proof the new code is serving).")
    target_group_arn: Arn | None = Field(None, description="ELBv2 target group the host is "
                                         "taken out of for the switch and reload (needs "
                                         "aws.instance_id); unset: no load balancer step.")
    drain_timeout: Seconds = Field(30.0, description="Seconds to wait for the host to drain "
                                   "from the target group before the switch.")
    healthy_timeout: Seconds = Field(60.0, description="Seconds to wait for the host to be "
                                     "healthy in the target group again after the reload.")

    @field_validator("pid_file")
    @classmethod
    def _pid_file_for_signals(cls, value: str | None, info: ValidationInfo) -> str | None:
        reload = info.data.get("reload")  # absent: reload itself is wrong (reported alone)
        if value is None and reload in RELOAD_METHODS:
            raise ValueError(f"is required with reload {reload}: the gunicorn master's pid "
                             f"file, e.g. /srv/APP/shared/pids/gunicorn.pid")
        return value
