"""The ``redis:`` settings (read by :mod:`opskit.redis.config`).

An instance is HOST:PORT: ``ports`` (a list) gives a host several instances, else it has one
on ``port``; setting both is refused (which one would opskit manage?). ``instances`` lists
instances that differ from the host's defaults (another group, its own TLS or AUTH); with it,
``port``/``ports`` are refused. Each instance belongs to one replication ``group``: status
judges each group on its own, a runbook acts on one.

This module imports pydantic: import it only through :func:`opskit.settings.of`.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, model_validator

from opskit.settings.base import (
    AbsPath,
    Distinct,
    Field,
    HostPortsMarker,
    Nested,
    Pattern,
    PlainName,
    Port,
    Settings,
    Text,
)


def _not_negative_seconds(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a number of seconds, 0 or more (got {value!r})")
    return float(value)


def _ports(value: list[int]) -> list[int]:
    if not value:
        raise ValueError("must list at least one port (or set port: instead)")
    return value


def _some(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Duration = Annotated[float, AfterValidator(_not_negative_seconds)]
Ports = Annotated[list[Port], AfterValidator(_ports), Distinct]


class Publish(Nested):
    """Where the apps read the current master: a JSON file on some hosts, then a reload."""

    hosts: Annotated[Pattern, AfterValidator(_some)] = Field(
        description="Inventory pattern of the hosts that get the file (the app servers).")
    file: AbsPath = Field(description="The JSON file written there after a promotion or "
                          "switchover ({\"host\", \"port\"} of the new master), atomically.")
    reload: Text | None = Field(None, description="A shell command run on each of those "
                                "hosts after the file is written (e.g. systemctl reload app); "
                                "none when empty.")


def _user(value: str) -> str:
    # An ACL user name becomes one word of redis-cli's argv (--user): no space, no quote.
    if not value or any(c.isspace() or c in "\"'\\\0" for c in value) or len(value) > 128:
        raise ValueError("must be an ACL user name: no spaces or quotes, 1-128 characters")
    return value


AclUser = Annotated[str, AfterValidator(_user)]


class Auth(Nested):
    """How redis-cli authenticates: a password (``requirepass``, or an ACL user's), never on a
    command line: it reaches redis-cli through REDISCLI_AUTH."""

    user: AclUser | None = Field(None, description="The ACL user (AUTH user password); none: "
                                 "the default user (requirepass).")
    password_file: AbsPath | None = Field(None, description="A file on the Redis host that "
                                          "holds the password on one line, readable by the "
                                          "SSH login (read there, never copied).")
    secret_file: Text | None = Field(None, description="A file on the operator's machine "
                                     "(mode 0600, yours or root's) that holds the password on "
                                     "one line; sent to the host on stdin.")

    @model_validator(mode="after")
    def _one_source(self) -> Auth:
        if (self.password_file is None) == (self.secret_file is None):
            raise ValueError("set password_file (on the host) or secret_file (on the "
                             "operator's machine): exactly one")
        return self


class Tls(Nested):
    """redis-cli --tls: the server's CA, and a client certificate when the server asks for
    one (tls-auth-clients)."""

    ca: AbsPath = Field(description="The CA certificate file on the Redis host (--cacert).")
    cert: AbsPath | None = Field(None, description="The client certificate file on the host "
                                 "(--cert), with key.")
    key: AbsPath | None = Field(None, description="The client private key file on the host "
                                "(--key), with cert.")

    @model_validator(mode="after")
    def _pair(self) -> Tls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("set cert and key together (a client certificate), or neither")
        return self


def _sentinels(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must list at least one Sentinel as HOST:PORT")
    for v in value:
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{v!r} is not HOST:PORT (an inventory host and a port)")
    return value


class Sentinel(Nested):
    """The Sentinels that watch this group: opskit asks them, and hands promotions to them."""

    master: PlainName = Field(description="The name the Sentinels monitor the group by "
                              "(sentinel monitor NAME ...).")
    hosts: Annotated[list[Text], AfterValidator(_sentinels), Distinct, HostPortsMarker()] = Field(
        description="The Sentinels as INVENTORY_HOST:PORT; opskit runs redis-cli on that host.")


class InstanceSettings(Nested):
    """One instance of ``instances``: what it does not set comes from the host's settings."""

    port: Port = Field(description="The instance's port.")
    group: PlainName | None = Field(None, description="Its replication group (default: the "
                                    "host's group).")
    auth: Auth | None = Field(None, description="Its AUTH (default: the host's auth).")
    tls: Tls | None = Field(None, description="Its TLS (default: the host's tls).")
    publish: Publish | None = Field(None, description="Its publish (default: the host's "
                                    "publish).")
    sentinel: Sentinel | None = Field(None, description="Its Sentinels (default: the host's "
                                      "sentinel).")


def _instances(value: list[InstanceSettings]) -> list[InstanceSettings]:
    if not value:
        raise ValueError("must list at least one instance (or set port: instead)")
    ports = [i.port for i in value]
    twice = sorted({p for p in ports if ports.count(p) > 1})
    if twice:
        raise ValueError(f"lists port {', '.join(map(str, twice))} twice")
    return value


class RedisSettings(Settings):
    """A Redis host: its instances and how opskit talks to them."""

    port: Port = Field(6379, description="The port of the host's one instance (use ports: "
                       "for several).")
    ports: Ports | None = Field(None, description="The ports of the host's instances, when it "
                                "runs several (instead of port:).")
    cli: Text = Field("redis-cli", description="The redis-cli program on the host (a name on "
                      "PATH or a path); every command runs it there.")
    max_link_down_seconds: Duration = Field(60.0, description="A replica whose link to the "
                                            "master has been down longer is not promoted "
                                            "without --force (its data may be stale).")
    publish: Publish | None = Field(None, description="Where the apps read the current "
                                    "master, written after a promotion or switchover "
                                    "(hosts, file, reload).")
    group: PlainName = Field("main", description="The replication group (a master and its "
                             "replicas) the host's instances belong to: status judges each "
                             "group on its own, a runbook acts on one (--group NAME), and "
                             "its lease is named after it.")
    auth: Auth | None = Field(None, description="AUTH for redis-cli (user, and password_file "
                              "or secret_file); none: no AUTH.")
    tls: Tls | None = Field(None, description="TLS for redis-cli (ca, cert, key); none: "
                            "plain TCP.")
    sentinel: Sentinel | None = Field(None, description="The Sentinels watching the group "
                                      "(master, hosts): status shows their view and promote "
                                      "hands the promotion to them.")
    instances: Annotated[list[InstanceSettings], AfterValidator(_instances)] | None = Field(
        None, description="The host's instances when they differ (a port each, and its own "
        "group, auth, tls, publish or sentinel); instead of port:/ports:.")

    @model_validator(mode="after")
    def _one_of_port_ports(self) -> RedisSettings:
        if self.ports is not None and "port" in self.model_fields_set:
            raise ValueError("set port (one instance) or ports (several), not both")
        if self.instances is not None and ("port" in self.model_fields_set
                                           or self.ports is not None):
            raise ValueError("set instances (each with its port), or port/ports, not both")
        return self
