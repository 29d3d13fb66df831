"""Reading releases across the fleet (drift), and rolling ``current`` back."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from opskit.deploy import config, steps
from opskit.inventory import Host
from opskit.runner import fleet, interrupts
from opskit.runner.fleet import OK, SKIPPED, FleetResult, Observer, RunOptions
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session

Note = Callable[[str], None]


def _read(s: Session, cfg: config.DeployConfig, note: Note | None) -> steps.HostReleases:
    """The host's releases; what is not ours is left out, with a warning (never run)."""
    st = steps.read_releases(s, cfg)
    for line in st.warnings(cfg):
        if note:
            note(f"{s.host.name}: warning: {line}")
    return st


def list_releases(hosts: Sequence[Host], run_options: RunOptions,
                  observer: Observer | None = None, note: Note | None = None) -> FleetResult:
    """Each host's current release and the releases it has (read only)."""
    cfgs = {h.name: config.load(h) for h in hosts}

    def on_host(s: Session) -> dict[str, Any]:
        cfg = cfgs[s.host.name]
        st = _read(s, cfg, note)
        d: dict[str, Any] = {"current": st.current, "previous": st.previous,
                             "releases": st.releases}
        if st.warnings(cfg):
            d["ignored"] = st.warnings(cfg)
        return d

    return fleet.run(hosts, on_host, run_options, observer=observer)


def drift(result: FleetResult) -> tuple[str | None, list[str]]:
    """The majority's current release, and the hosts whose current differs from it."""
    currents = {r.host: r.value["current"] for r in result.results if r.status == OK}
    if not currents:
        return None, []
    majority, _ = Counter(currents.values()).most_common(1)[0]
    return majority, [h for h, c in currents.items() if c != majority]


def rollback(hosts: Sequence[Host], to: str | None, run_options: RunOptions,
             observer: Observer | None = None, note: Note | None = None) -> FleetResult:
    """Switch ``current`` to ``to`` (default: the release before current), reload, check."""
    cfgs = {h.name: config.load(h) for h in hosts}
    if to is not None:
        config.check_release_name(to)

    def on_host(s: Session) -> dict[str, Any]:
        cfg = cfgs[s.host.name]
        st = _read(s, cfg, note)
        target = to or st.previous
        if target is None and st.foreign_current is not None:
            raise CommandFailed(f"current points at {st.foreign_current!r}, not a release "
                                f"under {cfg.releases_dir}: give --to RELEASE")
        if target is None:
            raise CommandFailed(f"no release before {st.current} to roll back to")
        if target not in st.releases:
            raise CommandFailed(f"release {target} is not on this host "
                             f"(has: {', '.join(st.releases[-5:]) or 'none'})")
        if target == st.current:
            return {"from": st.current, "to": target, "changed": False}
        d: dict[str, Any] = {"from": st.current, "to": target, "changed": True}
        if st.warnings(cfg):
            d["ignored"] = st.warnings(cfg)
        # switch -> reload -> health finishes once begun, even on Ctrl-C/SIGTERM.
        with interrupts.host_critical(f"switch -> reload -> health on {s.host.name}",
                                      leaves=lambda: f"{s.host.name} switched to {target}, "
                                      "maybe not reloaded or health-checked"):
            s.check_stop()  # interrupted before it began: the host stays as it was
            with s.recovering():
                d["reload"] = steps.activate(s, cfg, target)
                d["health"] = steps.health(s, cfg, target)
        return d

    return fleet.run(hosts, on_host, run_options, observer=observer)


def rollback_interrupted_summary(result: FleetResult) -> tuple[str, str]:
    """After an interrupted rollback: which hosts were switched back, which were not."""
    done = [r.host for r in result.results if r.status == OK]
    old = [r.host for r in result.results if r.status == SKIPPED]
    other = [f"{r.host} ({r.status}: {r.error})" for r in result.results
             if r.status not in (OK, SKIPPED)]
    text = ("rollback interrupted at a safe point (no host was left half-switched); rolled "
            f"back (or already there) and healthy: {', '.join(done) or 'none'}; not started, "
            f"still on the release they had: {', '.join(old) or 'none'}")
    if other:
        text += f"; see above: {', '.join(other)}"
    hint = (f"run it again for the rest: `opskit rollback -l {','.join(old)} --yes` (with "
            "the same --to, if one was given)" if old else "nothing is left to do")
    return text + ".", hint
