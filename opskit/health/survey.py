"""Health of many hosts over the runner: a sample and the checks per host, worst status.

A host that cannot be sampled (unreachable, timed out, probe failed) is UNKNOWN.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from opskit import settings
from opskit.errors import UsageError
from opskit.health import checks as ck
from opskit.health import probe, workingset
from opskit.inventory import Host, Inventory
from opskit.runner import fleet as fleet_mod
from opskit.runner.fleet import OK, Observer, RunOptions
from opskit.transport.session import Session

if TYPE_CHECKING:
    from opskit.lab.settings import LabSettings

LAB_NOTE = ("lab hosts share one kernel: CPU, load, memory, swap, network and processes are "
            "the whole machine's, the same on every host; only mounts (e.g. /data) differ")


@dataclass
class HostHealth:
    host: str
    status: int
    checks: list[ck.Check] = field(default_factory=list)
    sample: dict[str, Any] | None = None
    reach: str = OK  # the runner's status: ok | unreachable | failed | timeout | ...
    error: str | None = None

    def problems(self) -> list[ck.Check]:
        bad = [c for c in self.checks if c.status != ck.NAGIOS_OK]
        return sorted(bad, key=lambda c: -ck._SEVERITY[c.status])

    def to_dict(self, with_sample: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {"host": self.host, "status": self.status,
                               "status_name": ck.NAMES[self.status], "reach": self.reach,
                               "error": self.error,
                               "checks": [c.to_dict() for c in self.checks]}
        if with_sample:
            doc["sample"] = self.sample
        return doc


@dataclass
class FleetHealth:
    hosts: list[HostHealth]
    notes: list[str]
    duration: float = 0.0

    @property
    def status(self) -> int:
        return ck.worst(h.status for h in self.hosts)

    def to_dict(self, with_sample: bool = True) -> dict[str, Any]:
        return {"status": self.status, "status_name": ck.NAMES[self.status],
                "exit_code": self.status, "notes": self.notes,
                "duration": round(self.duration, 3),
                "hosts": [h.to_dict(with_sample) for h in self.hosts]}


def inventory_host(inv: Inventory, name: str) -> Host:
    """One host of the inventory by its exact name (for --host: thresholds and data dirs)."""
    host = inv.hosts.get(name)
    if host is None:
        close = difflib.get_close_matches(name, inv.hosts, n=3)
        raise UsageError(f"no host {name!r} in the inventory",
                         hint=f"did you mean {', '.join(close)}?" if close
                         else "give an inventory host name, e.g. --host db1")
    return host


def notes_for(hosts: Sequence[Host]) -> list[str]:
    return [LAB_NOTE] if any(_is_lab(h) for h in hosts) else []


def _is_lab(host: Host) -> bool:
    """A lab host: its ``lab:`` settings (written by ``opskit lab up``) name the lab's
    state_dir. Checked like any settings, and only for a host that has them."""
    if "lab" not in host.vars:
        return False
    return bool(cast("LabSettings", settings.of(host, "lab")).state_dir)


def judge(name: str, sample: dict[str, Any], t: ck.Thresholds) -> HostHealth:
    checks = ck.evaluate(sample, t)
    return HostHealth(name, ck.worst(c.status for c in checks), checks, sample)


def sample_host(s: Session, interval: float, working_set: bool) -> dict[str, Any]:
    sample = probe.collect(s, interval)
    if working_set:
        sample["working_set"] = workingset.measure(s, int(sample["memory"]["total"]))
    return sample


def run(hosts: Sequence[Host], options: RunOptions, *, interval: float = 1.0,
        warn: Mapping[str, float | None] | None = None,
        crit: Mapping[str, float | None] | None = None, working_set: bool = True,
        observer: Observer | None = None) -> FleetHealth:
    """Sample and judge every host, in parallel; thresholds from each host's ``health`` vars
    with ``warn``/``crit`` overrides on top."""
    # Thresholds first: a bad inventory value is an error before any host is touched.
    limits = {h.name: ck.from_vars(h).with_overrides(warn, crit) for h in hosts}
    notes = notes_for(hosts)
    result = fleet_mod.run(hosts, lambda s: sample_host(s, interval, working_set), options,
                           observer=observer)
    out = []
    for r in result.results:
        if r.status == OK:
            out.append(judge(r.host, r.value, limits[r.host]))
        else:
            out.append(HostHealth(r.host, ck.NAGIOS_UNKNOWN, reach=r.status,
                                  error=r.error or r.status))
    return FleetHealth(out, notes, result.duration)
