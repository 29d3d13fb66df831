"""What the lab API returns: one LabHost per host, a LabStatus for the fleet."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LabHost:
    name: str
    address: str
    port: int
    hostname: str
    pid: int | None  # sshd listener pid; None when it is not running
    groups: tuple[str, ...]
    state_dir: pathlib.Path  # this host's dir: <state_dir>/hosts/<name>
    answering: bool = False  # TCP connect + SSH banner within 1 s
    services: dict[str, bool] = field(default_factory=dict)  # registered service -> healthy
    # Services others start (the deploy starts gunicorn) -> serving; false = not deployed yet.
    apps: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "hostname": self.hostname,
            "pid": self.pid,
            "groups": list(self.groups),
            "state_dir": str(self.state_dir),
            "answering": self.answering,
            "services": dict(self.services),
            "apps": dict(self.apps),
        }


@dataclass
class AwsStatus:
    """The lab's moto server."""

    endpoint_url: str
    pid: int | None  # None when it is not running
    answering: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "pid": self.pid, "answering": self.answering}


@dataclass
class LabStatus:
    state_dir: pathlib.Path
    inventory_path: pathlib.Path | None  # None when there is no lab
    port: int | None
    hosts: list[LabHost] = field(default_factory=list)
    aws: AwsStatus | None = None  # None when there is no lab

    @property
    def running(self) -> bool:
        """True when the lab has hosts and every one answers."""
        return bool(self.hosts) and all(h.answering for h in self.hosts)

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "inventory_path": str(self.inventory_path) if self.inventory_path else None,
            "port": self.port,
            "running": self.running,
            "hosts": [h.to_dict() for h in self.hosts],
            "aws": self.aws.to_dict() if self.aws else None,
        }
