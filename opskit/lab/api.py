"""up / status / down of the lab fleet, and the two helpers tests and services use.

The ``opskit lab`` CLI command is a thin wrapper over these functions.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from opskit.errors import LabError
from opskit.lab import (
    accounts,
    aws_resources,
    data_fs,
    ebs_fixture,
    inventory_file,
    keys,
    layout,
    moto_server,
    procs,
    services,
)
from opskit.lab import hosts as hostmod
from opskit.lab.models import AwsStatus, LabHost, LabStatus
from opskit.lab.state import (
    AwsServerRecord,
    HostRecord,
    LabState,
    load_state,
    locked,
    remove_state,
    resolve_state_dir,
    save_state,
)

DEFAULT_INVENTORY = pathlib.Path("inventory/lab.yml")
_CONFIG_IN_CMDLINE = re.compile(r" -f (\S+/sshd_config)(?: |$)")


# ---------------------------------------------------------------- public API


def up(
    hosts: int = layout.DEFAULT_HOSTS,
    *,
    port: int = 2222,
    net: int | None = None,
    state_dir: pathlib.Path | None = None,
    inventory_path: pathlib.Path = DEFAULT_INVENTORY,
) -> LabStatus:
    """Bring the lab to ``hosts`` running hosts; idempotent. Returns once every sshd answers.

    ``net``: the hosts' addresses are 127.NET.0.i (default: the running lab's, else 10)."""
    _require_root()
    if not 1 <= port <= 65535:
        raise LabError(f"invalid port {port}", hint="use a port between 1 and 65535, e.g. 2222")
    sd = _checked_state_dir(state_dir)
    hostmod.check_tools()
    inventory = pathlib.Path(inventory_path).absolute()
    with locked(sd):
        old = load_state(sd)
        if old and old.hosts and net is not None and net != old.net:
            # Every service is bound to the old addresses: moving them is a new lab.
            raise LabError(f"the lab in {sd} runs on 127.{old.net}.0.x, not 127.{net}.0.x",
                           hint=f"opskit lab down --state-dir {sd} first, or drop --net")
        if net is None:
            net = old.net if old else layout.DEFAULT_NET
        try:
            specs = layout.plan(hosts, net)
        except ValueError as exc:
            raise LabError(str(exc), hint="e.g. opskit lab up --hosts 10 --net 10") from exc
        _up_locked(sd, specs, port, net, inventory)
    return status(state_dir=sd)


def status(*, state_dir: pathlib.Path | None = None) -> LabStatus:
    """What runs now: per host its sshd pid, whether it answers, its services' health."""
    sd = resolve_state_dir(state_dir)
    state = load_state(sd)
    if state is None:
        return LabStatus(state_dir=sd, inventory_path=None, port=None, hosts=[])
    recs = list(state.hosts.values())
    with ThreadPoolExecutor(max_workers=min(32, len(recs) or 1)) as pool:
        answers = list(pool.map(lambda r: hostmod.answering(r.address, r.port), recs))
    lab_hosts = [_lab_host(sd, rec, ok) for rec, ok in zip(recs, answers, strict=True)]
    if services.registered():
        ctx = _context(sd, state.port, recs, lab_hosts)
        for host in lab_hosts:
            host.services = services.health_of(host, ctx)
            host.apps = services.apps_of(host, ctx)
    inventory = pathlib.Path(state.inventory_path) if state.inventory_path else None
    return LabStatus(
        state_dir=sd,
        inventory_path=inventory,
        port=state.port,
        hosts=lab_hosts,
        aws=_aws_status(sd, state),
    )


def _aws_status(sd: pathlib.Path, state: LabState) -> AwsStatus | None:
    rec = state.aws
    if rec is None:
        return None
    pid = rec.pid if moto_server.is_lab_server(rec.pid, sd, rec.port) else None
    answering = pid is not None and moto_server.answering(rec.port)
    return AwsStatus(moto_server.endpoint_url(rec.port), pid, answering)


def down(*, state_dir: pathlib.Path | None = None) -> list[str]:
    """Stop everything ``up`` started in this state dir; one line per thing done.

    Keys, the client key and known_hosts are kept (see docs/lab.md); host dirs are removed.
    """
    _require_root()
    sd = resolve_state_dir(state_dir)
    if not sd.is_dir():
        return [f"no lab in {sd}"]
    with locked(sd):
        return _down_locked(sd)


def host_pid(name: str, *, state_dir: pathlib.Path | None = None) -> int | None:
    """The sshd pid of lab host ``name``, or None if it is not running."""
    sd = resolve_state_dir(state_dir)
    rec = _record(sd, name)
    return rec.pid if procs.is_lab_sshd(rec.pid, hostmod.config_path(sd, name)) else None


def run_in_host(
    name: str,
    argv: list[str],
    *,
    state_dir: pathlib.Path | None = None,
    input: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in host ``name``'s mount + UTS namespace; output captured as text.

    Uses the sshd's namespace, or (sshd dead) that of any process left in the host.
    Detached children must not inherit stdout/stderr, or this waits for them.
    """
    _require_root()
    sd = resolve_state_dir(state_dir)
    return _nsenter(sd, _record(sd, name), argv, input=input, timeout=timeout)


# ---------------------------------------------------------------- up


def _up_locked(
    sd: pathlib.Path, specs: Sequence[layout.HostSpec], port: int, net: int,
    inventory: pathlib.Path,
) -> None:
    hostmod.prepare_system()
    # Loop devices of a killed session that nothing mounts any more (mounted ones are kept).
    data_fs.detach_unmounted(sd)
    old = load_state(sd) or LabState(port=port)
    live = _scan_sshds(sd)
    wanted = {s.name for s in specs}
    extra = [r for r in _known_records(sd, old, live) if r.name not in wanted]
    if extra:  # shrinking: stop the hosts beyond the new count
        _, stuck = _teardown(sd, old.port, extra, live)
        if stuck:
            raise _stuck_error(stuck)
        data_fs.detach_unmounted(sd, wait=2.0)  # the removed db hosts' XFS loop devices
    keys.ensure_keys(sd, [s.name for s in specs])
    keys.write_authorized_keys(sd)
    keys.write_known_hosts(sd, [(s.name, s.address, port) for s in specs])
    aws = moto_server.ensure_started(sd, moto_server.aws_port(port), old.aws)
    state = LabState(port=port, inventory_path=str(inventory), aws=aws, net=net)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # AWS comes up beside the hosts: the server's cold start, boto3's import and the
        # first EC2 call (moto loads its EC2 models) take seconds, the sshds a fraction.
        aws_job = pool.submit(_provision_aws, sd, aws, specs)
        launched = []
        table = procs.ns_table()  # who lives in which namespace, for hosts whose sshd died
        for spec in specs:
            rec = _merge_record(old.hosts.get(spec.name), spec, port, sd)
            state.hosts[rec.name] = rec
            if _ensure_running(sd, rec, live, table):
                launched.append(rec)
        save_state(sd, state)  # before waiting: a failed wait must still let `down` find them
        hostmod.wait_ready(sd, launched, timeout=15 + 0.1 * len(launched))
        save_state(sd, state)
        recs = list(state.hosts.values())
        ctx = _context(sd, port, recs, [_lab_host(sd, r, True) for r in recs])
        services.prepare_all(ctx)
        ctx.aws = aws_job.result()
    _write_fixtures(sd, ctx.aws)
    save_state(sd, state)  # now with the moto server's pid
    lab_vars = _lab_vars(ctx)
    inventory_file.write(inventory, specs, port=port, state_dir=sd, extra=lab_vars)
    for user in (accounts.OPS_USER, accounts.DEV_USER):
        inventory_file.write(inventory_file.user_path(inventory, user), specs, port=port,
                             state_dir=sd, extra=lab_vars, user=user)
    services.start_all(ctx)


def _provision_aws(
    sd: pathlib.Path, rec: AwsServerRecord, specs: Sequence[layout.HostSpec]
) -> aws_resources.AwsLab:
    """Wait for the lab's moto server (filling in rec.pid), then create what the lab needs."""
    moto_server.wait_ready(sd, rec)
    return aws_resources.provision(moto_server.endpoint_url(rec.port), sd, specs)


def _lab_vars(ctx: services.LabContext) -> services.InventoryVars:
    """lab.yml vars beyond connections: each host's ``aws:``, the db hosts' ``snapshot:``
    (their data volumes, member order, and the fixture tree to discover them in), then
    the services' vars."""
    assert ctx.aws is not None
    aws = ctx.aws
    found = services.InventoryVars(host_vars={n: {"aws": aws.host_aws(n)} for n in aws.instances})
    for name, volumes in aws.data_volumes.items():
        found.host_vars[name]["snapshot"] = {
            "mount": ebs_fixture.MOUNT,
            "discovery_root": ebs_fixture.DISCOVERY_ROOT,
            "volumes": list(volumes),
        }
    return found.add(services.inventory_vars(ctx))


def _write_fixtures(sd: pathlib.Path, aws: aws_resources.AwsLab) -> None:
    """Each db host's md/NVMe tree, naming this server's volume ids (new after a restart)."""
    for name, volumes in aws.data_volumes.items():
        ebs_fixture.write(sd, name, volumes, aws.boot_volumes.get(name))


def _merge_record(
    old: HostRecord | None, spec: layout.HostSpec, port: int, sd: pathlib.Path
) -> HostRecord:
    host_id = old.host_id if old else _marker_id(sd, spec.name) or uuid.uuid4().hex
    rec = HostRecord(spec.name, spec.index, spec.address, port, list(spec.groups), host_id)
    if old:
        rec.pid, rec.mnt_ns, rec.started_at = old.pid, old.mnt_ns, old.started_at
    return rec


def _ensure_running(
    sd: pathlib.Path, rec: HostRecord, live: dict[str, int], table: dict[int, list[int]]
) -> bool:
    """Keep a healthy sshd; (re)launch a dead or outdated one. True if launched."""
    cfg = hostmod.config_path(sd, rec.name)
    changed = hostmod.prepare_host(sd, rec)
    pid = rec.pid if procs.is_lab_sshd(rec.pid, cfg) else live.get(str(cfg))
    if pid and not changed:
        rec.pid, rec.mnt_ns = pid, procs.mnt_ns(pid)
        return False
    if pid:  # config changed (e.g. another port): restart it in its namespace
        rec.mnt_ns = procs.mnt_ns(pid)
        procs.terminate([pid])
    # Dead sshd but the namespace still holds processes (services, sessions): rejoin it.
    members = procs.host_members(rec.mnt_ns, rec.host_id, table)
    hostmod.launch(sd, rec, join_pid=members[0] if members else None)
    rec.pid = rec.mnt_ns = rec.started_at = None
    return True


# ---------------------------------------------------------------- down


def _down_locked(sd: pathlib.Path) -> list[str]:
    state = load_state(sd)
    live = _scan_sshds(sd)
    servers = moto_server.find(sd, state.aws if state else None)
    if state is None and not live and not servers:
        return [f"no lab in {sd}"]
    port = state.port if state else 0
    recs = _known_records(sd, state or LabState(port=port), live)
    lines, stuck = _teardown(sd, port, recs, live)
    aws_lines, aws_left = moto_server.stop(sd, servers)
    lines += aws_lines
    if aws_left:
        stuck["moto server"] = aws_left
    lines += _unmount_leftovers(sd, [r.name for r in recs])
    lines += data_fs.release(sd)  # the XFS loop devices: gone with their last mount
    if stuck:
        if state:  # keep only what is still running so a second `down` retries it
            state.hosts = {n: r for n, r in state.hosts.items() if n in stuck}
            if not aws_left:
                state.aws = None
            save_state(sd, state)
        raise _stuck_error(stuck)
    if remove_state(sd):
        lines.append(f"removed {sd / 'state.json'}")
    with contextlib.suppress(OSError):  # only when empty
        (sd / "hosts").rmdir()
    return lines


def _teardown(
    sd: pathlib.Path, port: int, recs: Sequence[HostRecord], live: dict[str, int]
) -> tuple[list[str], dict[str, list[int]]]:
    """Stop services, sshd and every process in each host's namespace; remove host dirs.

    Returns (lines, {host: pids that would not die}).
    """
    lab_hosts = [_lab_host(sd, r, False) for r in recs]
    ctx = _context(sd, port, list(recs), lab_hosts)
    reachable = [h for h, r in zip(lab_hosts, recs, strict=True) if _enter_pid(sd, r)]
    lines = services.stop_all(ctx, reachable)
    table = procs.ns_table()  # after the services stopped: one /proc scan for all hosts
    targets = {rec.name: _host_processes(sd, rec, live, table) for rec in recs}
    # Signal every host at once: one shared grace period, however many hosts.
    left = set(procs.terminate([p for sshd, others in targets.values() for p in (*sshd, *others)]))
    stuck: dict[str, list[int]] = {}
    for rec in recs:
        sshd, others = targets[rec.name]
        lines += [f"stopped sshd of {rec.name} (pid {pid})" for pid in sshd]
        if others:
            lines.append(f"stopped {len(others)} other process(es) in {rec.name}'s namespace")
        if left & {*sshd, *others}:
            stuck[rec.name] = sorted(left & {*sshd, *others})
            continue
        hdir = hostmod.host_dir(sd, rec.name)
        if hdir.exists():
            shutil.rmtree(hdir, ignore_errors=True)
            lines.append(f"removed {hdir}")
    return lines, stuck


def _host_processes(
    sd: pathlib.Path, rec: HostRecord, live: dict[str, int], table: dict[int, list[int]]
) -> tuple[list[int], list[int]]:
    """([its sshd], [every other process in its namespace]) of one host."""
    cfg = hostmod.config_path(sd, rec.name)
    sshd = rec.pid if procs.is_lab_sshd(rec.pid, cfg) else live.get(str(cfg))
    inodes = {rec.mnt_ns, procs.mnt_ns(sshd)} - {None}
    others = {p for ino in inodes for p in procs.host_members(ino, rec.host_id, table)}
    others.discard(sshd)
    return ([sshd] if sshd else []), sorted(others)


def _stuck_error(stuck: dict[str, list[int]]) -> LabError:
    where = "; ".join(f"{name}: pids {' '.join(map(str, pids))}" for name, pids in stuck.items())
    return LabError(
        f"lab processes would not die ({where})",
        hint="a writer stuck on a frozen filesystem? run `fsfreeze -u /data` in that host, "
        "then `opskit lab down` again",
    )


def _unmount_leftovers(sd: pathlib.Path, names: Sequence[str]) -> list[str]:
    """Mounts are private to each host's namespace; this only catches the unexpected."""
    lines = []
    for point in reversed(lab_mounts(sd, names)):
        done = subprocess.run(["umount", "-l", point], capture_output=True, text=True)
        ok = done.returncode == 0
        lines.append(f"unmounted {point}" if ok else f"could not unmount {point}: {done.stderr}")
    return lines


def lab_mounts(sd: pathlib.Path, names: Sequence[str] = ()) -> list[str]:
    """Mount points in *our* mount namespace that belong to the lab in ``sd``
    (including a mount of one of its loop devices, e.g. a db host's XFS)."""
    sources = {f"/hosts/{n}/{sub}" for n in names for sub, _ in hostmod.MOUNTS}
    points = {point for _, point in hostmod.MOUNTS}
    loops = {data_fs.dev_number(loop) for loop in data_fs.lab_loops(sd)} - {None}
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            root, point = _unescape(fields[3]), _unescape(fields[4])
            under_sd = point == str(sd) or point.startswith(f"{sd}/")
            ours = point in points and any(root.endswith(s) for s in sources)
            if under_sd or ours or fields[2] in loops:
                found.append(point)
    return found


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


# ---------------------------------------------------------------- helpers


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root (it creates namespaces, bind mounts and sshd processes)",
            hint="run as root (sudo), e.g. sudo opskit lab up",
        )


def _checked_state_dir(state_dir: pathlib.Path | None) -> pathlib.Path:
    sd = resolve_state_dir(state_dir)
    # The path goes into sshd_config lines and is matched in /proc cmdlines split on spaces.
    if any(ch.isspace() for ch in str(sd)):
        raise LabError(
            f"lab state dir has whitespace: {sd}",
            hint="set OPSKIT_LAB_DIR to a path without spaces",
        )
    return sd


def _record(sd: pathlib.Path, name: str) -> HostRecord:
    state = load_state(sd)
    if state is None or name not in state.hosts:
        known = ", ".join(state.hosts) if state else "none"
        raise LabError(f"no lab host {name} in {sd} (hosts: {known})", hint="opskit lab up")
    return state.hosts[name]


def _scan_sshds(sd: pathlib.Path) -> dict[str, int]:
    """sshd listeners of this state dir, found by their ``-f <sd>/hosts/X/sshd_config``.

    Catches sshds whose pid is not (or wrongly) recorded: state.json lost, crash mid-up.
    """
    prefix = f"{sd}/hosts/"
    found = {}
    for pid in procs.pids():
        match = _CONFIG_IN_CMDLINE.search(procs.cmdline(pid))
        if match and match.group(1).startswith(prefix) and procs.is_lab_sshd(pid, match[1]):
            found[match.group(1)] = pid
    return found


def _known_records(sd: pathlib.Path, state: LabState, live: dict[str, int]) -> list[HostRecord]:
    """The recorded hosts plus any live sshd of this state dir that the record lacks."""
    recs = dict(state.hosts)
    for cfg, pid in live.items():
        name = pathlib.Path(cfg).parent.name
        if name not in recs:
            host_id = _marker_id(sd, name) or ""
            recs[name] = HostRecord(name, 0, "", 0, [], host_id, pid, procs.mnt_ns(pid))
    return list(recs.values())


def _marker_id(sd: pathlib.Path, name: str) -> str | None:
    path = hostmod.host_dir(sd, name) / "etc" / procs.HOST_MARKER
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _lab_host(sd: pathlib.Path, rec: HostRecord, answering: bool) -> LabHost:
    cfg = hostmod.config_path(sd, rec.name)
    return LabHost(
        name=rec.name,
        address=rec.address,
        port=rec.port,
        hostname=rec.name,
        pid=rec.pid if procs.is_lab_sshd(rec.pid, cfg) else None,
        groups=tuple(rec.groups),
        state_dir=hostmod.host_dir(sd, rec.name),
        answering=answering,
    )


def _enter_pid(sd: pathlib.Path, rec: HostRecord) -> int | None:
    """A live process inside the host's namespace: its sshd, else any verified member."""
    if procs.is_lab_sshd(rec.pid, hostmod.config_path(sd, rec.name)):
        return rec.pid
    members = procs.host_members(rec.mnt_ns, rec.host_id)
    return members[0] if members else None


def _nsenter(
    sd: pathlib.Path,
    rec: HostRecord,
    argv: list[str],
    *,
    input: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    pid = _enter_pid(sd, rec)
    if pid is None:
        raise LabError(f"lab host {rec.name} is not running", hint="opskit lab up")
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "-u", "--", *argv],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def _context(
    sd: pathlib.Path, port: int, recs: Sequence[HostRecord], lab_hosts: list[LabHost]
) -> services.LabContext:
    by_name = {r.name: r for r in recs}
    return services.LabContext(
        state_dir=sd,
        port=port,
        hosts=lab_hosts,
        runner=lambda name, argv: _nsenter(sd, by_name[name], argv),
    )
