"""The ``redis:`` inventory vars. An instance is HOST:PORT; a host with ``redis.ports`` (a
list) has several instances, else one on ``redis.port`` (6379). The values are declared and
checked in :mod:`opskit.redis.settings` (through :func:`opskit.settings.of`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from opskit import settings
from opskit.errors import InventoryError
from opskit.inventory import Host, Inventory

if TYPE_CHECKING:
    from opskit.redis.settings import RedisSettings


@dataclass(frozen=True)
class Publish:
    """Where the apps read the current master: a JSON file on some hosts, then a reload."""

    hosts: str  # inventory pattern
    file: str
    reload: str | None


@dataclass(frozen=True)
class Instance:
    host: Host
    port: int
    cli: str
    max_link_down_seconds: float
    publish: Publish | None

    @property
    def name(self) -> str:
        return f"{self.host.name}:{self.port}"

    @property
    def address(self) -> str:
        return self.host.address

    @property
    def endpoint(self) -> str:
        return f"{self.host.address}:{self.port}"


def instances(host: Host) -> list[Instance]:
    """``host``'s Redis instances, its ``redis:`` settings checked (opskit.redis.settings)."""
    if not isinstance(host.vars.get("redis"), dict):
        raise InventoryError(f"host {host.name} has no redis settings",
                             hint="select the redis hosts, e.g. -l redis")
    r = cast("RedisSettings", settings.of(host, "redis"))
    pub = (Publish(r.publish.hosts, r.publish.file, r.publish.reload or None)
           if r.publish is not None else None)
    return [Instance(host, p, r.cli, r.max_link_down_seconds, pub)
            for p in (r.ports or [r.port])]


@dataclass(frozen=True)
class Topology:
    instances: tuple[Instance, ...]

    def find(self, spec: str) -> Instance:
        """HOST:PORT (inventory name or address), or HOST when it has one instance."""
        host, _, port = spec.rpartition(":") if ":" in spec else (spec, "", "")
        found = [i for i in self.instances if host in (i.host.name, i.address)
                 and (not port or str(i.port) == port)]
        if len(found) != 1:
            known = ", ".join(i.name for i in self.instances)
            raise InventoryError(f"no single Redis instance {spec!r} in the selection",
                                 hint=f"instances: {known}")
        return found[0]

    @property
    def lock_hosts(self) -> list[Host]:
        """Where a runbook's lease is held: every host of the selected instances."""
        hosts = {i.host.name: i.host for i in self.instances}
        return [hosts[k] for k in sorted(hosts)]

    @property
    def publish(self) -> Publish | None:
        return next((i.publish for i in self.instances if i.publish), None)


def load(inventory: Inventory, hosts: Sequence[Host]) -> Topology:
    found = tuple(i for h in hosts if "redis" in h.vars for i in instances(h))
    if not found:
        raise InventoryError("none of the selected hosts has redis settings",
                             hint="select the redis hosts, e.g. -l redis")
    return Topology(found)
