"""Plug-in registry for services that lab hosts run (PostgreSQL, Redis, gunicorn, ...).

A service declares the host groups it runs on (``roles``; a host's groups are its role and
subgroup, e.g. ``("db", "pg_primary")``) and how to start, stop and check it. ``up`` starts
every registered service on its hosts after all sshds answer, in registration order (so a
replica service registered after its primary's starts after it), hosts of one service in
parallel; ``status`` reports each one's health; ``down`` stops them in reverse order before
it kills whatever is left in the host's namespace.

Services run inside the host's namespace through ``ctx.run(host, argv)`` (nsenter), so they
see the host's private /srv, /data and /etc/opskit-lab and its hostname.

Optional members of a service (looked up with getattr, so plain classes need none of them):

* ``start_timeout`` -- seconds for health() to turn true after start() (START_TIMEOUT);
* ``wait_healthy = False`` -- someone else runs it (the deploy starts gunicorn): ``up``
  calls start() to prepare the host but never waits, and status reports its health in
  ``LabHost.apps`` (false = not deployed yet) instead of ``LabHost.services``;
* ``prepare(ctx)`` -- once per ``up``, before lab.yml is written: lab-wide set-up (a repo);
* ``inventory_vars(ctx) -> InventoryVars`` -- group and host vars it adds to lab.yml.
"""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from opskit.errors import LabError
from opskit.lab.aws_resources import AwsLab
from opskit.lab.models import LabHost
from opskit.runner import wait

START_TIMEOUT = 30.0  # default seconds for a started service to report healthy


@dataclass
class LabContext:
    """What a service gets besides its host: the whole lab and a way to run in a host."""

    state_dir: pathlib.Path
    port: int
    hosts: list[LabHost]
    runner: Callable[[str, list[str]], subprocess.CompletedProcess[str]]
    aws: AwsLab | None = None  # the lab's moto resources, once provisioned (during up)

    def run(self, host: LabHost | str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host's namespace (no check; look at returncode)."""
        return self.runner(host if isinstance(host, str) else host.name, argv)

    def group(self, name: str) -> list[LabHost]:
        return [h for h in self.hosts if name in h.groups]

    def service_dir(self, host: LabHost, service: str) -> pathlib.Path:
        """A scratch dir for a service's files on a host, removed with the host by ``down``."""
        path = host.state_dir / "services" / service
        path.mkdir(parents=True, exist_ok=True)
        return path


@runtime_checkable
class Service(Protocol):
    name: str
    roles: tuple[str, ...]

    def start(self, host: LabHost, ctx: LabContext) -> None: ...

    def stop(self, host: LabHost, ctx: LabContext) -> None: ...

    def health(self, host: LabHost, ctx: LabContext) -> bool: ...


@dataclass
class InventoryVars:
    """Vars a service (or the lab itself) adds to lab.yml: per group and per host."""

    group_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, other: InventoryVars) -> InventoryVars:
        """Merge ``other`` in (its keys win); returns self."""
        for mine, theirs in ((self.group_vars, other.group_vars),
                             (self.host_vars, other.host_vars)):  # fmt: skip
            for name, values in theirs.items():
                mine.setdefault(name, {}).update(values)
        return self


_REGISTRY: dict[str, Service] = {}


def register(service: Service) -> Service:
    """Add (or replace, by name) a service; returns it so it can decorate an instance."""
    if not service.name or not service.roles:
        raise ValueError("a lab service needs a name and at least one role")
    _REGISTRY[service.name] = service
    return service


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered() -> list[Service]:
    return list(_REGISTRY.values())


def hosts_for(service: Service, hosts: Sequence[LabHost]) -> list[LabHost]:
    return [h for h in hosts if set(service.roles) & set(h.groups)]


def waits(service: Service) -> bool:
    """False for services others start (``wait_healthy = False``): up never waits on them."""
    return bool(getattr(service, "wait_healthy", True))


def prepare_all(ctx: LabContext) -> None:
    """Call each service's optional ``prepare(ctx)`` (if it has hosts in this lab)."""
    for service in registered():
        prepare = getattr(service, "prepare", None)
        if prepare is not None and hosts_for(service, ctx.hosts):
            prepare(ctx)


def inventory_vars(ctx: LabContext) -> InventoryVars:
    """The group and host vars every service with hosts in this lab adds to lab.yml."""
    found = InventoryVars()
    for service in registered():
        contribute = getattr(service, "inventory_vars", None)
        if contribute is not None and hosts_for(service, ctx.hosts):
            found.add(contribute(ctx))
    return found


def start_all(ctx: LabContext) -> list[str]:
    """Start every registered service where it is not healthy yet; one line per start."""
    lines: list[str] = []
    for service in registered():
        targets = [h for h in hosts_for(service, ctx.hosts) if not _healthy(service, h, ctx)]
        with ThreadPoolExecutor(max_workers=min(8, len(targets) or 1)) as pool:
            list(pool.map(lambda h, s=service: _start_one(s, h, ctx), targets))
        if waits(service):
            lines += [f"started {service.name} on {h.name}" for h in targets]
        else:
            lines += [f"prepared {service.name} on {h.name}" for h in targets]
    return lines


def _start_one(service: Service, host: LabHost, ctx: LabContext) -> None:
    service.start(host, ctx)
    if not waits(service):
        return
    try:
        wait.until(lambda: (_healthy(service, host, ctx), "not healthy"),
                   what=f"{service.name} on {host.name}", interval=0.1,
                   timeout=float(getattr(service, "start_timeout", START_TIMEOUT)))
    except wait.WaitTimedOut:
        raise LabError(
            f"lab service {service.name} on {host.name} did not become healthy",
            hint=f"look at {host.state_dir / 'services' / service.name}",
        ) from None


def stop_all(ctx: LabContext, hosts: Sequence[LabHost]) -> list[str]:
    """Stop services on ``hosts`` in reverse registration order; never raises."""
    lines: list[str] = []
    for service in reversed(registered()):
        for host in hosts_for(service, hosts):
            try:
                service.stop(host, ctx)
                lines.append(f"stopped {service.name} on {host.name}")
            except Exception as exc:  # noqa: BLE001 -- the namespace kill that follows cleans up
                lines.append(f"stop of {service.name} on {host.name} failed: {exc}")
    return lines


def health_of(host: LabHost, ctx: LabContext) -> dict[str, bool]:
    """Health of the services the lab runs on ``host`` (LabHost.services)."""
    return {
        s.name: _healthy(s, host, ctx) for s in registered() if waits(s) and hosts_for(s, [host])
    }


def apps_of(host: LabHost, ctx: LabContext) -> dict[str, bool]:
    """Health of the services others start on ``host`` (LabHost.apps; false = not deployed)."""
    return {
        s.name: _healthy(s, host, ctx)
        for s in registered()
        if not waits(s) and hosts_for(s, [host])
    }


def _healthy(service: Service, host: LabHost, ctx: LabContext) -> bool:
    try:
        return bool(service.health(host, ctx))
    except Exception:  # noqa: BLE001 -- a health probe that blows up means "not healthy"
        return False
