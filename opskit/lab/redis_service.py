"""Redis 7.0 on redis1-redis3, the lab's ``redis_servers`` group: redis1 the master, redis2 and
redis3 its replicas.

What ``opskit redis`` (status, promote, switchover, rejoin, backup) acts on in the lab; see
docs/lab.md, "The Redis master and replicas". Only labs of 10 hosts or more have it (redis3 is
host 10; layout.CLUSTER_GROUPS), and redis4 and later never run Redis: big labs stay light.

Each server runs as the ``redis`` OS user (created by Debian's redis-server package) inside
its host's namespace, bound to the host's address on port 6379, daemonized, with its config,
pid file and log in the host's private /etc/opskit-lab/redis/ (the hosts share /run and
/var/log) and its RDB in /data/redis. The config is written only when missing, so a role
persisted by ``CONFIG REWRITE`` (a promotion) survives ``up``, which only starts a stopped
server as it is configured now and never forces roles back. ``reset_redis()`` puts the
initial roles back from any state (for tests). Port 6379 is fixed: two labs with Redis on one
machine clash.
"""

from __future__ import annotations

import json
import os
import pathlib
import pwd
from concurrent.futures import ThreadPoolExecutor

from opskit.errors import LabError
from opskit.lab import layout, pg_service, procs
from opskit.lab.models import LabHost
from opskit.lab.pg_service import ETC, on_our_side, ours
from opskit.lab.services import InventoryVars, LabContext, hosts_for, register
from opskit.lab.state import locked, resolve_state_dir
from opskit.runner import wait

SERVER_BIN = "/usr/bin/redis-server"
CLI = "/usr/bin/redis-cli"
OS_USER = "redis"
GROUP = "redis_servers"  # layout.CLUSTER_GROUPS: redis1-redis3, in labs of 10 hosts or more
NODE_NAMES = tuple(s.name for s in layout.plan(layout.MAX_HOSTS) if GROUP in s.groups)

PORT = 6379
REDIS_ETC = f"{ETC}/redis"  # redis owns it: CONFIG REWRITE writes a temp file beside the config
CONF = f"{REDIS_ETC}/redis.conf"
PID_FILE = f"{REDIS_ETC}/redis.pid"
LOG_FILE = f"{REDIS_ETC}/redis.log"
DATA_DIR = "/data/redis"
MAX_LINK_DOWN_SECONDS = 60
MASTER_WAIT = 5.0  # seconds a starting replica waits for its master (a lab node) to run
PUBLISH = {"hosts": "app", "file": "/srv/redis-master.json", "reload": "true"}

# Log lines of a server that gave up at start (after daemonizing: its exit code is lost).
_FATAL = ("Could not create server TCP listening socket", "Failed listening", "Fatal error",
          "FATAL")  # fmt: skip


def conf_text(host: LabHost, master: str | None) -> str:
    """The host's redis.conf; ``master``: the address it replicates from (None: a master)."""
    lines = [
        f"# redis.conf of {host.name}, written by opskit lab (redis_service.py) when missing.",
        "# CONFIG REWRITE (opskit redis promote/rejoin) may rewrite it; `lab up` keeps it.",
        f"bind {host.address}",
        f"port {PORT}",
        "protected-mode no",  # lab only: loopback addresses, no password
        "daemonize yes",
        f"pidfile {PID_FILE}",
        f"logfile {LOG_FILE}",
        "loglevel notice",
        f"dir {DATA_DIR}",
        "dbfilename dump.rdb",
        "save 900 1 300 10 60 10000",
        "appendonly no",
        # Disk-based full syncs: the diskless default waits repl-diskless-sync-delay (5 s).
        "repl-diskless-sync no",
        "replica-read-only yes",
        "replica-priority 100",
        # Replicas connect from 127.0.0.1: without this the master lists every replica as
        # 127.0.0.1:6379 (and FAILOVER cannot reach them).
        f"replica-announce-ip {host.address}",
        "min-replicas-to-write 0",
        "enable-debug-command local",  # DEBUG SLEEP etc. for tests (loopback clients only)
    ]
    if master is not None:
        lines.append(f"replicaof {master} {PORT}")
    return "\n".join(lines) + "\n"


def host_settings() -> dict[str, object]:
    """The ``redis:`` host var (what `opskit redis` reads). A fresh dict per host: dicts
    shared between hosts would come out as YAML anchors and aliases in lab.yml."""
    return {
        "port": PORT,
        "cli": CLI,
        "max_link_down_seconds": MAX_LINK_DOWN_SECONDS,
        "publish": dict(PUBLISH),
    }


def replicates_from(host: LabHost) -> str | None:
    """The master address in the host's config now (``replicaof``), None for a master."""
    try:
        lines = on_our_side(host, CONF).read_text().splitlines()
    except OSError:
        return None
    for words in (line.split() for line in lines):
        if len(words) == 3 and words[0].lower() in ("replicaof", "slaveof"):
            return words[1].strip('"')
    return None


def server_pid(host: LabHost) -> int | None:
    """The running redis-server of this host (pid file, verified), else None."""
    pid = procs.read_pid_file(on_our_side(host, PID_FILE))
    return pid if ours(pid, host, SERVER_BIN) else None


def cli(host: LabHost, *command: str, address: str | None = None) -> list[str]:
    """redis-cli against ``address`` (default: the host's own server); run it in a host."""
    return ["timeout", "3", CLI, "-h", address or host.address, "-p", str(PORT), *command]


def info(host: LabHost, ctx: LabContext, section: str = "replication",
         address: str | None = None) -> dict[str, str] | None:  # fmt: skip
    """``INFO section`` as a dict, or None if the server does not answer."""
    done = ctx.run(host, cli(host, "info", section, address=address))
    if done.returncode != 0 or ":" not in done.stdout:
        return None
    pairs = (line.strip().split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    return {key: value for key, value in pairs}


def _write(host: LabHost, path: str, text: str) -> None:
    """Write a file of the host's /etc/opskit-lab atomically, owned by redis."""
    target = on_our_side(host, path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    user = pwd.getpwnam(OS_USER)
    os.chmod(tmp, 0o640)
    os.chown(tmp, user.pw_uid, user.pw_gid)
    os.replace(tmp, target)


def _log_since(log: pathlib.Path, offset: int) -> list[str]:
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace").splitlines()
    except OSError:
        return []


class RedisService:
    name = "redis"
    roles = (GROUP,)
    start_timeout = 10.0  # a replica links within ~1 s of its master answering

    def prepare(self, ctx: LabContext) -> None:
        missing = [p for p in (SERVER_BIN, CLI) if not os.path.exists(p)]
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            missing.append(f"the {OS_USER} OS user")
        if missing:
            raise LabError(f"the lab's redis hosts need {', '.join(missing)}",
                           hint="make apt-deps (redis-server, redis-tools)")  # fmt: skip

    def inventory_vars(self, ctx: LabContext) -> InventoryVars:
        # Host vars: `redis` group vars would reach redis4 and later, which run no Redis.
        nodes = hosts_for(self, ctx.hosts)
        return InventoryVars(host_vars={h.name: {"redis": host_settings()} for h in nodes})

    def start(self, host: LabHost, ctx: LabContext) -> None:
        folder = on_our_side(host, REDIS_ETC)
        folder.mkdir(parents=True, exist_ok=True)
        user = pwd.getpwnam(OS_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
        os.chmod(folder, 0o750)
        pg_service.link_logs(ctx, host, self.name, REDIS_ETC)
        done = ctx.run(host, ["install", "-d", "-o", OS_USER, "-g", OS_USER, "-m", "0750",
                              DATA_DIR])  # fmt: skip
        if done.returncode != 0:
            raise LabError(f"mkdir {DATA_DIR} on {host.name} failed: {done.stderr.strip()}")
        if not on_our_side(host, CONF).exists():
            master = self._current_master(host, ctx)
            _write(host, CONF, conf_text(host, master))
            if master is None:
                publish(ctx, host, only_missing=True)
        if server_pid(host) is not None:
            return  # runs (a replica whose link is down, say): never start a second one
        self._await_master(host, ctx)
        launch(host, ctx)

    def _await_master(self, host: LabHost, ctx: LabContext) -> None:
        """A replica of a lab node waits (briefly) for that node to run: one that finds its
        master not listening yet retries only a second later (``up`` starts all at once)."""
        upstream = replicates_from(host)
        master = next((h for h in hosts_for(self, ctx.hosts) if h.address == upstream), None)
        if master is None:
            return
        # Its pid file is written once it listens.
        try:
            wait.until(lambda: (server_pid(master) is not None, "no pid file"),
                       what=f"{master.name} to listen", timeout=MASTER_WAIT, interval=0.02)
        except wait.WaitTimedOut:
            return  # start anyway: it links once its master is back

    def _current_master(self, host: LabHost, ctx: LabContext) -> str | None:
        """Whom a host without a config replicates from: a running master among the other
        nodes (after a failover, not redis1), else redis1; None for redis1 itself then."""
        first = next(h for h in ctx.hosts if h.name == NODE_NAMES[0])
        for other in hosts_for(self, ctx.hosts):
            found = None if other is host else info(host, ctx, address=other.address)
            if found and found.get("role") == "master" and server_pid(other) is not None:
                return other.address
        return None if host.name == first.name else first.address

    def stop(self, host: LabHost, ctx: LabContext) -> None:
        pid = server_pid(host)
        if pid is None:
            return
        # NOSAVE: no RDB on the way down; NOW: no waiting for lagging replicas.
        ctx.run(host, cli(host, "shutdown", "nosave", "now"))
        try:
            wait.until(lambda: (not procs.alive(pid), "running"), what=f"redis {pid} to exit",
                       timeout=2.0, interval=0.02)
        except wait.WaitTimedOut:
            procs.terminate([pid], grace=1.0)

    def health(self, host: LabHost, ctx: LabContext) -> bool:
        """This host's own server answers; a replica also has its link to its master up."""
        if server_pid(host) is None:
            return False
        found = info(host, ctx)
        if found is None:
            return False
        return found.get("role") == "master" or found.get("master_link_status") == "up"


def launch(host: LabHost, ctx: LabContext) -> None:
    """Start the host's redis-server with its current config; wait until it answers PING.

    It daemonizes before it binds, so a port in use shows up in its log only.
    """
    log = on_our_side(host, LOG_FILE)
    seen = log.stat().st_size if log.exists() else 0
    argv = ["runuser", "-u", OS_USER, "--", "env", "-C", "/", SERVER_BIN, CONF]
    done = ctx.run(host, argv)
    if done.returncode != 0:
        raise _start_error(host, done.stderr.strip() or done.stdout.strip(), log)
    def probe() -> tuple[bool, str]:
        fatal = [line for line in _log_since(log, seen) if any(f in line for f in _FATAL)]
        if fatal:
            raise _start_error(host, " / ".join(fatal[-2:]), log)
        if server_pid(host) is None:
            return False, "no pid file"
        return ctx.run(host, cli(host, "ping")).stdout.strip() == "PONG", "no PONG"

    try:
        wait.until(probe, what=f"redis on {host.name} to answer", timeout=5.0, interval=0.05)
    except wait.WaitTimedOut:
        return  # the service layer's health wait reports it, with the log as the hint


def _start_error(host: LabHost, why: str, log: pathlib.Path) -> LabError:
    return LabError(f"redis-server on {host.name} did not start: {why}",
                    hint=f"another lab with Redis on {host.address}:{PORT}? (opskit lab down "
                    f"there); log: {log}")  # fmt: skip


def publish(ctx: LabContext, master: LabHost, *, only_missing: bool = False) -> None:
    """Write the master's address where the apps read it (each app host's publish file)."""
    body = json.dumps({"host": master.address, "port": PORT, "name": f"{master.name}:{PORT}"})
    for app in ctx.group(PUBLISH["hosts"]):
        target = app.state_dir / "srv" / PUBLISH["file"].removeprefix("/srv/")
        if only_missing and target.exists():
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(body + "\n")
        os.replace(tmp, target)


REDIS = register(RedisService())


# ---------------------------------------------------------------- reset (tests)


def reset_redis(state_dir: pathlib.Path | str | None = None, *, timeout: float = 15.0) -> None:
    """Put the lab's Redis back to its initial state from any state: redis1 the master,
    redis2 and redis3 its replicas with their links up, no keys, the apps' publish file
    pointing at redis1.

    Stops every server (SHUTDOWN NOSAVE NOW, or a kill), removes its RDB, writes the initial
    configs, starts redis1 and then the replicas, and returns once both links are up (~0.2 s
    here). The lab's hosts must be up (``up`` first if one was killed). Holds the lab's
    lock, as up/down do.
    """
    sd = resolve_state_dir(state_dir)
    with locked(sd):
        ctx = pg_service._lab_context(sd)  # the same view of the running lab
        nodes = hosts_for(REDIS, ctx.hosts)
        if not nodes or nodes[0].name != NODE_NAMES[0]:
            raise LabError(f"the lab in {sd} has no Redis master host {NODE_NAMES[0]}",
                           hint="opskit lab up --hosts 10")  # fmt: skip
        master, replicas = nodes[0], nodes[1:]
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            list(pool.map(lambda h: _wipe(h, ctx), nodes))
            _write(master, CONF, conf_text(master, None))
            for replica in replicas:
                _write(replica, CONF, conf_text(replica, master.address))
            REDIS.start(master, ctx)
            list(pool.map(lambda h: REDIS.start(h, ctx), replicas))
        publish(ctx, master)
        _wait_linked(master, replicas, ctx, timeout)


def _wipe(host: LabHost, ctx: LabContext) -> None:
    REDIS.stop(host, ctx)
    ctx.run(host, ["rm", "-rf", DATA_DIR])  # start() makes it again, empty


def _wait_linked(
    master: LabHost, replicas: list[LabHost], ctx: LabContext, timeout: float
) -> None:
    """Until the master lists every replica online and each one has its link up."""
    def probe() -> tuple[bool, object]:
        found = info(master, ctx) or {}
        online = [v for k, v in found.items() if k.startswith("slave") and "state=online" in v]
        linked = len(online) == len(replicas) and all(
            (info(r, ctx) or {}).get("master_link_status") == "up" for r in replicas
        )
        return found.get("role") == "master" and linked, found or "no answer"

    try:
        wait.until(probe, what=f"the replicas of {master.name}", timeout=timeout, interval=0.05)
    except wait.WaitTimedOut as exc:
        raise LabError(f"the replicas of {master.name} are not all linked after "
                       f"{timeout:.0f} s: {exc.seen}",
                       hint=f"look at {on_our_side(master, LOG_FILE)}") from None  # fmt: skip
