"""The rolling deploy: batches, a health gate after each, automatic rollback of failed hosts.

Per host (one connection, about three remote commands): ship (upload, verify, unpack) ->
install -> [leave the target group, drain] -> switch ``current`` + reload -> health check and
prune -> [rejoin the target group].
A host that fails after its switch is switched back to the release it had, reloaded and
re-checked, and the failed release is removed; a host that fails before its switch is
untouched (``current`` never moved). Unreachable hosts are reported and do not count against
``--max-fail-percent``: nothing was changed on them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from opskit.deploy import batches as batches_mod
from opskit.deploy import config, elb, steps
from opskit.deploy.artifact import Artifact
from opskit.deploy.config import DeployConfig
from opskit.inventory import Host
from opskit.runner import fleet, interrupts
from opskit.runner import lease as lease_mod
from opskit.runner.fleet import (
    FAILED,
    OK,
    SKIPPED,
    TIMEOUT,
    FleetResult,
    HostResult,
    Observer,
    RunOptions,
)
from opskit.transport.errors import CommandFailed, Interrupted
from opskit.transport.session import Session

Note = Callable[[str], None]


@dataclass(frozen=True)
class DeployOptions:
    batch: str = "1,25%"
    max_fail_percent: float = 0.0
    auto_rollback: bool = True


@dataclass
class DeployResult:
    artifact: Artifact
    batches: list[list[str]]
    fleet: FleetResult
    details: dict[str, dict[str, Any]]
    stopped_after_batch: int | None = None

    @property
    def exit_code(self) -> int:
        return self.fleet.exit_code

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "artifact": self.artifact.to_dict(),
            "batches": self.batches,
            "stopped_after_batch": self.stopped_after_batch,
            **self.fleet.to_dict(),
        }
        for host in doc["hosts"]:
            host["deploy"] = self.details.get(host["host"], {})
        return doc


def load_configs(hosts: Sequence[Host]) -> dict[str, DeployConfig]:
    """Every host's settings, checked before anything runs (bad input changes nothing)."""
    return {h.name: config.load(h) for h in hosts}


def leases(hosts: Sequence[Host]) -> list[tuple[str, list[Host], str]]:
    """One lease per app root (``deploy.root``) on the hosts that serve it: two deploys or
    rollbacks of the same app cannot interleave, different apps on one host can."""
    by_root: dict[str, list[Host]] = {}
    for name, cfg in load_configs(hosts).items():
        by_root.setdefault(cfg.root, []).append(next(h for h in hosts if h.name == name))
    return [(lease_mod.scope("deploy", root), members, f"the app at {root}")
            for root, members in by_root.items()]


def plan(hosts: Sequence[Host], art: Artifact, options: DeployOptions) -> dict[str, Any]:
    """What ``deploy`` would do, for --dry-run."""
    cfgs = load_configs(hosts)
    out = []
    for i, batch in enumerate(batches_mod.split(options.batch, list(hosts)), 1):
        for h in batch:
            cfg = cfgs[h.name]
            in_lb = bool(cfg.target_group_arn and cfg.aws.get("instance_id"))
            names = ["upload", "unpack"] + (["install"] if cfg.install else [])
            names += (["deregister+drain"] if in_lb else []) + ["switch", f"reload:{cfg.reload}"]
            names += (["health"] if cfg.health_url else []) + ["prune"]
            names += (["register+wait-healthy"] if in_lb else [])
            out.append({"batch": i, "host": h.name, "root": cfg.root,
                        "release_dir": cfg.release_dir(art.release), "steps": names})
    return {"dry_run": True, "artifact": art.to_dict(), "batch": options.batch,
            "max_fail_percent": options.max_fail_percent,
            "auto_rollback": options.auto_rollback, "plan": out}


class _HostDeploy:
    """The per-host function of one deploy; keeps each host's details for the report."""

    def __init__(self, art: Artifact, cfgs: dict[str, DeployConfig], options: DeployOptions,
                 note: Note) -> None:
        self.art, self.cfgs, self.options, self.note = art, cfgs, options, note
        self.details: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, s: Session) -> dict[str, Any]:
        cfg = self.cfgs[s.host.name]
        d: dict[str, Any] = {"release": self.art.release}
        with self._lock:
            self.details[s.host.name] = d
        target = elb.target_for(s.host, cfg)
        out_of_lb = switched = False
        previous: str | None = None
        stage = ["not switched yet"]  # for the warning on a second Ctrl-C
        with ExitStack() as section:
            try:
                # Everything that does not touch what serves happens before the host leaves
                # the load balancer: its time out of rotation is the switch, reload and check.
                before = steps.ship(s, cfg, self.art)
                self._warn(s, cfg, d, before)
                previous = d["previous"] = before.current
                steps.install(s, cfg, self.art)
                # From here the host must end serving one release, healthy (this one, or the
                # previous after a rollback): on Ctrl-C/SIGTERM the section finishes first.
                section.enter_context(interrupts.host_critical(
                    f"switch -> reload -> health on {s.host.name}",
                    leaves=lambda: f"{s.host.name} {stage[0]}"))
                s.check_stop()  # interrupted before the section began: the host is untouched
                section.enter_context(s.recovering())
                if target:
                    d["elb_out"] = elb.deregister(target, cfg.drain_timeout, self._note(s))
                    out_of_lb = True
                    stage[0] = "out of the target group, not switched"
                switched = True
                stage[0] = f"switched to {self.art.release}, maybe not reloaded or checked"
                try:
                    d["reload"] = steps.activate(s, cfg, self.art.release)
                except steps.NotSwitched:
                    switched = False
                    raise
                doomed = steps.prunable(before, self.art.release, cfg.keep_releases)
                d["health"] = steps.health(s, cfg, self.art.release, prune=doomed)
                d["pruned"] = doomed
                stage[0] = f"on {self.art.release}, healthy, out of the target group"
                if target:
                    d["elb_in"] = elb.register(target, cfg.healthy_timeout, self._note(s))
                    out_of_lb = False
                d["current"] = self.art.release
                return d
            except steps.ShipFailed as exc:
                if exc.before is not None:
                    self._warn(s, cfg, d, exc.before)
                    previous = d["previous"] = exc.before.current
                if exc.already_current:
                    d["current"] = self.art.release
                    raise
                if not self.options.auto_rollback:
                    d["current"] = previous
                    raise
                with s.recovering():
                    problems = self._recover(s, cfg, d, previous, False, target, out_of_lb)
                exc.args = (f"{exc}; {problems}",)
                raise
            except Exception as exc:
                if interrupts.aborted() and switched:  # left mid-way, as the warning said
                    d["current"] = None
                    d["left"] = stage[0]
                    raise
                if not self.options.auto_rollback:
                    d["current"] = self.art.release if switched else previous
                    raise
                with s.recovering():
                    problems = self._recover(s, cfg, d, previous, switched, target, out_of_lb)
                if isinstance(exc, Interrupted) and not switched:  # stopped before the switch
                    exc.args = (f"{exc}; {problems}",)
                    raise
                if isinstance(exc, CommandFailed):
                    exc.args = (f"{exc}; {problems}",)
                    raise
                raise CommandFailed(f"{type(exc).__name__}: {exc}; {problems}") from exc

    def _warn(self, s: Session, cfg: DeployConfig, d: dict[str, Any],
              st: steps.HostReleases) -> None:
        """What the host has that is not ours is left out of the state (never run): say so."""
        lines = st.warnings(cfg)
        if lines:
            d["ignored"] = lines
        for line in lines:
            self.note(f"{s.host.name}: warning: {line}")

    def _note(self, s: Session) -> Note:
        return lambda msg: self.note(f"{s.host.name}: {msg}")

    def _recover(self, s: Session, cfg: DeployConfig, d: dict[str, Any], previous: str | None,
                 switched: bool, target: elb.Target | None, out_of_lb: bool) -> str:
        """Put the host back as it was; returns what happened, for the error line."""
        said: list[str] = []
        healthy_again = True
        if switched:
            if previous is None:
                healthy_again = False
                said.append("no previous release to roll back to")
            else:
                try:
                    d["rollback_reload"] = steps.activate(s, cfg, previous)
                    steps.health(s, cfg, previous)
                    said.append(f"rolled back to {previous}")
                    d["rolled_back_to"] = previous
                except Exception as exc:  # report, keep going: the original error matters most
                    healthy_again = False
                    said.append(f"ROLLBACK to {previous} FAILED: {exc}")
        else:
            said.append("current untouched")
        d["current"] = previous if healthy_again or not switched else self.art.release
        try:
            steps.remove_release(s, cfg, self.art.release)
        except Exception as exc:
            said.append(f"could not remove {self.art.release}: {exc}")
        if target and out_of_lb:
            if healthy_again:
                try:
                    d["elb_in"] = elb.register(target, cfg.healthy_timeout, self._note(s))
                except Exception as exc:
                    said.append(f"could not re-register in the target group: {exc}")
            else:
                said.append("left out of the target group")
        return "; ".join(said)


def deploy(
    hosts: Sequence[Host],
    art: Artifact,
    options: DeployOptions,
    run_options: RunOptions,
    *,
    observer: Observer | None = None,
    note: Note | None = None,
    on_batch: Callable[[int, list[str]], None] | None = None,
) -> DeployResult:
    """Deploy ``art`` to ``hosts`` in rolling batches; stops at the first failed health gate."""
    cfgs = load_configs(hosts)
    host_fn = _HostDeploy(art, cfgs, options, note or (lambda _m: None))
    groups = batches_mod.split(options.batch, list(hosts))
    by_host: dict[str, HostResult] = {}
    stopped: int | None = None
    elapsed = 0.0
    interrupted = False
    for i, batch in enumerate(groups, 1):
        if stopped is not None or interrupted:
            why = (f"not started: batch {stopped} failed its health gate" if stopped
                   else "not started: interrupted")
            for h in batch:
                by_host[h.name] = HostResult(h.name, SKIPPED, error=why)
            continue
        try:
            if interrupts.requested() and not interrupts.in_critical():
                raise KeyboardInterrupt  # a signal between batches: start no new one
            if on_batch:
                on_batch(i, [h.name for h in batch])
            res = fleet.run(batch, host_fn, run_options, observer=observer)
        except KeyboardInterrupt:
            interrupted = True
            for h in batch:
                by_host[h.name] = HostResult(h.name, SKIPPED, error="not started: interrupted")
            continue
        elapsed += res.duration
        interrupted = res.interrupted
        for r in res.results:
            by_host[r.host] = r
        bad = sum(r.status in (FAILED, TIMEOUT) for r in res.results)
        if bad and bad * 100.0 / len(batch) > options.max_fail_percent:
            stopped = i
    results = [by_host[h.name] for h in hosts]
    merged = FleetResult(results, elapsed, interrupted, 0)
    return DeployResult(art, [[h.name for h in b] for b in groups], merged, host_fn.details,
                        stopped)


def interrupted_summary(result: DeployResult, command: str) -> tuple[str, str]:
    """After an interrupted deploy: one paragraph on where every host is, and how to go on."""
    rel = result.artifact.release
    new, back, old, other = [], [], [], []
    for r in result.fleet.results:
        d = result.details.get(r.host, {})
        if r.status == OK and d.get("current") == rel:
            new.append(r.host)
        elif d.get("rolled_back_to"):
            back.append(f"{r.host} (to {d['rolled_back_to']})")
        elif r.status == SKIPPED and "left" not in d:
            old.append(r.host)
        else:
            other.append(f"{r.host} ({r.status}: {d.get('left') or r.error})")
    said = [f"on the new release {rel} and healthy: {', '.join(new) or 'none'}",
            f"untouched on their old release: {', '.join(old) or 'none'}"]
    if back:
        said.append(f"rolled back to their old release: {', '.join(back)}")
    if other:
        said.append(f"see above: {', '.join(other)}")
    left = any("left" in d for d in result.details.values())
    text = ("deploy interrupted; " if left else
            "deploy interrupted at a safe point (no host was left half-switched); ") + \
        "; ".join(said) + "."
    hint = (f"re-run `{command}` (a new build of the same code goes to every host; those "
            f"already on it get it again)")
    if new:
        hint += f", or put the new ones back: `opskit rollback -l {','.join(new)} --yes`"
    return text, hint
