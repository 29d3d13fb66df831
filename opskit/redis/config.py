"""The ``redis:`` inventory vars. An instance is HOST:PORT; a host with ``redis.ports`` (a
list) has several instances, else one on ``redis.port`` (6379)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opskit.errors import InventoryError
from opskit.inventory import Host, Inventory


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
    os_user: str
    data_dir: str | None
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


def _publish(host: Host, value: object) -> Publish | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not value.get("hosts") or not value.get("file"):
        raise InventoryError(f"host {host.name}: redis.publish needs hosts and file",
                             hint="publish: {hosts: app, file: /etc/app/redis.json, "
                                  "reload: 'systemctl reload app'}")
    if not str(value["file"]).startswith("/"):
        raise InventoryError(f"host {host.name}: redis.publish.file must be an absolute path")
    return Publish(str(value["hosts"]), str(value["file"]),
                   str(value["reload"]) if value.get("reload") else None)


def instances(host: Host) -> list[Instance]:
    r = host.vars.get("redis")
    if not isinstance(r, dict):
        raise InventoryError(f"host {host.name} has no redis settings",
                             hint="select the redis hosts, e.g. -l redis")
    ports = r.get("ports") or [r.get("port", 6379)]
    if not isinstance(ports, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports):
        raise InventoryError(f"host {host.name}: redis.port(s) must be port numbers, got {ports!r}")
    limit = r.get("max_link_down_seconds", 60)
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
        raise InventoryError(f"host {host.name}: redis.max_link_down_seconds must be a number")
    return [Instance(host, int(p), str(r.get("cli", "redis-cli")), str(r.get("os_user", "redis")),
                     r.get("data_dir"), float(limit), _publish(host, r.get("publish")))
            for p in ports]


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
