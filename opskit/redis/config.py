"""The ``redis:`` inventory vars. An instance is HOST:PORT; a host with ``redis.ports`` (a
list) has several instances, with ``redis.instances`` several that differ (group, AUTH, TLS),
else one on ``redis.port`` (6379). Each instance belongs to one replication group
(``redis.group``, "main" when unset): a master and its replicas. The values are declared and
checked in :mod:`opskit.redis.settings` (through :func:`opskit.settings.of`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from opskit import secretfile, settings
from opskit.errors import InventoryError
from opskit.inventory import Host, Inventory
from opskit.runner import choose

if TYPE_CHECKING:
    from opskit.redis.settings import RedisSettings

DEFAULT_GROUP = "main"  # redis.group when unset (redis/settings.py declares the same)


@dataclass(frozen=True)
class Publish:
    """Where the apps read the current master: a JSON file on some hosts, then a reload."""

    hosts: str  # inventory pattern
    file: str
    reload: str | None


@dataclass(frozen=True)
class Auth:
    """How redis-cli authenticates. The password itself is read where it lives: on the host
    (``password_file``, by the shell there) or here (``secret``, from ``secret_file``),
    and reaches redis-cli only through REDISCLI_AUTH."""

    user: str | None
    password_file: str | None
    secret: secretfile.Secret | None


@dataclass(frozen=True)
class Tls:
    ca: str
    cert: str | None
    key: str | None


@dataclass(frozen=True)
class Sentinels:
    """The Sentinels watching a group: the name they know it by, and where they listen
    (inventory host, port): opskit runs redis-cli on that host."""

    master: str
    endpoints: tuple[tuple[Host, int], ...]

    def names(self) -> list[str]:
        return [f"{h.name}:{p}" for h, p in self.endpoints]


@dataclass(frozen=True)
class Instance:
    host: Host
    port: int
    cli: str
    max_link_down_seconds: float
    publish: Publish | None
    group: str = DEFAULT_GROUP
    auth: Auth | None = None
    tls: Tls | None = None
    sentinel: Sentinels | None = None

    @property
    def name(self) -> str:
        return f"{self.host.name}:{self.port}"

    @property
    def address(self) -> str:
        return self.host.address

    @property
    def endpoint(self) -> str:
        return f"{self.host.address}:{self.port}"


def _inherited(r: RedisSettings, one: Any, key: str) -> Any:
    """An instance's ``key``: its own when it wrote it (even null: "none for me"), else the
    host's."""
    return getattr(one, key) if one is not None and key in one.model_fields_set \
        else getattr(r, key)


def _sentinels(inventory: Inventory | None, host: Host, raw: Any) -> Sentinels | None:
    if raw is None or inventory is None:  # without the inventory: not asked for (health)
        return None
    ends: list[tuple[Host, int]] = []
    for spec in raw.hosts:
        name, _, port = spec.rpartition(":")
        found = inventory.hosts.get(name)
        if found is None:
            raise InventoryError(f"host {host.name}: redis.sentinel.hosts names {name!r}, not "
                                 "a host of the inventory",
                                 hint="list the Sentinels as INVENTORY_HOST:PORT")
        ends.append((found, int(port)))
    return Sentinels(raw.master, tuple(ends))


def instances(host: Host, inventory: Inventory | None = None) -> list[Instance]:
    """``host``'s Redis instances, its ``redis:`` settings checked (opskit.redis.settings).
    ``inventory`` resolves the Sentinels' hosts (without it, ``sentinel`` is None: a caller
    that only reads each instance, as health, needs none). A ``secret_file`` is read here:
    a bad one fails before anything runs."""
    if not isinstance(host.vars.get("redis"), dict):
        raise InventoryError(f"host {host.name} has no redis settings",
                             hint="select the redis hosts, e.g. -l redis")
    r = cast("RedisSettings", settings.of(host, "redis"))
    listed: list[Any] = list(r.instances) if r.instances else [None] * len(r.ports or [r.port])
    ports = [one.port for one in r.instances] if r.instances else (r.ports or [r.port])
    out = []
    for one, port in zip(listed, ports, strict=True):
        pub, auth, tls = (_inherited(r, one, k) for k in ("publish", "auth", "tls"))
        out.append(Instance(
            host, port, r.cli, r.max_link_down_seconds,
            Publish(pub.hosts, pub.file, pub.reload or None) if pub is not None else None,
            group=(one.group if one is not None and one.group else r.group),
            auth=Auth(auth.user, auth.password_file,
                      secretfile.read(auth.secret_file, f"host {host.name}: the Redis "
                                      "password file", how="redis.auth.secret_file")
                      if auth.secret_file else None) if auth is not None else None,
            tls=Tls(tls.ca, tls.cert, tls.key) if tls is not None else None,
            sentinel=_sentinels(inventory, host, _inherited(r, one, "sentinel"))))
    return out


@dataclass(frozen=True)
class Topology:
    """One replication group: a master and its replicas (one name, one lease)."""

    instances: tuple[Instance, ...]

    @property
    def name(self) -> str:
        return self.instances[0].group

    def find(self, spec: str) -> Instance:
        """HOST:PORT (inventory name or address), or HOST when it has one instance."""
        found = _matching(self.instances, spec)
        if len(found) != 1:
            known = ", ".join(i.name for i in self.instances)
            raise InventoryError(f"no single Redis instance {spec!r} in the group {self.name}",
                                 hint=f"instances: {known}")
        return found[0]

    @property
    def hosts(self) -> list[Host]:
        """The hosts of its instances, by name."""
        hosts = {i.host.name: i.host for i in self.instances}
        return [hosts[k] for k in sorted(hosts)]

    @property
    def lock_hosts(self) -> list[Host]:
        """Where a runbook's lease is held: every host of the group's instances, and its
        Sentinels' hosts (a two-instance group watched by three Sentinels keeps a majority
        when a host is gone)."""
        hosts = {h.name: h for h in self.hosts}
        if self.sentinel is not None:
            hosts.update((h.name, h) for h, _ in self.sentinel.endpoints)
        return [hosts[k] for k in sorted(hosts)]

    @property
    def publish(self) -> Publish | None:
        return next((i.publish for i in self.instances if i.publish), None)

    @property
    def sentinel(self) -> Sentinels | None:
        return next((i.sentinel for i in self.instances if i.sentinel), None)


def _matching(insts: Sequence[Instance], spec: str) -> list[Instance]:
    host, _, port = spec.rpartition(":") if ":" in spec else (spec, "", "")
    return [i for i in insts if host in (i.host.name, i.address)
            and (not port or str(i.port) == port)]


KIND = choose.Kind("Redis group", "--group", "instances", "Redis group")


@dataclass(frozen=True)
class Fleet:
    """The groups a selection touches, each whole: a selection naming one host of a group
    brings in all of the group's instances (a group is judged and acted on whole).
    ``added``: per group, its instances the selection did not name."""

    groups: tuple[Topology, ...]
    added: dict[str, tuple[str, ...]]

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    def only(self, name: str) -> Fleet:
        """This fleet narrowed to the group ``name`` (``redis status --group``)."""
        g = self._named(name)
        return Fleet((g,), {name: self.added.get(name, ())})

    def _named(self, name: str) -> Topology:
        for g in self.groups:
            if g.name == name:
                return g
        raise InventoryError(f"no Redis group {name!r} in the selection (groups: "
                             f"{', '.join(self.names)})",
                             hint="redis.group names a group; `opskit redis status` lists "
                             "them all")

    def one(self, *, group: str | None = None, specs: Sequence[str] = ()) -> Topology:
        """The one group a runbook acts on: ``group`` (--group), else the group of the
        instances it names (--to, an INSTANCE argument), else the selection's only one. A
        selection spanning several groups without naming one is refused: a runbook that
        acts on a group must never act on two."""
        every = [i for g in self.groups for i in g.instances]
        named: dict[str, str] = {}
        for spec in (s for s in specs if s):
            found = _matching(every, spec)
            if group is not None:
                found = [i for i in found if i.group == group] or found
            if not found:
                raise InventoryError(f"no Redis instance {spec!r} in the selection",
                                     hint="instances: " + ", ".join(i.name for i in every))
            if len({i.group for i in found}) > 1:
                raise InventoryError(f"{spec!r} names instances of several Redis groups: "
                                     + ", ".join(f"{i.name} ({i.group})" for i in found),
                                     hint="name the instance as HOST:PORT")
            named.setdefault(found[0].group, spec)
        if group is not None:
            self._named(group)
        name = choose.one(KIND, self.names, named, group, example="name one of its instances "
                          f"(--to {self.groups[0].instances[0].name})")
        return self._named(name)


def _raw_groups(host: Host) -> set[str]:
    """The groups a host's ``redis:`` var names, as written (unchecked): enough to tell which
    hosts share a group without checking the settings of hosts of other groups."""
    r = host.vars.get("redis")
    if not isinstance(r, dict):
        return set()
    default = r.get("group", DEFAULT_GROUP)
    listed = r.get("instances")
    if isinstance(listed, list) and listed:
        return {str(i.get("group", default)) if isinstance(i, dict) else str(default)
                for i in listed}
    return {str(default)}


def fleet(inventory: Inventory, hosts: Sequence[Host]) -> Fleet:
    """The groups of the Redis instances on ``hosts``, each with every one of its instances
    in the inventory (no connection: the planning step of ``redis status`` and of every
    runbook)."""
    selected = [i for h in hosts if "redis" in h.vars for i in instances(h, inventory)]
    if not selected:
        raise InventoryError("none of the selected hosts has redis settings",
                             hint="select the redis hosts, e.g. -l redis")
    named = {i.name for i in selected}
    groups: list[Topology] = []
    added: dict[str, tuple[str, ...]] = {}
    for name in dict.fromkeys(i.group for i in selected):  # first seen first
        members = [i for h in inventory.hosts.values() if name in _raw_groups(h)
                   for i in instances(h, inventory) if i.group == name]
        groups.append(Topology(tuple(members)))
        added[name] = tuple(i.name for i in members if i.name not in named)
    return Fleet(tuple(groups), added)


def load(inventory: Inventory, hosts: Sequence[Host], *, group: str | None = None,
         named: Sequence[str] = ()) -> Topology:
    """The one group of a runbook (:meth:`Fleet.one`)."""
    return fleet(inventory, hosts).one(group=group, specs=named)
