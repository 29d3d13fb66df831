"""PgBouncer 1.18 in front of the ``app`` database of each lab cluster, in both layouts: one
central pool on the first lb host (group ``pgbouncer``) for ``main``, and one on every node of
``shard`` (shard1, shard2: each in front of its own cluster, as production's shards have).

Runs as postgres in the host's namespace, on the host's address only (no unix socket: the
hosts share /run and /tmp), with its ini, user list, pid file and log in the host's private
``/etc/opskit-lab/pgbouncer/``. ``[databases] app`` points at the first node of the host's
cluster (db1, shard1) when the ini is written; ``up`` writes it only when it is missing, so a
re-pointing done by ``opskit pg`` (a failover) survives a later ``up``; ``reset()`` (reset_cluster)
writes it afresh. Transaction pooling, so a re-pointed RELOAD takes effect at the next
transaction and PAUSE/RESUME do not wait for clients to disconnect (psycopg clients need
``prepare_threshold=None``: 1.18 has no prepared statements in this mode).
"""

from __future__ import annotations

import os
import pathlib
import pwd

from opskit.errors import LabError
from opskit.lab import layout, pg_service, procs
from opskit.lab.models import LabHost
from opskit.lab.pg_service import (
    APP_DB,
    APP_USER,
    BINDIR,
    CLUSTERS,
    ETC,
    OS_USER,
    PORT,
    REPMGR_USER,
    LabCluster,
    as_postgres,
)
from opskit.lab.services import InventoryVars, LabContext, register
from opskit.runner import wait

PGBOUNCER_BIN = "/usr/sbin/pgbouncer"
BOUNCER_PORT = 6432
BOUNCER_DIR = f"{ETC}/pgbouncer"
BOUNCER_INI = f"{BOUNCER_DIR}/pgbouncer.ini"
BOUNCER_USERS = f"{BOUNCER_DIR}/userlist.txt"
BOUNCER_PID = f"{BOUNCER_DIR}/pgbouncer.pid"
BOUNCER_LOG = f"{BOUNCER_DIR}/pgbouncer.log"
BOUNCER_ADMIN = "pgbouncer"


def ini_text(host: LabHost, db_address: str) -> str:
    return f"""\
;; PgBouncer of the opskit lab on {host.name} (opskit/lab/pgbouncer_service.py).
;; `opskit pg` re-points [databases] on a failover; `opskit lab up` keeps this file.
[databases]
{APP_DB} = host={db_address} port={PORT} dbname={APP_DB}

[pgbouncer]
listen_addr = {host.address}
listen_port = {BOUNCER_PORT}
unix_socket_dir =
auth_type = trust
auth_file = {BOUNCER_USERS}
admin_users = {BOUNCER_ADMIN}
stats_users = {BOUNCER_ADMIN}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
server_login_retry = 1
server_connect_timeout = 5
ignore_startup_parameters = extra_float_digits,options
logfile = {BOUNCER_LOG}
pidfile = {BOUNCER_PID}
"""


# auth_type trust still wants every user listed in auth_file (with any password).
USERLIST = "".join(f'"{user}" ""\n' for user in (BOUNCER_ADMIN, APP_USER, REPMGR_USER))


def bouncer_pid(host: LabHost) -> int | None:
    """The running PgBouncer of this host (pid file, verified), else None."""
    pid = procs.read_pid_file(pg_service.on_our_side(host, BOUNCER_PID))
    return pid if pg_service.ours(pid, host, PGBOUNCER_BIN) else None


def _fatal(log: pathlib.Path, offset: int) -> str | None:
    """The last FATAL line PgBouncer logged after ``offset`` (bytes), if any."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    fatal = [line for line in lines if " FATAL " in line or " WARNING cannot listen" in line]
    return " / ".join(fatal[-2:]) or None


def _start_error(host: LabHost, why: str, log: pathlib.Path) -> LabError:
    return LabError(f"pgbouncer on {host.name} did not start: {why}",
                    hint=f"another lab with PgBouncer on {host.address}:{BOUNCER_PORT}? "
                    f"(opskit lab down there); log: {log}")  # fmt: skip


class PgBouncerService:
    name = "pgbouncer"
    roles = tuple(dict.fromkeys(c.bouncers for c in CLUSTERS))  # pgbouncer, shard
    start_timeout = 15.0

    def prepare(self, ctx: LabContext) -> None:
        if not os.path.exists(PGBOUNCER_BIN):
            raise LabError(f"the lab's PgBouncer host needs {PGBOUNCER_BIN}",
                           hint="make apt-deps (apt-get install -y pgbouncer)")  # fmt: skip

    def inventory_vars(self, ctx: LabContext) -> InventoryVars:
        settings = {
            "ini": BOUNCER_INI,
            "port": BOUNCER_PORT,
            "admin_user": BOUNCER_ADMIN,
            "os_user": OS_USER,
            "databases": [APP_DB],
        }
        # Group vars of each layout's group that has hosts in this lab.
        present = {g for h in ctx.hosts for g in h.groups}
        return InventoryVars(group_vars={g: {"pgbouncer": dict(settings)} for g in self.roles
                                         if g in present})

    def start(self, host: LabHost, ctx: LabContext) -> None:
        self._write_files(host, ctx, ini=not pg_service.on_our_side(host, BOUNCER_INI).exists())
        if bouncer_pid(host) is not None:
            return  # runs (not answering yet?): never start a second one
        # pgbouncer refuses to start while its pid file names a live process (pids are
        # reused after a host was killed).
        pg_service.on_our_side(host, BOUNCER_PID).unlink(missing_ok=True)
        log = pg_service.on_our_side(host, BOUNCER_LOG)
        seen = log.stat().st_size if log.exists() else 0
        done = ctx.run(host, as_postgres(PGBOUNCER_BIN, "-d", "-q", BOUNCER_INI))
        if done.returncode != 0:
            raise _start_error(host, done.stderr.strip(), log)
        # -d returns before the daemon binds: a port in use shows up in its log only.
        def probe() -> tuple[bool, str]:
            fatal = _fatal(log, seen)
            if fatal is not None:
                raise _start_error(host, fatal, log)
            return self.health(host, ctx), "not answering"

        try:
            wait.until(probe, what=f"PgBouncer on {host.name} to answer", timeout=5.0,
                       interval=0.1)
        except wait.WaitTimedOut:
            return  # the service layer's health wait reports it, with the log as the hint

    def _write_files(self, host: LabHost, ctx: LabContext, *, ini: bool) -> None:
        folder = pg_service.on_our_side(host, BOUNCER_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        pg_service.link_logs(ctx, host, self.name, BOUNCER_DIR)
        user = pwd.getpwnam(OS_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
        pg_service.write(host, BOUNCER_USERS, USERLIST, owner=True, mode=0o640)
        if ini:
            cluster = bouncer_cluster(host)
            first = next((h for h in ctx.hosts if h.name == cluster.node_names[0]), None)
            spec = next(s for s in layout.plan(layout.MAX_HOSTS)
                        if s.name == cluster.node_names[0])
            address = first.address if first else spec.address
            pg_service.write(host, BOUNCER_INI, ini_text(host, address), owner=True,
                             mode=0o640)  # fmt: skip

    def stop(self, host: LabHost, ctx: LabContext) -> None:
        pid = bouncer_pid(host)
        if pid is not None:
            procs.terminate([pid], grace=5.0)  # SIGTERM: PgBouncer's immediate shutdown

    def health(self, host: LabHost, ctx: LabContext) -> bool:
        """This host's own PgBouncer runs and its admin console answers on the address."""
        if bouncer_pid(host) is None:
            return False
        return ctx.run(host, admin_argv(host, "SHOW VERSION")).returncode == 0

    def reset(self, host: LabHost, ctx: LabContext) -> None:
        """Back to the initial state: stopped, ini pointing at its cluster's first node
        again (db1, shard1), started."""
        self.stop(host, ctx)
        self._write_files(host, ctx, ini=True)
        self.start(host, ctx)


def admin_argv(host: LabHost, command: str) -> list[str]:
    """psql on the host's PgBouncer admin console, unaligned (``|``), tuples only."""
    return ["env", "PGCONNECT_TIMEOUT=3", "timeout", "5", f"{BINDIR}/psql", "-X", "-A", "-t",
            "-q", "-h", host.address, "-p", str(BOUNCER_PORT), "-U", BOUNCER_ADMIN,
            "-d", "pgbouncer", "-c", command]  # fmt: skip


def bouncer_cluster(host: LabHost) -> LabCluster:
    """The cluster whose primary the PgBouncer on ``host`` follows."""
    return next(c for c in CLUSTERS if c.bouncers in host.groups)


PGBOUNCER = register(PgBouncerService())
