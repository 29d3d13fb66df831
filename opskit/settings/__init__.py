"""Declared, strict settings: one schema per domain var (``deploy:``, ``postgres:``…).

    from opskit import settings
    cfg = settings.of(host, "deploy")        # a frozen DeploySettings; InventoryError if wrong
    for problem in settings.check(hosts):    # every domain of every host (`inventory check`)
        print(problem)

A problem names where the value was declared (file, line, group or host: the inventory's
:class:`~opskit.inventory.origin.Origin`), the key, what is wrong and, for an unknown key, the
closest valid one. pydantic is imported on the first call, not with this package.

Rule: the settings layer sits between the inventory and the domains: it may import the
inventory and the top-level utilities, never transport, runner, domains or commands (the
domains' schemas are imported by name, see :mod:`opskit.settings.registry`).
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opskit.errors import InventoryError
from opskit.redact import is_secret_name
from opskit.settings.registry import DOMAINS, schema

if TYPE_CHECKING:
    from opskit.inventory import Host, Inventory
    from opskit.inventory.origin import Origin
    from opskit.settings.base import Settings

__all__ = ["DOMAINS", "Problem", "check", "of", "problems", "schema"]

REFERENCE = "docs/settings.md"


@dataclass(frozen=True)
class Problem:
    """One wrong setting: ``where`` it was declared, the dotted ``key``, what is wrong."""

    where: str
    key: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        line = f"{self.where}: {self.key}: {self.message}"
        return f"{line} ({self.hint})" if self.hint else line

    def error(self) -> InventoryError:
        return InventoryError(f"{self.where}: {self.key}: {self.message}",
                              hint=self.hint or f"see {REFERENCE}")


# The outcome of validating one declaration, shared by every host that inherits it (dict
# values replace, so a host's domain var is exactly one declaration's value).
_Outcome = tuple["Settings | None", tuple[Problem, ...]]
_CACHE: weakref.WeakKeyDictionary[Origin, _Outcome] = weakref.WeakKeyDictionary()


def of(host: Host, domain: str) -> Settings:
    """``host``'s ``domain`` settings, validated; the defaults when the host has none.

    Raises InventoryError naming the first problem (``inventory check`` lists them all).
    """
    found = problems(host, domain)
    if found:
        raise found[0].error()
    model, _ = _validate(host, domain)
    assert model is not None
    return model


def problems(host: Host, domain: str) -> list[Problem]:
    """What is wrong with ``host``'s ``domain`` settings (and a var misspelling it)."""
    found = list(_near_misses(host, (domain,)))
    found.extend(_validate(host, domain)[1])
    return found


def check(hosts: Iterable[Host], inventory: Inventory | None = None) -> list[Problem]:
    """Every problem of every domain var of ``hosts``, each declaration reported once.

    With ``inventory``, the patterns the settings name (``postgres.pgbouncer``…) must also
    select hosts in it.
    """
    seen: set[Problem] = set()
    out: list[Problem] = []

    def add(found: Iterable[Problem]) -> None:
        for p in found:
            if p not in seen:
                seen.add(p)
                out.append(p)

    hosts = list(hosts)
    for host in hosts:
        add(_near_misses(host, DOMAINS))
        for domain in DOMAINS:
            if domain not in host.vars:
                continue
            model, found = _validate(host, domain)
            add(found)
            if model is not None and inventory is not None:
                add(_patterns(host, domain, model, inventory))
                add(_host_ports(host, domain, model, inventory))
    if inventory is not None:
        add(_declarations(hosts, inventory))
        for declared in inventory.undiscovered:  # an EC2 source's vars, not queried
            for domain, origin in declared.items():
                if domain in DOMAINS:
                    add(_outcome(domain, origin.raw, origin, None)[1])
    return out


def _declarations(hosts: Sequence[Host], inventory: Inventory) -> Iterable[Problem]:
    """The domain vars of the selected hosts' groups (and of empty groups) as declared: a
    value every member overrides is still checked."""
    groups = {g for h in hosts for g in h.groups}
    for group in inventory.groups.values():
        if group.name not in groups and inventory.members(group.name):
            continue
        for domain, origin in group.origins.items():
            if domain in DOMAINS:
                yield from _outcome(domain, origin.raw, origin, None)[1]


def _patterns(host: Host, domain: str, model: Settings, inventory: Inventory
              ) -> Iterable[Problem]:
    from opskit.errors import PatternError
    from opskit.settings.base import pattern_fields

    for path, pattern in pattern_fields(model):
        try:
            inventory.select(pattern)
        except PatternError as exc:
            yield Problem(_where(host.origins.get(domain), host, path),
                          ".".join((domain, *path)), f"selects no hosts: {exc.message}",
                          exc.hint)


def _host_ports(host: Host, domain: str, model: Settings, inventory: Inventory
                ) -> Iterable[Problem]:
    """INVENTORY_HOST:PORT entries (redis.sentinel.hosts) must name hosts of the inventory."""
    from opskit.settings.base import host_port_fields

    for path, entries in host_port_fields(model):
        for entry in entries:
            name = entry.rpartition(":")[0]
            if name not in inventory.hosts:
                yield Problem(_where(host.origins.get(domain), host, path),
                              ".".join((domain, *map(str, path))),
                              f"names {name!r}, not a host of the inventory",
                              "list them as INVENTORY_HOST:PORT")


def _validate(host: Host, domain: str) -> _Outcome:
    return _outcome(domain, host.vars.get(domain), host.origins.get(domain), host)


def _outcome(domain: str, value: Any, origin: Origin | None, host: Host | None) -> _Outcome:
    """Validate one value of ``domain`` (cached per declaration)."""
    if origin is not None and origin in _CACHE:
        return _CACHE[origin]
    from pydantic import ValidationError

    model = schema(domain)
    try:
        outcome: _Outcome = (model.model_validate({} if value is None else value), ())
    except ValidationError as exc:
        # An unknown key first: a misspelt required key is also "missing", and the
        # did-you-mean is the line that tells what to fix.
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        outcome = (None, tuple(_problem(model, domain, err, origin, host) for err in errors))
    if origin is not None:
        _CACHE[origin] = outcome
    return outcome


def _where(origin: Origin | None, host: Host | None, loc: Sequence[Any]) -> str:
    if origin is not None:
        return origin.where(loc)
    return f"host {host.name}" if host is not None else "?"


def _problem(model: type[Settings], domain: str, err: Mapping[str, Any],
             origin: Origin | None, host: Host | None) -> Problem:
    loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    key = ".".join([domain, *(str(part) for part in loc)])
    where = _where(origin, host, loc)
    if kind == "extra_forbidden":
        valid = _keys_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
        hint = (f"did you mean {'.'.join([domain, *map(str, loc[:-1]), close[0]])}?" if close
                else f"valid keys: {', '.join(valid)}")
        return Problem(where, key, "unknown key", hint)
    if kind == "missing":
        return Problem(where, key, "is missing", f"a required key: see {REFERENCE}")
    message = str(err.get("msg", "is not valid"))
    message = message.removeprefix("Value error, ")
    if kind in ("model_type", "dataclass_type", "dict_type"):
        message = "must be a mapping of settings"
    # A mapping's own check (auth: set password_file or secret_file) speaks of its keys, not
    # of values: shown even under a secret-looking name.
    whole = kind.startswith("value_error") and isinstance(err.get("input"), Mapping)
    if not whole and any(is_secret_name(str(part)) for part in (domain, *loc)):
        # aws.secret_access_key: 12345 must not reach a terminal or a CI log.
        return Problem(where, key, "is not valid (a secret's value is not shown)",
                       f"see {REFERENCE} for what it must be")
    if not kind.startswith("value_error"):
        message = f"{message[:1].lower()}{message[1:]} (got {_shown(err.get('input'))})"
    return Problem(where, key, message)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _keys_at(model: type[Settings], path: Sequence[Any]) -> list[str]:
    """The valid keys of the (nested) mapping at ``path``: for the did-you-mean."""
    from opskit.settings.base import nested_model

    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = nested_model(fields[part].annotation)
    return list(getattr(current, "model_fields", {}) or [])


def _near_misses(host: Host, domains: Sequence[str]) -> Iterable[Problem]:
    """A var that looks like a domain's name but is not one (``postgress:``): never ignored."""
    for var in host.vars:
        if var in DOMAINS or var.startswith(("ansible_", "opskit_")):
            continue
        close = difflib.get_close_matches(var, domains, n=1, cutoff=0.8)
        if close:
            origin = host.origins.get(var)
            yield Problem(_where(origin, host, ()), var,
                          "is not an opskit setting", f"did you mean {close[0]}?")
