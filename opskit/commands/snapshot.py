"""``opskit snapshot``: consistent EBS snapshots of RAID-backed mounts (create, list, ...)."""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone

import click

from opskit import aws, lock
from opskit.commands.mutating import Change, mutating
from opskit.commands.options import SECONDS, AppContext, pass_app, shared_options
from opskit.commands.render import render_fleet_result
from opskit.errors import EXIT_FAILED, EXIT_OK, SafetyError, StepError, UsageError
from opskit.output import STATUS_STYLE, Environment
from opskit.runner import lease
from opskit.runner.fleet import HostResult
from opskit.snapshot import config as snap_config
from opskit.snapshot import create as snap_create
from opskit.snapshot import restore as snap_restore
from opskit.snapshot import retention, store
from opskit.snapshot.sets import SnapshotSet


@click.group("snapshot", epilog="""\b
Examples:
  opskit snapshot create -l db --mount /data --yes
  opskit snapshot create -l pg_primary --cron      # from cron: quiet, locked, journaled
""")
def command() -> None:
    """EBS snapshots of a mount's RAID members, taken under one guarded XFS freeze."""


def _parse_tags(values: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key or key.startswith(("opskit:", "aws:")):
            raise UsageError(f"bad --tag {v!r}", hint="--tag KEY=VALUE (not opskit:/aws: keys)")
        tags[key] = val
    return tags


@command.command("create", epilog="""\b
Examples:
  opskit snapshot create -l db1 --mount /data --yes
  opskit snapshot create -l 'db:&pg_replica' --tag reason=pre-upgrade --yes
  opskit snapshot create -l pg_primary --cron --freeze-timeout 20
""")
@click.option("--mount", metavar="PATH", help="Mount point to snapshot (default: the host's "
              "snapshot.mount). Example: --mount /data")
@click.option("--tag", "tags", multiple=True, metavar="K=V",
              help="Extra tag on every snapshot of the set. Example: --tag reason=pre-upgrade")
@click.option("--freeze-timeout", type=SECONDS, metavar="S",
              help="Thaw after S seconds whatever happens (default 30); a snapshot call "
              "that outlasts it is discarded. Example: --freeze-timeout 20")
@click.option("--retention", metavar="CLASS", help="Retention class tag (default: the host's "
              "snapshot.retention or 'default'). Example: --retention hourly")
@click.option("--cron", is_flag=True, help="For cron: no prompts, no colour, a lock against "
              "overlapping runs, quiet on success. Example: --cron")
@mutating("snapshot create", locked=True)
@shared_options
def create(app: AppContext, change: Change, mount: str | None, tags: tuple[str, ...],
           freeze_timeout: float | None, retention: str | None, cron: bool) -> int:
    """Freeze MOUNT on each selected host, snapshot all its EBS members in one call, thaw.

    Exit status: 0 ok, 2 some host failed (also: the freeze guard thawed before the snapshot
    call returned, so that set was discarded), 3 some unreachable, 4 refused (e.g. a member
    volume that cannot be mapped, or another --cron run holding the lock).
    """
    env = app.env
    if cron:
        env.quiet_success = True
    extra = _parse_tags(tags)
    selected = app.select()
    # snapshot.enabled: false -> never frozen: left out here, shown as skipped, never loaded.
    off = [h.name for h in selected if not snap_config.enabled(h)]
    hosts = [h for h in selected if h.name not in off]
    if not hosts:
        raise UsageError(f"{snap_config.DISABLED} for every selected host: {', '.join(off)}",
                         hint="select hosts whose snapshots are enabled (e.g. the replicas)")
    cfgs = {h.name: snap_config.load(h, mount, freeze_timeout, retention) for h in hosts}
    skipped = [{"host": name, "skipped": snap_config.DISABLED} for name in off]
    if change.dry_run:
        plan = [{"host": h.name, "mount": c.mount, "instance_id": c.instance_id,
                 "freeze_timeout": c.freeze_timeout, "pre_freeze": list(c.pre_freeze)}
                for h, c in ((h, cfgs[h.name]) for h in hosts)]

        def show() -> None:
            env.line(f"dry run: would freeze and snapshot {len(hosts)} hosts:")
            env.table(("host", "mount", "instance", "freeze timeout"),
                      [(p["host"], p["mount"], p["instance_id"], p["freeze_timeout"])
                       for p in plan])
            for name in off:
                env.line(f"{name}: skipped: {snap_config.DISABLED}", style="yellow")

        return change.planned({"dry_run": True, "plan": plan, "skipped": skipped}, show,
                              [h.name for h in hosts])
    change.begin(f"Freeze and snapshot {len(hosts)} hosts"
                 + (f" ({len(off)} skipped: {snap_config.DISABLED})?" if off else "?"),
                 assume_yes=cron, targets=[h.name for h in hosts],
                 plan=[{"host": h.name, "mount": cfgs[h.name].mount} for h in hosts] + skipped)
    with contextlib.ExitStack() as stack:
        if cron:
            try:
                stack.enter_context(lock.exclusive("snapshot"))
            except SafetyError as exc:  # say why in the journal too, then exit 4
                change.record({}, exit_code=exc.exit_code, duration=0,
                              details={"refused": exc.message})
                raise
        # One run per host and mount, from any operator machine, manual or cron.
        stack.enter_context(change.leases(
            [(lease.scope("snapshot", cfgs[h.name].mount), [h],
              f"snapshots of {h.name}:{cfgs[h.name].mount}") for h in hosts]))
        with env.progress(len(hosts), "snapshot") as observer:
            observer.on_finish.append(lambda r: _render_host(env, r))
            result = snap_create.create(selected, cfgs, extra, app.run_options(), observer)
    for r in result.results:
        if r.host in off and not env.quiet_success:  # cron: in the journal, no mail each run
            _render_host(env, r)
    change.record_fleet(result, details={
        "sets": {r.host: r.value["set_id"] for r in result.results if r.value},
        "cron": cron})
    if not (cron and result.exit_code == 0):
        render_fleet_result(env, result, extra={})
    if result.interrupted:
        text, hint = snap_create.interrupted_summary(result)
        env.note(f"stopped: {text}")
        env.note(f"continue: {hint}")
    return result.exit_code


def _render_host(env: Environment, r: HostResult) -> None:
    if env.quiet_success and r.status == "ok":
        return
    v = r.value if isinstance(r.value, dict) else {}
    if v:
        env.line(f"{r.host} | {r.status} | set {v['set_id']} | {len(v['snapshots'])} snapshots"
                 f" | frozen {v['freeze_ms']:.0f} ms ({v['method']})",
                 style=STATUS_STYLE.get(r.status))
    else:
        env.line(f"{r.host} | {r.status} | {r.error}", style=STATUS_STYLE.get(r.status))
        if r.hint:
            env.line(f"  hint: {r.hint}", style="yellow")


def _age(created: datetime) -> str:
    secs = (datetime.now(timezone.utc) - created).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit}"
    return f"{secs:.0f}s"


@command.command("list", epilog="""\b
Examples:
  opskit snapshot list -l db1
  opskit snapshot list -l db --mount /data --json | jq '.sets[] | select(.complete | not)'
""")
@click.option("--mount", metavar="PATH", help="Only sets of this mount. Example: --mount /data")
@shared_options
@pass_app
def list_(app: AppContext, mount: str | None) -> int:
    """Snapshot sets of the selected hosts: complete or not, age, size, members."""
    env = app.env
    found = store.list_sets(app.select(), mount)
    if env.json:
        env.emit_json({"sets": [s.to_dict() for s in found]})
        return EXIT_OK
    if not found:
        env.line("no opskit snapshot sets for the selected hosts")
        return EXIT_OK
    rows = [(s.set_id, s.host, s.mount, s.state, _age(s.created),
             f"{len(s.members)}/{s.expected_members or '?'}", s.size_gib, s.retention,
             s.reason or "") for s in found]
    env.table(("set", "host", "mount", "state", "age", "members", "GiB", "retention", "why"),
              rows, styles=[None if s.complete else "yellow" for s in found])
    return EXIT_OK


@command.command("verify", epilog="""\b
Examples:
  opskit snapshot verify db1-data-20261124T045012Z-ab12 -l db1
""")
@click.argument("set_id")
@shared_options
@pass_app
def verify(app: AppContext, set_id: str) -> int:
    """Check that SET has every member, each snapshot completed (exit 0), else exit 2."""
    env = app.env
    s, _ = store.find_set(app.select(), set_id)
    if env.json:
        env.emit_json(s.to_dict())
    else:
        env.line(f"{s.set_id}: {s.state} ({len(s.members)}/{s.expected_members or '?'} members"
                 f", {s.size_gib} GiB){'' if s.complete else ': ' + (s.reason or '')}",
                 style="green" if s.complete else "bold red")
        for m in s.members:
            env.line(f"  member {m.index}: {m.snapshot_id} of {m.volume_id} {m.state} "
                     f"{m.progress}")
    return EXIT_OK if s.complete else EXIT_FAILED


@command.command("restore", epilog="""\b
Examples:
  opskit snapshot restore db1-data-20261124T045012Z-ab12 -l db1 --instance i-0abc --dry-run
  opskit snapshot restore db1-data-20261124T045012Z-ab12 -l db1 --instance i-0abc --yes
""")
@click.argument("set_id")
@click.option("--instance", "instance_id", required=True, metavar="ID",
              help="EC2 instance to attach the new volumes to. Example: --instance i-0abc")
@click.option("--az", metavar="ZONE", help="Availability zone of the new volumes (default: "
              "the instance's). Example: --az us-east-1a")
@mutating("snapshot restore")
@shared_options
def restore(app: AppContext, change: Change, set_id: str, instance_id: str,
            az: str | None) -> int:
    """Create a volume from every member of SET and attach them to --instance in member order.

    Prints the steps to assemble the array and mount it read-only on the instance.
    """
    env = app.env
    found, aws_vars = store.find_set(app.select(), set_id)
    if change.dry_run:
        p = snap_restore.plan(found, aws.client("ec2", aws_vars), instance_id, az)
        return change.planned(p, lambda: _print_restore(env, p, "dry run: would create and "
                                                        "attach"))
    change.begin(f"Create {len(found.members)} volumes from {set_id} and attach them "
                 f"to {instance_id}?", targets=[],
                 plan={"set_id": set_id, "instance_id": instance_id, "az": az})
    p = snap_restore.restore(found, aws_vars, instance_id, az)
    change.record({}, exit_code=EXIT_OK,
                  details={"set_id": set_id, "instance_id": instance_id,
                           "volumes": [m["volume"] for m in p["members"]]})
    if env.json:
        env.emit_json(p)
    else:
        _print_restore(env, p, "created and attached")
    return EXIT_OK


def _print_restore(env: Environment, p: dict, what: str) -> None:  # type: ignore[type-arg]
    env.line(f"{what} in {p['availability_zone']} for {p['instance_id']}:")
    env.table(("member", "snapshot", "volume", "device", "GiB"),
              [(m["member"], m["snapshot"], m.get("volume", "-"), m["device"], m["size_gib"])
               for m in p["members"]])
    for line in p.get("next_steps", []):
        env.line(line)


@command.command("prune", epilog="""\b
Examples:
  opskit snapshot prune -l db --keep-last 7 --keep-daily 7 --keep-weekly 4 --dry-run
  opskit snapshot prune -l pg_primary --keep-hourly 24 --keep-daily 14 --cron
""")
@click.option("--keep-last", type=int, metavar="N", help="Keep the N newest complete sets. "
              "Example: --keep-last 7")
@click.option("--keep-hourly", type=int, metavar="N", help="Keep the newest set of each of "
              "the last N hours that have one. Example: --keep-hourly 24")
@click.option("--keep-daily", type=int, metavar="N", help="Same per day (UTC). Example: "
              "--keep-daily 7")
@click.option("--keep-weekly", type=int, metavar="N", help="Same per ISO week. Example: "
              "--keep-weekly 4")
@click.option("--keep-monthly", type=int, metavar="N", help="Same per month. Example: "
              "--keep-monthly 12")
@click.option("--mount", metavar="PATH", help="Only sets of this mount. Example: --mount /data")
@click.option("--cron", is_flag=True, help="For cron: no prompts, a lock, quiet on success. "
              "Example: --cron")
@mutating("snapshot prune", locked=True)
@shared_options
def prune(app: AppContext, change: Change, keep_last: int | None, keep_hourly: int | None,
          keep_daily: int | None, keep_weekly: int | None, keep_monthly: int | None,
          mount: str | None, cron: bool) -> int:
    """Delete old opskit snapshot sets by a keep policy, per host and mount.

    Only sets created by opskit are considered; the newest complete set of each host and
    mount is never deleted. --dry-run shows what would go.
    """
    env = app.env
    if cron:
        env.quiet_success = True
    policy = retention.KeepPolicy.parse({"last": keep_last, "hourly": keep_hourly,
                                         "daily": keep_daily, "weekly": keep_weekly,
                                         "monthly": keep_monthly})
    now = datetime.now(timezone.utc)
    with contextlib.ExitStack() as stack:
        if cron:
            stack.enter_context(lock.exclusive("snapshot"))
        selected = app.select()
        plans = [(aws_vars, retention.plan(found, policy, now))
                 for aws_vars, found in store.sets_by_account(selected, mount)]
        doomed = [s for _, p in plans for s in p.delete]
        doc = {"dry_run": change.dry_run, "plans": [p.to_dict() for _, p in plans]}
        if change.dry_run:
            return change.planned(doc, lambda: _print_prune(env, plans, "dry run: would delete"))
        if doomed:
            change.begin(f"Delete {len(doomed)} snapshot sets?", assume_yes=cron,
                         targets=sorted({s.host for s in doomed}),
                         plan={"policy": policy.to_dict(),
                               "delete": {s.set_id: s.snapshot_ids for s in doomed}})

            # The same lease as create's (host and mount): never prune under a running create.
            by_name = {h.name: h for h in selected}
            wanted = {(s.mount, s.host) for s in doomed}
            stack.enter_context(change.leases([
                (lease.scope("snapshot", m), [by_name[h]], f"snapshots of {h}:{m}")
                for m, h in sorted(wanted)]))

        def journal_one(s: SnapshotSet, snap: str, error: str | None) -> None:
            change.step(f"delete {snap} of {s.set_id}",
                        {s.host: {"status": "failed" if error else "ok", "exit_status": None,
                                  "error": error}},
                        details={"set_id": s.set_id, "snapshot_id": snap}, ok=error is None)

        out = store.delete_planned(plans, journal_one)
    code = EXIT_FAILED if out.failed else EXIT_OK
    change.record({}, exit_code=code, duration=0,
                  details={"policy": policy.to_dict(), "deleted": out.deleted,
                           "failed": out.failed})
    if out.failed:
        first = next(iter(out.failed.items()))
        raise StepError(f"deleted {len(out.deleted)} snapshot sets, {len(out.failed)} failed "
                        f"({first[0]}: {first[1]})",
                        hint=f"`opskit journal show {change.run_id}` lists each deletion; "
                             "run prune again once the cause is fixed")
    if cron and env.quiet_success:
        pass  # quiet on success, for cron
    elif env.json:
        env.emit_json(doc)
    else:
        _print_prune(env, plans, "deleted")
    return EXIT_OK


def _print_prune(env: Environment, plans: list, what: str) -> None:  # type: ignore[type-arg]
    rows = []
    for _, p in plans:
        rows += [(s.set_id, s.host, s.state, "keep", "; ".join(r)) for s, r in p.keep]
        rows += [(s.set_id, s.host, s.state, "DELETE", "") for s in p.delete]
        rows += [(s.set_id, s.host, s.state, "ignored", "not created by opskit")
                 for s in p.ignored]
    env.table(("set", "host", "state", "action", "why kept"), rows,
              styles=["bold red" if r[3] == "DELETE" else None for r in rows])
    n = sum(len(p.delete) for _, p in plans)
    env.line(f"{what} {n} sets ({sum(p.freed_gib for _, p in plans)} GiB of volumes)")
