"""PostgreSQL 15 + repmgr on the lab's two clusters (pgbouncer_service.py: PgBouncer in
front of them): ``main`` on db1-db3 (the ``postgres`` group, one central PgBouncer on lb1) and
``shard`` on shard1-shard2 (the ``shard`` group, a PgBouncer on each of its hosts, lb1 a
witness for its lease: 2 of 3 lock hosts without its primary).

What ``opskit pg`` (status, switchover, failover, rejoin) acts on in the lab; see docs/lab.md,
"The PostgreSQL clusters". Only labs of 9 hosts or more have ``main`` (layout.py
CLUSTER_GROUPS), only labs of 11 or more ``shard``, and db4 and later never run PostgreSQL: big
labs stay light.

The service ``postgres`` is registered after ``data-xfs``: the data directory is on the XFS
at /data of the db hosts, mounted before it starts and unmounted after it stops (the shard
hosts keep theirs on the plain private /data). The first node of each cluster (db1, shard1) is
initialised as its primary; the others are cloned from whichever node of their cluster is the
primary now (``repmgr standby clone``) and registered as its standbys. A node that already
has a data directory is only started, as whatever it is now: a failover may have made db2 the
primary, and ``up`` never turns db1 back into one. ``reset_cluster()`` rebuilds the initial
topology of both clusters from any state (for tests, ``opskit lab pg-reset``).

Everything runs as the ``postgres`` OS user inside the host's namespace. Per-host paths are
on the host's private dirs: the data directory on its /data; the unix socket, logs and
configs under its /etc/opskit-lab (the hosts share /run, so /run/postgresql would clash).
Ports are the standard 5432 and 6432: two labs with the cluster on one machine clash (the
second one's start fails, "could not bind" in its server log).
"""

from __future__ import annotations

import os
import pathlib
import pwd
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from opskit.errors import LabError
from opskit.lab import api, data_fs, layout, procs
from opskit.lab import hosts as hostmod
from opskit.lab.models import LabHost
from opskit.lab.services import InventoryVars, LabContext, hosts_for, register, registered
from opskit.lab.state import load_state, locked, resolve_state_dir
from opskit.runner import wait as waiting  # `wait` is a parameter name here

BINDIR = "/usr/lib/postgresql/15/bin"
OS_USER = "postgres"
GROUP = "postgres"  # layout.CLUSTER_GROUPS: db1-db3, in labs of 9 hosts or more
SHARD_GROUP = "shard"  # layout.FIRST_HOSTS: shard1-shard2 (hosts 11, 12)
NODE_NAMES = tuple(s.name for s in layout.plan(layout.MAX_HOSTS) if GROUP in s.groups)

PORT = 5432
DATA_DIR = "/data/pg/15/main"
ETC = "/etc/opskit-lab"
PG_ETC = f"{ETC}/pg"
SOCKET_DIR = f"{PG_ETC}/run"
LOG_DIR = f"{PG_ETC}/log"
SERVER_LOG = f"{LOG_DIR}/postgresql.log"
NODE_CONF = f"{PG_ETC}/node.conf"  # this host's listen address, port, socket dir
REPMGR_CONF = f"{ETC}/repmgr.conf"
REPMGR_LOG = f"{LOG_DIR}/repmgr.log"
APP_DB = "app"
APP_USER = "app"
REPMGR_USER = "repmgr"
MAX_LAG_BYTES = 16 * 1024 * 1024

BOUNCER_GROUP = "pgbouncer"  # layout.CLUSTER_GROUPS: lb1 (pgbouncer_service.py)


@dataclass(frozen=True)
class LabCluster:
    """One repmgr cluster of the lab and what its nodes' ``postgres:`` vars say of it."""

    name: str  # postgres.cluster
    group: str  # the lab group of its nodes
    bouncers: str  # postgres.pgbouncer: the group of its PgBouncer hosts
    witnesses: str | None  # postgres.witnesses: more lock hosts for its lease

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in layout.plan(layout.MAX_HOSTS) if self.group in s.groups)


# Both PgBouncer layouts: one central pool (lb1) for main, one on every node for shard.
MAIN = LabCluster("main", GROUP, BOUNCER_GROUP, None)
SHARD = LabCluster("shard", SHARD_GROUP, SHARD_GROUP, "lb1")
CLUSTERS = (MAIN, SHARD)


def cluster_of(host: LabHost) -> LabCluster:
    """The cluster ``host`` is a node of."""
    return next(c for c in CLUSTERS if c.group in host.groups)


def nodes_of(cluster: LabCluster, hosts: Sequence[LabHost]) -> list[LabHost]:
    return [h for h in hosts if cluster.group in h.groups]

PRIMARY_WAIT = 90.0  # seconds a new standby waits for a primary to clone from (cold up)

# Appended to the primary's postgresql.conf at initdb; clones copy it. Small, since three
# clusters share the machine with the rest of the lab and each /data is a 512 MiB XFS.
SERVER_SETTINGS = f"""
# --- opskit lab (opskit/lab/pg_service.py) ---
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
wal_log_hints = on                      # pg_rewind (repmgr node rejoin --force-rewind)
shared_preload_libraries = 'repmgr'
shared_buffers = 16MB
max_connections = 50
max_wal_size = 64MB
min_wal_size = 32MB
max_slot_wal_keep_size = 128MB          # a slot of a stopped standby must not fill /data
jit = off
wal_retrieve_retry_interval = 1s       # a standby reconnects 1 s after its upstream is back
log_line_prefix = '%m [%p] %q%u@%d '
# Per-host settings (listen address, port, socket dir), not copied by a clone:
include '{NODE_CONF}'
"""

HBA = """# Written by opskit lab (pg_service.py): trust on loopback, for the lab only.
local   all          all                  trust
local   replication  all                  trust
host    all          all    127.0.0.0/8   trust
host    replication  all    127.0.0.0/8   trust
"""


def as_postgres(*argv: str) -> list[str]:
    """``argv`` as the postgres OS user, from ``/`` (initdb and pg_ctl refuse a cwd they
    cannot read, e.g. root's home)."""
    return ["runuser", "-u", OS_USER, "--", "env", "-C", "/", *argv]


def pg_ctl(action: str, *extra: str) -> list[str]:
    """A pg_ctl command line on the data directory; ``-l``: the server never logs to the
    caller's stdout (an SSH session would stay open while the server runs)."""
    return [f"{BINDIR}/pg_ctl", "-D", DATA_DIR, "-l", SERVER_LOG, "-w", "-t", "60", *extra, action]


def _checked(
    ctx: LabContext, host: LabHost, argv: list[str], what: str
) -> subprocess.CompletedProcess[str]:
    done = ctx.run(host, argv)
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise LabError(f"{what} on {host.name} failed: {' / '.join(tail)}",
                       hint=f"look at {on_our_side(host, LOG_DIR)}")  # fmt: skip
    return done


def on_our_side(host: LabHost, path: str) -> pathlib.Path:
    """Where a path under the host's /etc/opskit-lab lives on our side (its bind source)."""
    assert path.startswith(f"{ETC}/")
    return host.state_dir / "etc" / path.removeprefix(f"{ETC}/")


def write(host: LabHost, path: str, text: str, *, owner: bool = False, mode: int = 0o644) -> None:
    """Write a file of the host's /etc/opskit-lab atomically (``owner``: postgres owns it)."""
    target = on_our_side(host, path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    if owner:
        user = pwd.getpwnam(OS_USER)
        os.chown(tmp, user.pw_uid, user.pw_gid)
    os.replace(tmp, target)


def _postgres_dirs(host: LabHost, *paths: str) -> None:
    user = pwd.getpwnam(OS_USER)
    for path in paths:
        target = on_our_side(host, path)
        target.mkdir(parents=True, exist_ok=True)
        os.chown(target, user.pw_uid, user.pw_gid)


def link_logs(ctx: LabContext, host: LabHost, service: str, path: str) -> None:
    """``services/<service>/log`` -> the logs under the host's /etc/opskit-lab, where the
    lab's "did not become healthy" hint points."""
    link = ctx.service_dir(host, service) / "log"
    if not link.is_symlink():
        link.symlink_to(on_our_side(host, path))


def _host_id(host: LabHost) -> str | None:
    try:
        return (host.state_dir / "etc" / procs.HOST_MARKER).read_text().strip() or None
    except OSError:
        return None


def ours(pid: int | None, host: LabHost, program: str) -> bool:
    """``pid`` is a live ``program`` inside this host (pid files may outlive their process,
    and pids are reused: never signal or trust one unchecked)."""
    host_id = _host_id(host)
    return bool(
        pid
        and host_id
        and procs.alive(pid)
        and program in procs.cmdline(pid)
        and procs.ns_is_host(pid, host_id)
    )


# ---------------------------------------------------------------- postgres


def node_id(host: LabHost) -> int:
    """repmgr's node id: unique within the node's cluster (each has its own metadata)."""
    return cluster_of(host).node_names.index(host.name) + 1


def conninfo(address: str) -> str:
    """repmgr's conninfo of the node at ``address`` (also what opskit pg builds)."""
    return f"host={address} port={PORT} user={REPMGR_USER} dbname={REPMGR_USER} connect_timeout=2"


def node_conf(host: LabHost) -> str:
    return (
        f"# {host.name}'s own settings (opskit lab; rewritten at each start by the lab)\n"
        f"listen_addresses = '{host.address}'\n"
        f"port = {PORT}\n"
        f"unix_socket_directories = '{SOCKET_DIR}'\n"
        f"cluster_name = '{host.name}'\n"  # in process titles: which host a backend is of
    )


def repmgr_conf(host: LabHost) -> str:
    def command(action: str, *extra: str) -> str:
        return shlex.join(pg_ctl(action, *extra))

    lines = [
        f"# repmgr.conf of {host.name} (written by opskit lab, pg_service.py)",
        f"node_id={node_id(host)}",
        f"node_name='{host.name}'",
        f"conninfo='{conninfo(host.address)}'",
        f"data_directory='{DATA_DIR}'",
        f"pg_bindir='{BINDIR}'",
        "use_replication_slots=yes",
        "failover=manual",
        "log_level=INFO",
        f"log_file='{REPMGR_LOG}'",  # repmgrd and --log-to-file only; the CLI logs to stderr
        f"service_start_command='{command('start')}'",
        f"service_stop_command='{command('stop', '-m', 'fast')}'",
        f"service_restart_command='{command('restart', '-m', 'fast')}'",
        f"service_promote_command='{command('promote')}'",
    ]
    return "\n".join(lines) + "\n"


def postmaster_pid(host: LabHost, ctx: LabContext) -> int | None:
    """The running postmaster of this host's data directory (verified), else None."""
    done = ctx.run(host, ["cat", f"{DATA_DIR}/postmaster.pid"])
    first = done.stdout.split("\n", 1)[0].strip() if done.returncode == 0 else ""
    pid = int(first) if first.isdigit() else None
    return pid if ours(pid, host, f"{BINDIR}/postgres") else None


def _psql(sql: str, conn: str) -> list[str]:
    return [f"{BINDIR}/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", conn,
            "-c", sql]  # fmt: skip


def _local(dbname: str = "postgres") -> str:
    """conninfo of this host's server over its unix socket, as the postgres role."""
    return f"host={SOCKET_DIR} port={PORT} user={OS_USER} dbname={dbname}"


# A node fit to clone from: the primary, registered as such in repmgr's metadata (so its
# repmgr user, database and extension exist: db1 may still be initialising).
_IS_PRIMARY = (
    "select not pg_is_in_recovery() and exists (select 1 from repmgr.nodes"
    " where type = 'primary' and active and node_name = current_setting('cluster_name'))"
)


def find_primary(
    host: LabHost, ctx: LabContext, candidates: Sequence[LabHost], *, wait: float = 0.0
) -> LabHost | None:
    """The first of ``candidates`` that is a registered, running primary (asked from
    ``host``); polls up to ``wait`` seconds."""
    def probe() -> tuple[bool, LabHost | None]:
        for other in candidates:
            argv = as_postgres("timeout", "10", *_psql(_IS_PRIMARY, conninfo(other.address)))
            done = ctx.run(host, argv)
            if done.returncode == 0 and done.stdout.strip() == "t":
                return True, other
        return False, None

    try:
        return waiting.until(probe, what="a running primary", timeout=wait, interval=0.3)
    except waiting.WaitTimedOut:
        return None


def node_vars(cluster: LabCluster) -> dict[str, object]:
    """The ``postgres:`` host vars of a node of ``cluster`` in lab.yml."""
    found: dict[str, object] = {
        "port": PORT,
        "bindir": BINDIR,
        "data_directory": DATA_DIR,
        "repmgr_conf": REPMGR_CONF,
        "os_user": OS_USER,
        "socket_dir": SOCKET_DIR,
        "app_user": APP_USER,
        "max_lag_bytes": MAX_LAG_BYTES,
        "pgbouncer": cluster.bouncers,
        "cluster": cluster.name,
    }
    if cluster.witnesses:
        found["witnesses"] = cluster.witnesses
    return found


class PostgresService:
    name = "postgres"
    roles = (GROUP, SHARD_GROUP)
    start_timeout = 60.0

    def prepare(self, ctx: LabContext) -> None:
        missing = [p for p in (f"{BINDIR}/postgres", f"{BINDIR}/repmgr", f"{BINDIR}/psql")
                   if not os.path.exists(p)]  # fmt: skip
        if missing or not shutil.which("runuser"):
            raise LabError(f"the lab's db hosts need {', '.join(missing) or 'runuser'}",
                           hint="make apt-deps (postgresql-15, postgresql-15-repmgr, "
                           "postgresql-client-15)")  # fmt: skip
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            raise LabError(f"no {OS_USER} OS user",
                           hint="apt-get install -y postgresql-15") from None  # fmt: skip

    def inventory_vars(self, ctx: LabContext) -> InventoryVars:
        # Host vars: `db` group vars would reach db4 and later, which run no PostgreSQL.
        return InventoryVars(host_vars={h.name: {"postgres": node_vars(cluster_of(h))}
                                        for h in hosts_for(self, ctx.hosts)})

    def start(self, host: LabHost, ctx: LabContext) -> None:
        _postgres_dirs(host, PG_ETC, SOCKET_DIR, LOG_DIR)
        link_logs(ctx, host, self.name, LOG_DIR)
        write(host, NODE_CONF, node_conf(host))
        write(host, REPMGR_CONF, repmgr_conf(host))
        _checked(ctx, host, ["install", "-d", "-o", OS_USER, "-g", OS_USER, "-m", "0700",
                             "/data/pg", os.path.dirname(DATA_DIR)], "mkdir /data/pg")  # fmt: skip
        if ctx.run(host, ["test", "-f", f"{DATA_DIR}/PG_VERSION"]).returncode == 0:
            self._start_existing(host, ctx)
            return
        cluster = cluster_of(host)
        others = [h for h in nodes_of(cluster, ctx.hosts) if h.name != host.name]
        first = host.name == cluster.node_names[0]
        # Cold start: db1 (shard1) becomes the primary, the others of its cluster wait for
        # it. A node that lost its data while another is the primary (after a failover)
        # rejoins that one as a standby.
        primary = find_primary(host, ctx, others, wait=0.0 if first else PRIMARY_WAIT)
        if primary is not None:
            clone_standby(host, primary, ctx)
        elif first:
            init_primary(host, ctx)
        else:
            raise LabError(f"no PostgreSQL primary to clone {host.name} from",
                           hint=f"is {cluster.node_names[0]} up? opskit lab status; "
                           "or rebuild: opskit lab pg-reset")  # fmt: skip

    def _start_existing(self, host: LabHost, ctx: LabContext) -> None:
        if postmaster_pid(host, ctx) is not None:
            return  # running (starting up, or not answering yet): never start a second one
        # Lock files of a postmaster that was killed (a killed host): postgres refuses to
        # start while the pid they name exists -- a zombie not reaped yet, or a reused pid.
        # No postmaster of this host runs (checked above), and these paths are its own.
        locks = [f"{DATA_DIR}/postmaster.pid", f"{SOCKET_DIR}/.s.PGSQL.{PORT}",
                 f"{SOCKET_DIR}/.s.PGSQL.{PORT}.lock"]  # fmt: skip
        ctx.run(host, ["rm", "-f", *locks])
        start_server(host, ctx)

    def stop(self, host: LabHost, ctx: LabContext) -> None:
        stop_node(host, ctx, mode="fast")

    def health(self, host: LabHost, ctx: LabContext) -> bool:
        """This host's own postmaster runs and accepts connections on the host's address
        (as a standby too). Own: another lab's server may answer on the same address."""
        if postmaster_pid(host, ctx) is None:
            return False
        argv = ["timeout", "5", f"{BINDIR}/pg_isready", "-q", "-t", "3", "-h", host.address,
                "-p", str(PORT), "-U", OS_USER, "-d", "postgres"]  # fmt: skip
        return ctx.run(host, argv).returncode == 0


def start_server(host: LabHost, ctx: LabContext) -> None:
    """pg_ctl start; on failure the server log's last lines say why (port in use ...)."""
    done = ctx.run(host, as_postgres(*pg_ctl("start")))
    if done.returncode == 0:
        return
    try:
        log = on_our_side(host, SERVER_LOG).read_text(errors="replace").splitlines()
    except OSError:
        log = []
    why = " / ".join(line for line in log[-3:] if line.strip()) or done.stderr.strip()
    raise LabError(f"PostgreSQL on {host.name} did not start: {why}",
                   hint=f"another lab with PostgreSQL on {host.address}:{PORT}? (opskit lab "
                   f"down there); log: {on_our_side(host, SERVER_LOG)}")  # fmt: skip


def stop_node(host: LabHost, ctx: LabContext, *, mode: str = "fast") -> None:
    """Stop the node's postmaster if it runs: pg_ctl (``mode``), then immediate, then kill."""
    pid = postmaster_pid(host, ctx)
    if pid is None:
        return
    # A frozen /data blocks the shutdown checkpoint (and every writer) until thawed.
    # "Invalid argument" (not frozen) is fine.
    ctx.run(host, ["fsfreeze", "-u", data_fs.MOUNT])
    argv = [f"{BINDIR}/pg_ctl", "-D", DATA_DIR, "-w", "-t", "20", "-m", mode, "stop"]
    if ctx.run(host, as_postgres(*argv)).returncode != 0 and mode != "immediate":
        argv[-2] = "immediate"
        ctx.run(host, as_postgres(*argv))
    if procs.alive(pid):
        procs.terminate([pid], grace=2.0)


def init_primary(host: LabHost, ctx: LabContext) -> None:
    """initdb, the lab's settings, start, roles and databases, ``repmgr primary register``."""
    _checked(ctx, host, as_postgres(f"{BINDIR}/initdb", "-D", DATA_DIR, "-A", "trust",
                                    "-U", OS_USER, "-E", "UTF8", "--locale=C", "--no-sync",
                                    "--no-instructions"), "initdb")  # fmt: skip
    # initdb's postgresql.conf plus ours; pg_hba replaced.
    _write_in_host(ctx, host, f"{DATA_DIR}/postgresql.conf", SERVER_SETTINGS, append=True)
    _write_in_host(ctx, host, f"{DATA_DIR}/pg_hba.conf", HBA)
    start_server(host, ctx)
    statements = [
        f"create role {REPMGR_USER} superuser login replication",
        f"create database {REPMGR_USER} owner {REPMGR_USER}",
        f"create role {APP_USER} login",
        f"create database {APP_DB} owner {APP_USER}",
    ]
    argv = [f"{BINDIR}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", _local()]
    for sql in statements:  # one -c each: CREATE DATABASE refuses a transaction block
        argv += ["-c", sql]
    _checked(ctx, host, as_postgres(*argv), "creating roles and databases")
    _checked(ctx, host, as_postgres(f"{BINDIR}/repmgr", "-f", REPMGR_CONF, "primary",
                                    "register", "-F"), "repmgr primary register")  # fmt: skip


def _write_in_host(
    ctx: LabContext, host: LabHost, path: str, text: str, *, append: bool = False
) -> None:
    """Write a file as postgres inside the host (/data is visible in its namespace only).

    ctx.run has no stdin: the (small) text goes as an argument.
    """
    script = f'printf %s "$1" {">>" if append else ">"} "$2"'
    _checked(ctx, host, as_postgres("sh", "-c", script, "sh", text, path), f"writing {path}")


def clone_standby(host: LabHost, primary: LabHost, ctx: LabContext) -> None:
    """``repmgr standby clone`` from ``primary``, start, ``repmgr standby register``."""
    clone = [f"{BINDIR}/repmgr", "-h", primary.address, "-p", str(PORT), "-U", REPMGR_USER,
             "-d", REPMGR_USER, "-f", REPMGR_CONF, "standby", "clone", "-F",
             "--fast-checkpoint"]  # fmt: skip
    _checked(ctx, host, as_postgres(*clone), f"repmgr standby clone from {primary.name}")
    start_server(host, ctx)
    _checked(ctx, host, as_postgres(f"{BINDIR}/repmgr", "-f", REPMGR_CONF, "standby",
                                    "register", "-F"), "repmgr standby register")  # fmt: skip


POSTGRES = register(PostgresService())


# ---------------------------------------------------------------- reset (tests)


def reset_cluster(state_dir: pathlib.Path | str | None = None, *, timeout: float = 30.0,
                  every: bool = False) -> None:
    """Put the lab's clusters back to their initial topology from any state: db1 the primary
    of main and shard1 of shard, the other nodes their streaming standbys, every PgBouncer
    pointing at its cluster's first node.

    Stops a cluster's nodes (immediate), wipes their data directories, initialises its first
    node and clones the others again (a few seconds; the clusters at once), restarts its
    PgBouncers with a fresh ini. ``main`` is always rebuilt; another cluster only when it is
    not at its start already (``at_start``), unless ``every`` (``opskit lab pg-reset``): the
    pg tests reset ``main`` some 25 times a run, and rebuilding an untouched ``shard`` beside
    it each time cost ~2 s of both cores. The lab's hosts must be up (``up`` first if one
    was killed). Holds the lab's lock, as up/down do.
    """
    sd = resolve_state_dir(state_dir)
    with locked(sd):
        ctx = _lab_context(sd)
        nodes = hosts_for(POSTGRES, ctx.hosts)
        if not any(h.name == NODE_NAMES[0] for h in nodes):
            raise LabError(f"the lab in {sd} has no PostgreSQL primary host {NODE_NAMES[0]}",
                           hint="opskit lab up --hosts 12")  # fmt: skip
        clusters = [(c, nodes_of(c, nodes)) for c in CLUSTERS if nodes_of(c, nodes)]
        clusters = [(c, members) for c, members in clusters
                    if every or c is MAIN or not at_start(c, members, ctx)]
        rebuilt = [h for _, members in clusters for h in members]
        firsts = [members[0] for _, members in clusters]
        rest = [h for _, members in clusters for h in members[1:]]
        with ThreadPoolExecutor(max_workers=len(rebuilt)) as pool:
            list(pool.map(lambda h: _wipe(h, ctx), rebuilt))
            # No other primary left: each first node initialises itself.
            list(pool.map(lambda h: POSTGRES.start(h, ctx), firsts))
            list(pool.map(lambda h: POSTGRES.start(h, ctx), rest))
            fronts = [h for h in ctx.hosts  # the rebuilt clusters' PgBouncer hosts
                      if any(c.bouncers in h.groups for c, _ in clusters)]
            for service in registered():
                reset = getattr(service, "reset", None)
                if service is not POSTGRES and reset is not None:
                    list(pool.map(lambda h, r=reset: r(h, ctx), hosts_for(service, fronts)))
            list(pool.map(lambda c: _wait_streaming(c[1][0], ctx, len(c[1]) - 1, timeout),
                          clusters))


# A node's role: in recovery (1/0) and the address it streams from ("" for none).
_ROLE = ("select pg_is_in_recovery()::int || '|' || coalesce((select sender_host from "
         "pg_stat_wal_receiver where status = 'streaming'), '')")


def at_start(cluster: LabCluster, members: Sequence[LabHost], ctx: LabContext) -> bool:
    """``cluster`` is as a reset leaves it: its first node a primary, every other node
    streaming from it, each of its PgBouncers sending ``app`` there, not paused."""
    from opskit.lab import pgbouncer_service  # it imports this module

    first = members[0]
    for host in members:
        done = ctx.run(host, as_postgres("timeout", "10", *_psql(_ROLE, _local())))
        want = "0|" if host is first else f"1|{first.address}"
        if done.returncode != 0 or done.stdout.strip() != want:
            return False
    for host in ctx.group(cluster.bouncers):
        done = ctx.run(host, pgbouncer_service.admin_argv(host, "SHOW DATABASES"))
        rows = [line.split("|") for line in done.stdout.splitlines()]
        app = next((r for r in rows if r[0] == APP_DB and len(r) > 11), None)
        if done.returncode != 0 or app is None or app[1] != first.address or app[11] != "0":
            return False
    return True


def _lab_context(sd: pathlib.Path) -> LabContext:
    state = load_state(sd)
    if state is None or not state.hosts:
        raise LabError(f"no lab in {sd}", hint="opskit lab up")
    hosts = [
        LabHost(name=r.name, address=r.address, port=r.port, hostname=r.name, pid=r.pid,
                groups=tuple(r.groups), state_dir=hostmod.host_dir(sd, r.name))
        for r in state.hosts.values()
    ]  # fmt: skip

    def runner(name: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return api.run_in_host(name, argv, state_dir=sd)

    return LabContext(state_dir=sd, port=state.port, hosts=hosts, runner=runner)


def _wipe(host: LabHost, ctx: LabContext) -> None:
    stop_node(host, ctx, mode="immediate")
    data = next(s for s in registered() if s.name == data_fs.NAME)
    # On a db host, never wipe the bind below its XFS: mount the XFS first (the shard
    # hosts have no XFS: their /data is the private bind itself).
    if hosts_for(data, [host]) and not data.health(host, ctx):
        data.start(host, ctx)
    ctx.run(host, ["rm", "-rf", DATA_DIR])


def _wait_streaming(primary: LabHost, ctx: LabContext, standbys: int, timeout: float) -> None:
    sql = "select count(*) from pg_stat_replication where state = 'streaming'"
    argv = as_postgres(*_psql(sql, _local()))
    def probe() -> tuple[bool, str]:
        done = ctx.run(primary, argv)
        return (done.returncode == 0 and done.stdout.strip() == str(standbys),
                done.stdout.strip() or done.stderr.strip())

    try:
        waiting.until(probe, what=f"{standbys} standbys of {primary.name} to stream",
                      timeout=timeout, interval=0.1)
    except waiting.WaitTimedOut as exc:
        raise LabError(f"{standbys} standbys of {primary.name} are not streaming after "
                       f"{timeout:.0f} s: {exc.seen}",
                       hint=f"look at {on_our_side(primary, LOG_DIR)}") from None  # fmt: skip
