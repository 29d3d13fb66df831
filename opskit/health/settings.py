"""The ``health:`` settings: per-check thresholds, ``{KEY: {warn: N, crit: N}}``.

One optional key per check of :data:`opskit.health.checks.DEFAULTS` (made from it, so a new
check is a new key), each a mapping of ``warn`` and ``crit`` whose defaults are the check's
built-in levels; ``null`` turns a level off. A value at or above a level reaches it.

This module imports pydantic: :func:`opskit.health.checks.from_vars` imports it only for a
host that has ``health:`` vars (the health command and the Munin plugin run often).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, create_model

from opskit.health.checks import DEFAULTS
from opskit.settings.base import Field, Nested, Settings


def _level(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a number, 0 or more, or null for off (got {value!r})")
    return float(value)


Level = Annotated[float, AfterValidator(_level)]


class Levels(Nested):
    """The two levels of one check; each subclass (one per check) has that check's defaults."""

    warn: Level | None
    crit: Level | None


def _fmt(value: float | None) -> str:
    return "off" if value is None else f"{value:g}"


def _levels(key: str, warn: float | None, crit: float | None, text: str) -> type[Levels]:
    camel = "".join(part.title() for part in key.split("_"))
    return create_model(  # type: ignore[no-any-return,call-overload]
        f"{camel}Levels", __base__=Levels, __module__=__name__,
        __doc__=f"Thresholds of {key}: {text}.",
        warn=(Level | None, Field(warn, description=f"WARNING at or above this value "
                                  f"({text}); null turns it off.")),
        crit=(Level | None, Field(crit, description=f"CRITICAL at or above this value "
                                  f"({text}); null turns it off.")),
    )


LEVELS: dict[str, type[Levels]] = {key: _levels(key, w, c, text)
                                   for key, (w, c, text) in DEFAULTS.items()}

_fields: dict[str, Any] = {
    key: (model, Field(None, description=f"Thresholds of {text} (default warn "
                       f"{_fmt(DEFAULTS[key][0])}, crit {_fmt(DEFAULTS[key][1])})."))
    for key, model in LEVELS.items()
    for text in [DEFAULTS[key][2]]
}

HealthSettings: type[Settings] = create_model(  # type: ignore[call-overload]
    "HealthSettings", __base__=Settings, __module__=__name__,
    __doc__="Thresholds of the health checks (opskit health, the Munin plugin, opskit top).",
    **_fields,
)
