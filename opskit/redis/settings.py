"""The ``redis:`` settings (read by :mod:`opskit.redis.config`).

An instance is HOST:PORT: ``ports`` (a list) gives a host several instances, else it has one
on ``port``; setting both is refused (which one would opskit manage?).

This module imports pydantic: import it only through :func:`opskit.settings.of`.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, model_validator

from opskit.settings.base import AbsPath, Distinct, Field, Nested, Pattern, Port, Settings, Text


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

    @model_validator(mode="after")
    def _one_of_port_ports(self) -> RedisSettings:
        if self.ports is not None and "port" in self.model_fields_set:
            raise ValueError("set port (one instance) or ports (several), not both")
        return self
