"""Reading releases across the fleet (drift), and rolling ``current`` back."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from opskit.deploy import config, steps
from opskit.inventory import Host
from opskit.runner import fleet
from opskit.runner.fleet import OK, FleetResult, Observer, RunOptions
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session


def list_releases(hosts: Sequence[Host], run_options: RunOptions,
                  observer: Observer | None = None) -> FleetResult:
    """Each host's current release and the releases it has (read only)."""
    cfgs = {h.name: config.load(h) for h in hosts}

    def on_host(s: Session) -> dict[str, Any]:
        st = steps.read_releases(s, cfgs[s.host.name])
        return {"current": st.current, "previous": st.previous, "releases": st.releases}

    return fleet.run(hosts, on_host, run_options, observer=observer)


def drift(result: FleetResult) -> tuple[str | None, list[str]]:
    """The majority's current release, and the hosts whose current differs from it."""
    currents = {r.host: r.value["current"] for r in result.results if r.status == OK}
    if not currents:
        return None, []
    majority, _ = Counter(currents.values()).most_common(1)[0]
    return majority, [h for h, c in currents.items() if c != majority]


def rollback(hosts: Sequence[Host], to: str | None, run_options: RunOptions,
             observer: Observer | None = None) -> FleetResult:
    """Switch ``current`` to ``to`` (default: the release before current), reload, check."""
    cfgs = {h.name: config.load(h) for h in hosts}
    if to is not None:
        config.check_release_name(to)

    def on_host(s: Session) -> dict[str, Any]:
        cfg = cfgs[s.host.name]
        st = steps.read_releases(s, cfg)
        target = to or st.previous
        if target is None:
            raise CommandFailed(f"no release before {st.current} to roll back to")
        if target not in st.releases:
            raise CommandFailed(f"release {target} is not on this host "
                             f"(has: {', '.join(st.releases[-5:]) or 'none'})")
        if target == st.current:
            return {"from": st.current, "to": target, "changed": False}
        d: dict[str, Any] = {"from": st.current, "to": target, "changed": True}
        d["reload"] = steps.activate(s, cfg, target)
        d["health"] = steps.health(s, cfg, target)
        return d

    return fleet.run(hosts, on_host, run_options, observer=observer)
