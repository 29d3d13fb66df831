"""Which schema checks which domain var: names only, each schema imported when first used.

The schemas live with their domains (``opskit/deploy/settings.py``…), next to the code that
reads them; this table is the one list of them, so ``inventory check`` and the settings
reference (docs/settings.md) cannot miss one. Strings, not imports: loading the table must
not import pydantic or any domain (start-up cost, and the layers: docs/DESIGN.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opskit.settings.base import Settings

# var name -> "module:Class", in the order the reference documents them.
SCHEMAS: dict[str, str] = {
    "deploy": "opskit.deploy.settings:DeploySettings",
    "snapshot": "opskit.snapshot.settings:SnapshotSettings",
    "postgres": "opskit.pg.settings:PostgresSettings",
    "pgbouncer": "opskit.pg.settings:PgbouncerSettings",
    "redis": "opskit.redis.settings:RedisSettings",
    "cache": "opskit.cache.settings:CacheSettings",
    "nginx": "opskit.lb.settings:NginxSettings",
    "aws": "opskit.settings.aws:AwsSettings",
    "health": "opskit.health.settings:HealthSettings",
    "lab": "opskit.lab.settings:LabSettings",
}

DOMAINS = tuple(SCHEMAS)


def schema(domain: str) -> type[Settings]:
    """The schema class of ``domain`` (imported now)."""
    module, _, name = SCHEMAS[domain].partition(":")
    found: type[Settings] = getattr(importlib.import_module(module), name)
    return found
