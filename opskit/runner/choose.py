"""The one cluster (or group) a runbook acts on, out of those a selection touches: a runbook
that acts on a cluster must never act on two. Shared by PostgreSQL clusters and Redis groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opskit.errors import InventoryError


@dataclass(frozen=True)
class Kind:
    """How messages name the thing: "PostgreSQL cluster", "--cluster", "hosts", "cluster"."""

    name: str
    option: str
    named: str  # what the command names to point at one ("hosts", "instances")
    short: str  # "pg07a is in the cluster shard07", "r1:6380 is in the Redis group tls"


def one(kind: Kind, every: Sequence[str], named: Mapping[str, str], explicit: str | None,
        *, example: str) -> str:
    """The name chosen: ``explicit`` (the option), else the one that ``named`` (its name ->
    the word of the command that named it) points at, else the selection's only one.
    ``explicit`` must be in ``every`` (the caller checked) and agree with ``named``;
    ``example``: the hint's way to name one of the first ("-l db1")."""
    if explicit is not None:
        for name, word in named.items():
            if name != explicit:
                raise InventoryError(f"{word} is in the {kind.short} {name}, not {explicit}",
                                     hint=f"{kind.option} {name}, or drop {kind.option}")
        return explicit
    if len(named) > 1:
        raise InventoryError(f"the {kind.named} named belong to {len(named)} {kind.name}s: "
                             f"{', '.join(sorted(named))}",
                             hint=f"a runbook acts on one {kind.name.split()[-1]}: name "
                             f"{kind.named} of one")
    if named:
        return next(iter(named))
    if len(every) > 1:
        raise InventoryError(f"the selection spans {len(every)} {kind.name}s: "
                             f"{', '.join(every)}; a runbook acts on one",
                             hint=f"{kind.option} NAME (e.g. {kind.option} {every[0]}), or "
                             f"{example}")
    return every[0]
