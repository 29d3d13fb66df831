"""``opskit lab``: the local lab fleet (sshd hosts in namespaces on 127.10.0.N)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import click

from opskit import lab as lab_mod
from opskit.commands.mutating import Change, mutating
from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.errors import EXIT_OK, EXIT_UNREACHABLE
from opskit.output import Environment

STATE_HELP = "Lab state directory (default /var/lib/opskit-lab, env OPSKIT_LAB_DIR). "


@click.group(
    "lab",
    epilog="""\b
Examples:
  sudo opskit lab up --hosts 8
  opskit -i inventory/lab.yml exec --yes -- hostname
  sudo opskit lab status
  sudo opskit lab down
""",
)
def command() -> None:
    """A disposable local fleet: one sshd per host in its own mount + UTS namespace."""


def _state_dir(value: str | None) -> Path:
    return Path(value) if value else lab_mod.state_dir_from_env()


def _render(env: Environment, status: lab_mod.LabStatus) -> None:
    if env.json:
        env.emit_json(status.to_dict())
        return
    rows = [
        (h.name, f"{h.address}:{h.port}", h.hostname, h.pid or "-", ",".join(h.groups),
         "yes" if h.answering else "NO")
        for h in status.hosts
    ]
    env.table(("host", "address", "hostname", "pid", "groups", "answers"), rows,
              styles=[None if h.answering else "bold red" for h in status.hosts])
    env.line(f"state: {status.state_dir}   inventory: {status.inventory_path}")
    if status.inventory_path is not None:  # the same hosts, logged in as the sudo-ing ops user
        env.line(f"as ops (sudo): {lab_mod.ops_inventory_path(status.inventory_path)}")


@command.command("up", epilog="Example: sudo opskit lab up --hosts 8")
@click.option("--hosts", "n_hosts", type=click.IntRange(1, 250), default=lab_mod.DEFAULT_HOSTS,
              show_default=True,
              help="Number of lab hosts (127.10.0.1..N). Example: --hosts 8")
@click.option("--port", type=click.IntRange(1, 65535), default=2222, show_default=True,
              help="sshd port on every lab host. Example: --port 2222")
@click.option("--net", type=click.IntRange(lab_mod.NETS.start, lab_mod.NETS.stop - 1),
              default=None, metavar="N",
              help="Put the hosts on 127.N.0.1..: a second lab beside the first (give it its "
                   "own --port and --state-dir too). Default: the running lab's, else 10. "
                   "Example: --net 11")
@click.option("--state-dir", metavar="DIR", help=STATE_HELP + "Example: --state-dir /tmp/lab")
@click.option("--write-inventory", "inventory_path", default="inventory/lab.yml",
              show_default=True, metavar="PATH",
              help="Where to write the lab inventory. Example: --write-inventory /tmp/lab.yml")
@mutating("lab up")
@shared_options
def up(app: AppContext, change: Change, n_hosts: int, port: int, net: int | None,
       state_dir: str | None, inventory_path: str) -> int:
    """Start (or repair) the lab: idempotent, restarts hosts that died."""
    where = _state_dir(state_dir)
    span = f"127.{'N' if net is None else net}.0.1-{n_hosts}"
    if change.dry_run:
        return change.planned(
            {"dry_run": True, "hosts": n_hosts, "port": port, "net": net,
             "state_dir": str(where), "inventory_path": inventory_path},
            lambda: app.env.line(f"dry run: would start {n_hosts} lab hosts on {span} port "
                                 f"{port} (state {where}, inventory {inventory_path})"))
    change.begin(f"Start a {n_hosts}-host lab on {span}, port {port}?", targets=[],
                 plan={"hosts": n_hosts, "port": port, "net": net, "state_dir": str(where)})
    status = lab_mod.up(n_hosts, port=port, net=net, state_dir=where,
                        inventory_path=Path(inventory_path))
    change.record({h.name: {"status": "ok" if h.answering else "failed"} for h in status.hosts},
                  exit_code=0)
    _render(app.env, status)
    return 0


@command.command("status", epilog="Example: sudo opskit lab status --json")
@click.option("--state-dir", metavar="DIR", help=STATE_HELP + "Example: --state-dir /tmp/lab")
@shared_options
@pass_app
def status(app: AppContext, state_dir: str | None) -> int:
    """Show each lab host and whether its sshd answers (exit 3 if one does not)."""
    st = lab_mod.status(state_dir=_state_dir(state_dir))
    if not st.hosts and not app.env.json:
        app.env.line("no lab is running (start one with: opskit lab up)")
        return 0
    _render(app.env, st)
    return EXIT_OK if all(h.answering for h in st.hosts) else EXIT_UNREACHABLE


@command.command("down", epilog="Example: sudo opskit lab down")
@click.option("--state-dir", metavar="DIR", help=STATE_HELP + "Example: --state-dir /tmp/lab")
@mutating("lab down")
@shared_options
def down(app: AppContext, change: Change, state_dir: str | None) -> int:
    """Stop everything `lab up` started (by recorded pid) and drop the lab's mounts."""
    where = _state_dir(state_dir)
    if change.dry_run:
        return change.planned({"dry_run": True, "state_dir": str(where)}, lambda: app.env.line(
            f"dry run: would stop every process the lab in {where} started and unmount"))
    change.begin(f"Stop the lab in {where} (its hosts and their services)?", targets=[],
                 plan={"state_dir": str(where)})
    lines = lab_mod.down(state_dir=where)
    change.record({}, exit_code=0, details={"actions": lines})
    if app.env.json:
        app.env.emit_json({"stopped": lines})
    else:
        for line in lines:
            app.env.line(line)
    return 0


@command.command("pg-reset", epilog="Example: sudo opskit lab pg-reset")
@click.option("--state-dir", metavar="DIR", help=STATE_HELP + "Example: --state-dir /tmp/lab")
@mutating("lab pg-reset")
@shared_options
def pg_reset(app: AppContext, change: Change, state_dir: str | None) -> int:
    """Rebuild the lab's PostgreSQL clusters as they started: db1 primary, db2 and db3 its
    streaming standbys, PgBouncer on lb1 sending clients to db1; shard1 primary, shard2 its
    standby, both PgBouncers sending clients to shard1 (the lab's data is wiped)."""
    from opskit.lab import pg_service  # only this command needs it

    return _reset(change, lambda: pg_service.reset_cluster(_state_dir(state_dir), every=True),
                  "PostgreSQL clusters reset in {s:.1f}s: db1 primary, db2 and db3 streaming "
                  "from it, PgBouncer -> db1; shard1 primary, shard2 streaming, PgBouncers "
                  "-> shard1")


@command.command("redis-reset", epilog="Example: sudo opskit lab redis-reset")
@click.option("--state-dir", metavar="DIR", help=STATE_HELP + "Example: --state-dir /tmp/lab")
@mutating("lab redis-reset")
@shared_options
def redis_reset(app: AppContext, change: Change, state_dir: str | None) -> int:
    """Put the lab's Redis groups back as they started: main (redis1 the master, redis2 and
    redis3 its linked replicas, the apps' publish file pointing at redis1), tls (redis1 ->
    redis2) and watched (redis2 -> redis3, its three Sentinels agreeing); every key is
    dropped."""
    from opskit.lab import redis_service  # only this command needs it

    return _reset(change, lambda: redis_service.reset_redis(_state_dir(state_dir)),
                  "Redis reset in {s:.1f}s: main redis1 -> redis2, redis3; tls redis1 -> "
                  "redis2; watched redis2 -> redis3 (Sentinels agree); links up, no keys")


def _reset(change: Change, reset: Callable[[], None], said: str) -> int:
    """Run a lab service's reset, journal it, say what it left ({s}: seconds taken)."""
    env = change.app.env
    if change.dry_run:
        return change.planned({"dry_run": True, "reset": change.name},
                              lambda: env.line(f"dry run: would {change.name} (its data is "
                                               "wiped)"))
    change.begin(f"{change.name}: rebuild from scratch (the lab's data is wiped)?",
                 targets=[])
    t0 = time.monotonic()
    reset()
    change.record({}, exit_code=EXIT_OK)
    env.line(said.format(s=time.monotonic() - t0))
    return EXIT_OK


@command.command("cache-data", epilog="Example: sudo opskit lab cache-data")
@click.option("--state-dir", metavar="DIR", help=STATE_HELP + "Example: --state-dir /tmp/lab")
@mutating("lab cache-data")
@shared_options
def cache_data_cmd(app: AppContext, change: Change, state_dir: str | None) -> int:
    """The cache-warming data set: the same about 160 MiB of files under /data/cache on db2 and
    db3 (kept if there), both evicted, then a random subset of pages read on db2."""
    from opskit.lab import cache_data

    hosts = ", ".join(cache_data.HOSTS)
    if change.dry_run:
        return change.planned({"dry_run": True, "root": cache_data.ROOT, "hosts": hosts},
                              lambda: app.env.line(
                                  f"dry run: would write {cache_data.ROOT} on {hosts}, evict "
                                  f"both, warm {cache_data.HOSTS[0]}"))
    change.begin(f"Write {cache_data.ROOT} on {hosts} and evict their page caches?",
                 targets=list(cache_data.HOSTS), plan={"root": cache_data.ROOT})
    status = lab_mod.status(state_dir=_state_dir(state_dir))
    done = cache_data.prepare(Path(status.inventory_path))
    made, warmed = done["made"], done["warmed"]
    change.record({}, exit_code=0, details=done)
    app.env.line(f"{cache_data.ROOT} on {', '.join(cache_data.HOSTS)}: "
                 + ", ".join(f"{h} {v['created']} files written, {v['kept']} kept"
                             for h, v in made.items())
                 + f"; both evicted; {warmed['read_pages']} random pages read on "
                   f"{cache_data.HOSTS[0]}")
    return EXIT_OK
