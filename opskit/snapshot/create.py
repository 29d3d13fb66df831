"""``snapshot create``: one consistent set of EBS snapshots of every member of a mount.

Per host: discover the members -> pre-freeze hooks -> sync + freeze (guarded) -> ONE
CreateSnapshots call for the instance (boot volume and non-member volumes excluded) -> thaw
-> tag each snapshot with its member index. Where CreateSnapshots is refused, one
CreateSnapshot per member is the fallback (still inside the same freeze).

Only the guard's word makes a set consistent: unless it says the freeze held until our THAW
(it may have thawed at its deadline while the call was still running, or not answered at
all), the snapshots are discarded (``discard.py``) and the host fails.
"""

from __future__ import annotations

import getpass
import secrets
import socket
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from opskit import __version__, aws
from opskit.errors import SafetyError
from opskit.inventory import Host
from opskit.runner import fleet, interrupts
from opskit.runner.fleet import OK, SKIPPED, FleetResult, HostResult, Observer, RunOptions
from opskit.snapshot import discovery
from opskit.snapshot.config import DISABLED, SnapshotConfig, enabled
from opskit.snapshot.discard import discard
from opskit.snapshot.freeze import ThawNotConfirmed, frozen
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session

TAG = "opskit:"
REFUSED_CODES = ("UnsupportedOperation", "InvalidParameterValue", "InvalidParameterCombination")


def set_id(host: str, mount: str, now: datetime) -> str:
    slug = mount.strip("/").replace("/", "-") or "root"
    return f"{host}-{slug}-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def _tags(cfg: SnapshotConfig, host: str, layout: discovery.Layout, sid: str, now: datetime,
          extra: dict[str, str]) -> list[dict[str, str]]:
    tags = {
        f"{TAG}set-id": sid, f"{TAG}host": host, f"{TAG}mount": cfg.mount,
        f"{TAG}array": layout.array or layout.device, f"{TAG}members": str(len(layout.volumes)),
        f"{TAG}created": now.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{TAG}retention": cfg.retention,
        f"{TAG}created-by": f"opskit {__version__} {getpass.getuser()}@{socket.gethostname()}",
        "Name": f"{host}:{cfg.mount} {now:%Y-%m-%d %H:%M}Z",
        **extra,
    }
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _instance_volumes(ec2: Any, instance_id: str) -> tuple[str | None, dict[str, str]]:
    """(boot volume, device name -> volume id of every attached volume) of the instance."""
    resp = ec2.describe_instances(InstanceIds=[instance_id])
    inst = resp["Reservations"][0]["Instances"][0]
    root = inst.get("RootDeviceName")
    boot, attached = None, {}
    for m in inst.get("BlockDeviceMappings", []):
        vol = m.get("Ebs", {}).get("VolumeId")
        if vol:
            attached[m.get("DeviceName", "")] = vol
            if m.get("DeviceName") == root:
                boot = vol
    return boot, attached


def _snapshot_call(ec2: Any, instance_id: str, layout: discovery.Layout, exclude: list[str],
                   tags: list[dict[str, str]]) -> tuple[str, dict[str, str]]:
    """Inside the freeze: (method, volume id -> snapshot id)."""
    spec = [{"ResourceType": "snapshot", "Tags": tags}]
    try:
        resp = ec2.create_snapshots(
            InstanceSpecification={"InstanceId": instance_id, "ExcludeBootVolume": True,
                                   **({"ExcludeDataVolumeIds": exclude} if exclude else {})},
            Description=f"opskit {layout.mount}", TagSpecifications=spec,
        )
        return "CreateSnapshots", {s["VolumeId"]: s["SnapshotId"] for s in resp["Snapshots"]}
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code not in REFUSED_CODES:
            raise
    made = {}
    for vol in layout.volumes:
        snap = ec2.create_snapshot(VolumeId=vol, Description=f"opskit {layout.mount}",
                                   TagSpecifications=spec)
        made[vol] = snap["SnapshotId"]
    return "CreateSnapshot per volume", made


class _CreateOnHost:
    def __init__(self, cfgs: dict[str, SnapshotConfig], extra_tags: dict[str, str]) -> None:
        self.cfgs, self.extra_tags = cfgs, extra_tags

    def __call__(self, s: Session) -> dict[str, Any]:
        cfg = self.cfgs[s.host.name]
        if not cfg.instance_id:
            raise SafetyError(f"{s.host.name}: no aws.instance_id in the inventory",
                              hint="the EC2 inventory source sets it; or add aws.instance_id")
        ec2 = aws.client("ec2", cfg.aws)
        boot, attached = aws.call(lambda: _instance_volumes(ec2, cfg.instance_id),
                                  "describe the instance", error=CommandFailed)
        layout = discovery.discover(s, cfg, attached)
        unknown = [v for v in layout.volumes if v not in attached.values()]
        if unknown:
            raise SafetyError(f"{s.host.name}: {', '.join(unknown)} not attached to "
                              f"{cfg.instance_id}", hint="check snapshot.volumes / aws.instance_id")
        exclude = [v for v in attached.values() if v not in layout.volumes and v != boot]
        for hook in cfg.pre_freeze:
            s.run(hook)
        # freeze -> snapshot -> thaw -> tag (or discard) finishes once begun, even on
        # Ctrl-C/SIGTERM: the set ends complete and tagged, or deleted; never half-made.
        with interrupts.host_critical(
                f"freeze -> snapshot -> thaw -> tag on {s.host.name}",
                leaves=lambda: f"{s.host.name}:{cfg.mount} maybe frozen until its guard's "
                f"{cfg.freeze_timeout:g}s deadline, its snapshots maybe untagged"):
            s.check_stop()  # interrupted before it began: nothing frozen, nothing taken
            with s.recovering():
                return self._take(s, ec2, cfg, layout, exclude)

    def _take(self, s: Session, ec2: Any, cfg: SnapshotConfig, layout: discovery.Layout,
              exclude: list[str]) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        sid = set_id(s.host.name, cfg.mount, now)
        tags = _tags(cfg, s.host.name, layout, sid, now, self.extra_tags)
        where = f"{s.host.name}:{cfg.mount}"
        taken: list[tuple[str, dict[str, str]]] = []
        try:
            with frozen(s, cfg.mount, cfg.freeze_timeout) as window:
                t0 = time.monotonic()
                taken.append(aws.call(lambda: _snapshot_call(
                    ec2, cfg.instance_id, layout, exclude, tags), "snapshot",
                    error=CommandFailed))
                took = time.monotonic() - t0
        except ThawNotConfirmed as exc:
            if not taken:
                raise
            method, made = taken[0]
            raise discard(ec2, where, sid, method, list(made.values()), exc.window, took,
                          thaw=exc) from exc
        method, made = taken[0]
        if not window.held:  # the guard thawed first: taken (maybe partly) after the thaw
            raise discard(ec2, where, sid, method, list(made.values()), window, took)
        return self._finish(s, ec2, layout, sid, method, made, window.ms, took * 1000)

    def _finish(self, s: Session, ec2: Any, layout: discovery.Layout, sid: str, method: str,
                made: dict[str, str], window_ms: float | None, call_ms: float) -> dict[str, Any]:
        # After the thaw: tag members, and never leave a partial set looking complete.
        stray = [snap for vol, snap in made.items() if vol not in layout.volumes]
        missing = [v for v in layout.volumes if v not in made]
        for snap in stray:  # e.g. a data volume the API did not exclude
            aws.call(lambda snap=snap: ec2.delete_snapshot(SnapshotId=snap),
                     "delete a non-member snapshot", error=CommandFailed)
        if missing:
            for vol in layout.volumes:
                if vol in made:
                    aws.call(lambda v=vol: ec2.delete_snapshot(SnapshotId=made[v]),
                             "delete a partial set", error=CommandFailed)
            raise CommandFailed(f"no snapshot came back for {', '.join(missing)}; partial set "
                             f"{sid} deleted")
        for i, vol in enumerate(layout.volumes):
            aws.call(lambda i=i, vol=vol: ec2.create_tags(
                Resources=[made[vol]], Tags=[{"Key": f"{TAG}member", "Value": str(i)},
                                             {"Key": f"{TAG}volume", "Value": vol}]),
                     "tag member", error=CommandFailed)
        return {"set_id": sid, "method": method, "freeze_ms": window_ms,
                "call_ms": round(call_ms, 1), "layout": layout.to_dict(),
                "snapshots": [made[v] for v in layout.volumes]}


def create(hosts: Sequence[Host], cfgs: dict[str, SnapshotConfig], extra_tags: dict[str, str],
           run_options: RunOptions, observer: Observer | None = None) -> FleetResult:
    """A set for each host; a host with ``snapshot.enabled: false`` is not contacted at all:
    its result is ``skipped`` with the reason :data:`~opskit.snapshot.config.DISABLED`."""
    todo = [h for h in hosts if enabled(h)]
    result = fleet.run(todo, _CreateOnHost(cfgs, extra_tags), run_options, observer=observer)
    ran = {r.host: r for r in result.results}
    result.results = [ran.get(h.name) or HostResult(h.name, SKIPPED, error=DISABLED)
                      for h in hosts]
    return result


def disabled(result: FleetResult) -> list[str]:
    """The hosts skipped because of ``snapshot.enabled: false``."""
    return [r.host for r in result.results if r.status == SKIPPED and r.error == DISABLED]


def interrupted_summary(result: FleetResult) -> tuple[str, str]:
    """After an interrupted ``snapshot create``: which hosts have a new set, which not."""
    done = [f"{r.host} ({r.value['set_id']})" for r in result.results
            if r.status == OK and r.value]
    off = disabled(result)
    not_started = [r.host for r in result.results if r.status == SKIPPED and r.host not in off]
    other = [f"{r.host} ({r.status}: {r.error})" for r in result.results
             if r.status not in (OK, SKIPPED)]
    text = ("snapshot create interrupted at a safe point (every filesystem thawed, no set left "
            f"untagged); a new complete set: {', '.join(done) or 'none'}; not started, no new "
            f"set: {', '.join(not_started) or 'none'}")
    if off:
        text += f"; skipped ({DISABLED}): {', '.join(off)}"
    if other:
        text += f"; see above: {', '.join(other)}"
    hint = (f"snapshot the rest: `opskit snapshot create -l {','.join(not_started)} --yes` "
            "(with the same --mount, if one was given)" if not_started
            else "nothing is left to do")
    return text + ".", hint
