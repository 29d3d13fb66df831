"""Does the working set still fit in RAM? PostgreSQL's data directory and Redis's used memory
against the host's RAM, with how much of the data directory is in the page cache.

Runs over a :class:`Session`, so it works the same on a target and on the local machine.
The data directory is measured with opskit's page-map helper (mincore, reads nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from opskit import settings
from opskit.cache import tools as cache_tools
from opskit.errors import OpskitError
from opskit.redis import config as redis_config
from opskit.redis import state as redis_state
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session
from opskit.units import human_bytes

if TYPE_CHECKING:
    from opskit.pg.settings import PostgresSettings


def _pg(s: Session, path: str, ram: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"service": "postgres", "path": path}
    try:
        pm, _ = cache_tools.map_dir(s, path, cross_check=False)
    except CommandFailed as exc:
        return {**entry, "error": f"cannot map {path}: {exc}"}
    t = pm.totals()
    size, resident = t["bytes"], t["resident_bytes"]
    res_pct = round(100.0 * resident / size, 1) if size else 100.0
    return {**entry, "size": size, "resident": resident, "resident_percent": res_pct,
            "ram": ram, "percent_of_ram": round(100.0 * size / max(1, ram), 1),
            "detail": f"{human_bytes(size)} data dir, {res_pct:g}% in page cache, "
                      f"RAM {human_bytes(ram)}"}


def _redis(s: Session, ram: int) -> list[dict[str, Any]]:
    out = []
    try:
        instances = redis_config.instances(s.host)
    except OpskitError as exc:
        return [{"service": "redis", "error": exc.message}]
    for i in instances:
        name = "redis" if len(instances) == 1 else f"redis:{i.port}"
        st = redis_state.probe(s, i)
        if st.used_memory is None:
            out.append({"service": name, "error": f"no INFO from {i.endpoint}: {st.error}"})
            continue
        detail = f"{human_bytes(st.used_memory)} used, RAM {human_bytes(ram)}"
        if st.maxmemory:
            detail += f", maxmemory {human_bytes(st.maxmemory)}"
        out.append({"service": name, "size": st.used_memory, "ram": ram,
                    "maxmemory": st.maxmemory or None,
                    "percent_of_ram": round(100.0 * st.used_memory / max(1, ram), 1),
                    "detail": detail})
    return out


def measure(s: Session, ram: int) -> list[dict[str, Any]]:
    """One entry per data service of the host (none when its vars name none)."""
    out: list[dict[str, Any]] = []
    if isinstance(s.host.vars.get("postgres"), dict):
        try:
            data_directory = cast("PostgresSettings",
                                  settings.of(s.host, "postgres")).data_directory
        except OpskitError as exc:  # one host's bad settings: UNKNOWN there, not a crash
            out.append({"service": "postgres", "error": exc.message})
        else:
            out.append(_pg(s, data_directory, ram))
    if isinstance(s.host.vars.get("redis"), dict):
        out.extend(_redis(s, ram))
    return out
