"""Redis 7.0 on redis1-redis3, the lab's ``redis_servers`` group: three replication groups and
three Sentinels.

What ``opskit redis`` (status, promote, switchover, rejoin, backup) acts on in the lab; see
docs/lab.md, "The Redis groups". Only labs of 10 hosts or more have it (redis3 is host 10;
layout.CLUSTER_GROUPS), and redis4 and later never run Redis: big labs stay light.

* ``main`` (port 6379): redis1 the master, redis2 and redis3 its replicas; AUTH: a
  ``requirepass`` for the default user (also every node's ``masterauth``) and the ACL user
  ``opskit`` (its password in each host's /etc/opskit-lab/redis/opskit.pass, root's, 0600);
* ``tls`` (port 6380, TLS only): redis1 the master, redis2 its replica; client certificates
  required, replication over TLS too; the lab's CA signs one server certificate per host;
* ``watched`` (port 6381, plain): redis2 the master, redis3 its replica, watched by three
  Sentinels on redis1-3 port 26379 (quorum 2, master name ``watched``).

The passwords and the CA live in the state dir (redis_secrets.py). Each server runs as the
``redis`` OS user inside its host's namespace, bound to the host's address, daemonized, with
its config, pid file and log in the host's private /etc/opskit-lab/redis/ (the hosts share
/run and /var/log) and its RDB in /data/redis. Configs are written only when missing, so a
role persisted by ``CONFIG REWRITE`` (a promotion, or a Sentinel's failover) survives ``up``,
which only starts a stopped server as it is configured now and never forces roles back.
``reset_redis()`` puts the initial roles back from any state (for tests). The ports are
fixed: two labs with Redis on one machine clash.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import pwd
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from opskit.errors import LabError
from opskit.lab import layout, pg_service, procs, redis_secrets
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

PORT = 6379  # group main
TLS_PORT = 6380  # group tls
WATCHED_PORT = 6381  # group watched
SENTINEL_PORT = 26379
REDIS_ETC = f"{ETC}/redis"  # redis owns it: CONFIG REWRITE writes a temp file beside the config
CONF = f"{REDIS_ETC}/redis.conf"  # port 6379's; the others are redis-PORT.conf
PID_FILE = f"{REDIS_ETC}/redis.pid"
LOG_FILE = f"{REDIS_ETC}/redis.log"
DATA_DIR = "/data/redis"
ACL_USER = "opskit"
PASS_FILE = f"{REDIS_ETC}/opskit.pass"  # ACL_USER's password on each host: root's, 0600
TLS_DIR = f"{REDIS_ETC}/tls"
TLS_CA = f"{TLS_DIR}/ca.crt"
TLS_SERVER_CERT = f"{TLS_DIR}/server.crt"
TLS_SERVER_KEY = f"{TLS_DIR}/server.key"  # redis's: the server reads it
TLS_CLIENT_CERT = f"{TLS_DIR}/client.crt"
TLS_CLIENT_KEY = f"{TLS_DIR}/client.key"  # root's: redis-cli runs as the SSH login
SENTINEL_CONF = f"{REDIS_ETC}/sentinel.conf"  # redis's: Sentinel rewrites it
SENTINEL_PID = f"{REDIS_ETC}/sentinel.pid"
SENTINEL_LOG = f"{REDIS_ETC}/sentinel.log"
SENTINEL_MASTER = "watched"  # the group the Sentinels watch, by its name
SENTINEL_QUORUM = 2
DOWN_AFTER_MS = 1500  # short: a test sees a failover within seconds
FAILOVER_TIMEOUT_MS = 10000
MAX_LINK_DOWN_SECONDS = 60
MASTER_WAIT = 5.0  # seconds a starting replica (or Sentinel) waits for its master to run
PUBLISH = {"hosts": "app", "file": "/srv/redis-master.json", "reload": "true"}  # group main
# redis-cli gets group main's password from the host's file through its environment
# (sh's builtin read: never on an argv). $1 is the file, the rest the command.
_AUTH_SH = 'read -r REDISCLI_AUTH < "$1" && export REDISCLI_AUTH && shift && exec "$@"'

# Log lines of a server that gave up at start (after daemonizing: its exit code is lost).
_FATAL = ("Could not create server TCP listening socket", "Failed listening", "Fatal error",
          "FATAL", "Failed to configure TLS")  # fmt: skip


@dataclass(frozen=True)
class Group:
    """A replication group of the lab: one port on each of its nodes."""

    name: str
    port: int
    nodes: tuple[str, ...]  # the initial master first
    auth: bool = False  # requirepass + the ACL user
    tls: bool = False  # TLS only (port 0), client certificates required

    @property
    def master(self) -> str:
        return self.nodes[0]


GROUPS = (
    Group("main", PORT, NODE_NAMES, auth=True),
    Group("tls", TLS_PORT, NODE_NAMES[:2], tls=True),
    Group(SENTINEL_MASTER, WATCHED_PORT, NODE_NAMES[1:]),
)
SENTINEL_GROUP = GROUPS[2]
SENTINELS = NODE_NAMES  # one Sentinel on each node


def groups_of(name: str) -> list[Group]:
    """The groups with an instance on host ``name``, by port."""
    return [g for g in GROUPS if name in g.nodes]


def group_on(port: int) -> Group | None:
    return next((g for g in GROUPS if g.port == port), None)


def conf_path(port: int = PORT) -> str:
    return CONF if port == PORT else f"{REDIS_ETC}/redis-{port}.conf"


def pid_path(port: int = PORT) -> str:
    return PID_FILE if port == PORT else f"{REDIS_ETC}/redis-{port}.pid"


def log_path(port: int = PORT) -> str:
    return LOG_FILE if port == PORT else f"{REDIS_ETC}/redis-{port}.log"


def conf_text(host: LabHost, master: str | None, *, port: int = PORT,
              passwords: redis_secrets.Passwords | None = None) -> str:  # fmt: skip
    """The redis.conf of the host's instance on ``port``; ``master``: the address it
    replicates from (None: a master). Group main needs the ``passwords``."""
    group = group_on(port)
    if group is None:
        raise ValueError(f"no lab Redis group on port {port}")
    lines = [
        f"# redis.conf of {host.name}:{port} (group {group.name}), written by opskit lab "
        "(redis_service.py) when missing.",
        "# CONFIG REWRITE (opskit redis, a Sentinel) may rewrite it; `lab up` keeps it.",
        f"bind {host.address}",
        # TLS only: no plain port at all, so a client without TLS cannot talk to it.
        *(["port 0", f"tls-port {port}"] if group.tls else [f"port {port}"]),
        "protected-mode no",  # lab only: loopback addresses
        "daemonize yes",
        f"pidfile {pid_path(port)}",
        f"logfile {log_path(port)}",
        "loglevel notice",
        f"dir {DATA_DIR}",
        f"dbfilename {'dump.rdb' if port == PORT else f'dump-{port}.rdb'}",
        "save 900 1 300 10 60 10000",
        "appendonly no",
        # Disk-based full syncs: the diskless default waits repl-diskless-sync-delay (5 s).
        "repl-diskless-sync no",
        "replica-read-only yes",
        "replica-priority 100",
        # Replicas connect from 127.0.0.1: without this the master lists every replica as
        # 127.0.0.1:PORT (and FAILOVER, or a Sentinel, cannot reach them).
        f"replica-announce-ip {host.address}",
        "min-replicas-to-write 0",
        "enable-debug-command local",  # DEBUG SLEEP etc. for tests (loopback clients only)
    ]
    if group.auth:
        if passwords is None:
            raise ValueError(f"group {group.name} needs the lab's Redis passwords")
        lines += [
            f"requirepass {passwords.default}",
            # On every node, not only the replicas: a promoted or rejoined node replicates.
            f"masterauth {passwords.default}",
            f"user {ACL_USER} on >{passwords.opskit} ~* &* +@all",
        ]
    if group.tls:
        lines += [
            f"tls-cert-file {TLS_SERVER_CERT}",
            f"tls-key-file {TLS_SERVER_KEY}",
            f"tls-ca-cert-file {TLS_CA}",
            "tls-auth-clients yes",
            # A replica's link is TLS too; it shows the server certificate as its client one.
            "tls-replication yes",
        ]
    if master is not None:
        lines.append(f"replicaof {master} {port}")
    return "\n".join(lines) + "\n"


def sentinel_id(name: str) -> str:
    """A Sentinel's fixed run id (40 hex digits): every Sentinel's config names the others
    by it (known-sentinel), so they know each other at start rather than after hellos."""
    return hashlib.sha1(f"opskit-lab-sentinel:{name}".encode()).hexdigest()


def sentinel_conf_text(host: LabHost, master: str, replicas: list[str],
                       others: list[LabHost]) -> str:  # fmt: skip
    """The sentinel.conf of the host's Sentinel: it watches group watched (master ``master``,
    its ``replicas`` by address) beside the ``others`` Sentinels."""
    name = SENTINEL_MASTER
    lines = [
        f"# sentinel.conf of {host.name}, written by opskit lab (redis_service.py) when "
        "missing; Sentinel rewrites it.",
        f"bind {host.address}",
        f"port {SENTINEL_PORT}",
        "protected-mode no",  # lab only: loopback addresses
        "daemonize yes",
        f"pidfile {SENTINEL_PID}",
        f"logfile {SENTINEL_LOG}",
        f"dir {REDIS_ETC}",
        f"sentinel myid {sentinel_id(host.name)}",
        # Its links come from 127.0.0.1: announce the host's address in its hellos instead.
        f"sentinel announce-ip {host.address}",
        "sentinel resolve-hostnames no",
        f"sentinel monitor {name} {master} {WATCHED_PORT} {SENTINEL_QUORUM}",
        f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {name} 1",
        *(f"sentinel known-replica {name} {r} {WATCHED_PORT}" for r in replicas),
        *(f"sentinel known-sentinel {name} {o.address} {SENTINEL_PORT} {sentinel_id(o.name)}"
          for o in others),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def host_settings(name: str) -> dict[str, object]:
    """The ``redis:`` host var of node ``name`` (what `opskit redis` reads). Fresh dicts per
    host: dicts shared between hosts would come out as YAML anchors and aliases in lab.yml.

    Host level: group main's (its AUTH, its publish); the other groups' instances say
    ``auth: null`` and ``publish: null`` (an instance inherits what it does not set)."""
    instances: list[dict[str, object]] = []
    for group in groups_of(name):
        if group.name == "main":
            instances.append({"port": group.port})
            continue
        one: dict[str, object] = {"port": group.port, "group": group.name, "auth": None,
                                  "publish": None}  # fmt: skip
        if group.tls:
            one["tls"] = {"ca": TLS_CA, "cert": TLS_CLIENT_CERT, "key": TLS_CLIENT_KEY}
        if group.name == SENTINEL_MASTER:
            one["sentinel"] = {"master": SENTINEL_MASTER,
                               "hosts": [f"{s}:{SENTINEL_PORT}" for s in SENTINELS]}
        instances.append(one)
    return {
        "group": "main",
        "auth": {"user": ACL_USER, "password_file": PASS_FILE},
        "cli": CLI,
        "max_link_down_seconds": MAX_LINK_DOWN_SECONDS,
        "publish": dict(PUBLISH),
        "instances": instances,
    }


def replicates_from(host: LabHost, port: int = PORT) -> str | None:
    """The master address in the config of the host's instance on ``port`` now
    (``replicaof``), None for a master."""
    try:
        lines = on_our_side(host, conf_path(port)).read_text().splitlines()
    except OSError:
        return None
    for words in (line.split() for line in lines):
        if len(words) == 3 and words[0].lower() in ("replicaof", "slaveof"):
            return words[1].strip('"')
    return None


def sentinel_watches(host: LabHost) -> str | None:
    """The master address in the host's sentinel.conf now (``sentinel monitor``)."""
    try:
        lines = on_our_side(host, SENTINEL_CONF).read_text().splitlines()
    except OSError:
        return None
    for words in (line.split() for line in lines):
        if words[:3] == ["sentinel", "monitor", SENTINEL_MASTER] and len(words) >= 5:
            return words[3]
    return None


def server_pid(host: LabHost, port: int = PORT) -> int | None:
    """The running redis-server of the host's instance on ``port`` (pid file, verified)."""
    pid = procs.read_pid_file(on_our_side(host, pid_path(port)))
    return pid if ours(pid, host, SERVER_BIN) else None


def sentinel_pid(host: LabHost) -> int | None:
    """The host's running Sentinel (pid file, verified), else None."""
    pid = procs.read_pid_file(on_our_side(host, SENTINEL_PID))
    return pid if ours(pid, host, SERVER_BIN) else None


def cli(host: LabHost, *command: str, address: str | None = None, port: int = PORT) -> list[str]:
    """redis-cli against ``address:port`` (default: the host's own instance on 6379); run it
    in a host. Group main authenticates as ACL user opskit with the host's PASS_FILE (read
    by a shell into REDISCLI_AUTH, never on argv); group tls with the host's client
    certificate; group watched and the Sentinels need nothing."""
    group = group_on(port)
    tls = ["--tls", "--cacert", TLS_CA, "--cert", TLS_CLIENT_CERT, "--key", TLS_CLIENT_KEY]
    argv = ["timeout", "3", CLI, *(tls if group and group.tls else []),
            *(["--user", ACL_USER] if group and group.auth else []),
            "-h", address or host.address, "-p", str(port), *command]  # fmt: skip
    if group and group.auth:
        return ["sh", "-c", _AUTH_SH, "redis-cli", PASS_FILE, *argv]
    return argv


def machine_cli(host: LabHost, *command: str, port: int = PORT) -> list[str]:
    """redis-cli run on this machine (the network is shared) against the host's instance on
    ``port``: the TLS files from the host's dir on our side. Group main wants
    :func:`machine_env`'s environment (REDISCLI_AUTH)."""
    group = group_on(port)
    tls: list[str] = []
    if group and group.tls:
        tls = ["--tls", *(x for flag, path in (("--cacert", TLS_CA), ("--cert", TLS_CLIENT_CERT),
                                               ("--key", TLS_CLIENT_KEY))
                          for x in (flag, str(on_our_side(host, path))))]  # fmt: skip
    return [CLI, *tls, "-h", host.address, "-p", str(port), *command]


def machine_env(state_dir: pathlib.Path, port: int = PORT) -> dict[str, str]:
    """The environment for :func:`machine_cli` on ``port``: group main's default-user
    password in REDISCLI_AUTH (from the state dir), nothing more for the other groups (a
    server without a password answers AUTH with an error)."""
    group = group_on(port)
    if group and group.auth:
        return redis_secrets.auth_env(state_dir)
    return dict(os.environ)


def info(host: LabHost, ctx: LabContext, section: str = "replication",
         address: str | None = None, port: int = PORT) -> dict[str, str] | None:  # fmt: skip
    """``INFO section`` as a dict, or None if the server does not answer."""
    done = ctx.run(host, cli(host, "info", section, address=address, port=port))
    if done.returncode != 0 or ":" not in done.stdout:
        return None
    pairs = (line.strip().split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    return {key: value for key, value in pairs}


def sentinel_view(host: LabHost, ctx: LabContext) -> tuple[str | None, dict[str, str]]:
    """The host's Sentinel: the master address it names for group watched (GET-MASTER-
    ADDR-BY-NAME, as ADDR:PORT) and its SENTINEL MASTER fields ({} if it does not answer)."""
    addr = ctx.run(host, cli(host, "sentinel", "get-master-addr-by-name", SENTINEL_MASTER,
                             port=SENTINEL_PORT)).stdout.split()  # fmt: skip
    words = ctx.run(host, cli(host, "sentinel", "master", SENTINEL_MASTER,
                              port=SENTINEL_PORT)).stdout.splitlines()  # fmt: skip
    fields = dict(zip(words[0::2], words[1::2], strict=False))
    return (":".join(addr) if len(addr) == 2 else None), fields


def _write(host: LabHost, path: str, text: str, *, mode: int = 0o640,
           owner: str = OS_USER) -> None:  # fmt: skip
    """Write a file of the host's /etc/opskit-lab atomically (owner redis: CONFIG REWRITE)."""
    target = on_our_side(host, path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable before
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    user = pwd.getpwnam(owner)
    os.chown(tmp, user.pw_uid, user.pw_gid)
    os.chmod(tmp, mode)
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
        if shutil.which("openssl") is None:
            missing.append("openssl")
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            missing.append(f"the {OS_USER} OS user")
        if missing:
            raise LabError(f"the lab's redis hosts need {', '.join(missing)}",
                           hint="make apt-deps (redis-server, redis-tools, openssl)")  # fmt: skip
        redis_secrets.ensure(ctx.state_dir)  # the passwords and the CA, kept once made

    def inventory_vars(self, ctx: LabContext) -> InventoryVars:
        # Host vars: `redis` group vars would reach redis4 and later, which run no Redis.
        nodes = hosts_for(self, ctx.hosts)
        return InventoryVars(host_vars={h.name: {"redis": host_settings(h.name)} for h in nodes})

    def start(self, host: LabHost, ctx: LabContext) -> None:
        self._files(host, ctx)
        passwords = redis_secrets.passwords(ctx.state_dir)
        for group in groups_of(host.name):
            if not on_our_side(host, conf_path(group.port)).exists():
                master = self._current_master(group, ctx, via=host)
                master = None if master == host.address else master
                _write(host, conf_path(group.port),
                       conf_text(host, master, port=group.port, passwords=passwords))
                if master is None and group.name == "main":
                    publish(ctx, host, only_missing=True)
        if not on_our_side(host, SENTINEL_CONF).exists():
            _write(host, SENTINEL_CONF, self._sentinel_conf(host, ctx))
        # Masters first: replicas on other hosts wait for them.
        for group in sorted(groups_of(host.name),
                            key=lambda g: replicates_from(host, g.port) is not None):
            if server_pid(host, group.port) is not None:
                continue  # runs (a replica whose link is down, say): never start a second one
            self._await(host, replicates_from(host, group.port), group.port, ctx)
            launch(host, ctx, group.port)
        if sentinel_pid(host) is None:
            # After the master it watches: a Sentinel that finds it down starts counting.
            self._await(host, sentinel_watches(host), WATCHED_PORT, ctx)
            launch_sentinel(host, ctx)

    def _files(self, host: LabHost, ctx: LabContext) -> None:
        """The host's dirs, its copy of the opskit password and its TLS files (every start:
        they follow the state dir's)."""
        user = pwd.getpwnam(OS_USER)
        folder = on_our_side(host, REDIS_ETC)
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, user.pw_uid, user.pw_gid)
        os.chmod(folder, 0o750)  # configs hold the passwords: redis (and root) only
        pg_service.link_logs(ctx, host, self.name, REDIS_ETC)
        done = ctx.run(host, ["install", "-d", "-o", OS_USER, "-g", OS_USER, "-m", "0750",
                              DATA_DIR])  # fmt: skip
        if done.returncode != 0:
            raise LabError(f"mkdir {DATA_DIR} on {host.name} failed: {done.stderr.strip()}")
        opskit = redis_secrets.passwords(ctx.state_dir).opskit + "\n"
        pass_file = on_our_side(host, PASS_FILE)
        if not pass_file.exists() or pass_file.read_text() != opskit:
            _write(host, PASS_FILE, opskit, mode=0o600, owner="root")
        if any(g.tls for g in groups_of(host.name)):
            _tls_files(host, ctx.state_dir)

    def _await(self, host: LabHost, upstream: str | None, port: int, ctx: LabContext) -> None:
        """Wait (briefly) for the lab node at ``upstream:port`` to run: a replica that finds
        its master not listening yet retries only a second later (``up`` starts all at
        once), and a Sentinel would count it down."""
        master = next((h for h in hosts_for(self, ctx.hosts) if h.address == upstream), None)
        if master is None or master is host:
            return
        # Its pid file is written once it listens.
        try:
            wait.until(lambda: (server_pid(master, port) is not None, "no pid file"),
                       what=f"{master.name}:{port} to listen", timeout=MASTER_WAIT,
                       interval=0.02)  # fmt: skip
        except wait.WaitTimedOut:
            return  # start anyway: it links once its master is back

    def _current_master(self, group: Group, ctx: LabContext, via: LabHost) -> str:
        """The address of the group's master for a node without a config (asked from
        ``via``): a running master among its nodes (after a failover, not the first one),
        else its initial master."""
        nodes = [h for h in hosts_for(self, ctx.hosts) if h.name in group.nodes]
        for other in nodes:
            if other is via or server_pid(other, group.port) is None:
                continue
            found = info(via, ctx, address=other.address, port=group.port)
            if found and found.get("role") == "master":
                return other.address
        return next(h.address for h in nodes if h.name == group.master)

    def _sentinel_conf(self, host: LabHost, ctx: LabContext) -> str:
        group = SENTINEL_GROUP
        master = self._current_master(group, ctx, via=host)
        nodes = [h for h in hosts_for(self, ctx.hosts) if h.name in group.nodes]
        others = [h for h in hosts_for(self, ctx.hosts) if h.name in SENTINELS and h is not host]
        return sentinel_conf_text(host, master, [h.address for h in nodes
                                                 if h.address != master], others)  # fmt: skip

    def stop(self, host: LabHost, ctx: LabContext) -> None:
        stop_sentinel(host)  # first: no failover while the instances go
        for group in groups_of(host.name):
            stop_instance(host, ctx, group.port)

    def health(self, host: LabHost, ctx: LabContext) -> bool:
        """Every instance of the host answers (a replica also has its link to its master
        up), and so does its Sentinel."""
        for group in groups_of(host.name):
            if server_pid(host, group.port) is None:
                return False
            found = info(host, ctx, port=group.port)
            if found is None or not (found.get("role") == "master"
                                     or found.get("master_link_status") == "up"):
                return False
        if sentinel_pid(host) is None:
            return False
        return ctx.run(host, cli(host, "ping", port=SENTINEL_PORT)).stdout.strip() == "PONG"


def _tls_files(host: LabHost, state_dir: pathlib.Path) -> None:
    """The host's CA, client certificate and key (root's) and its own server certificate
    (its key redis's), all again when the lab's CA changed."""
    made = redis_secrets.tls_dir(state_dir)
    folder = on_our_side(host, TLS_DIR)
    folder.mkdir(mode=0o755, exist_ok=True)
    ca = (made / "ca.crt").read_text()
    current = folder / "ca.crt"
    if current.exists() and current.read_text() == ca and (folder / "server.key").exists():
        return
    for name, mode in (("client.crt", 0o644), ("client.key", 0o600)):
        _write(host, f"{TLS_DIR}/{name}", (made / name).read_text(), mode=mode, owner="root")
    redis_secrets.server_cert(state_dir, host.name, host.address, folder)
    user = pwd.getpwnam(OS_USER)
    os.chown(folder / "server.key", user.pw_uid, user.pw_gid)
    os.chmod(folder / "server.key", 0o600)
    os.chmod(folder / "server.crt", 0o644)
    _write(host, TLS_CA, ca, mode=0o644, owner="root")  # last: it marks the set complete


def launch(host: LabHost, ctx: LabContext, port: int = PORT) -> None:
    """Start the host's redis-server on ``port`` with its current config; wait until it
    answers PING. It daemonizes before it binds, so a port in use shows in its log only."""
    _launch(host, ctx, conf_path(port), log_path(port), port,
            lambda: server_pid(host, port) is not None)  # fmt: skip


def launch_sentinel(host: LabHost, ctx: LabContext) -> None:
    """Start the host's Sentinel (Debian's redis-server in sentinel mode)."""
    _launch(host, ctx, SENTINEL_CONF, SENTINEL_LOG, SENTINEL_PORT,
            lambda: sentinel_pid(host) is not None, "--sentinel")  # fmt: skip


def _launch(host: LabHost, ctx: LabContext, conf: str, log_file: str, port: int,
            running: Callable[[], bool], *extra: str) -> None:  # fmt: skip
    log = on_our_side(host, log_file)
    seen = log.stat().st_size if log.exists() else 0
    argv = ["runuser", "-u", OS_USER, "--", "env", "-C", "/", SERVER_BIN, conf, *extra]
    done = ctx.run(host, argv)
    if done.returncode != 0:
        raise _start_error(host, port, done.stderr.strip() or done.stdout.strip(), log)

    def probe() -> tuple[bool, str]:
        fatal = [line for line in _log_since(log, seen) if any(f in line for f in _FATAL)]
        if fatal:
            raise _start_error(host, port, " / ".join(fatal[-2:]), log)
        if not running():
            return False, "no pid file"
        return ctx.run(host, cli(host, "ping", port=port)).stdout.strip() == "PONG", "no PONG"

    try:
        wait.until(probe, what=f"redis on {host.name}:{port} to answer", timeout=5.0,
                   interval=0.05)  # fmt: skip
    except wait.WaitTimedOut:
        return  # the service layer's health wait reports it, with the log as the hint


def _start_error(host: LabHost, port: int, why: str, log: pathlib.Path) -> LabError:
    return LabError(f"redis-server on {host.name}:{port} did not start: {why}",
                    hint=f"another lab with Redis on {host.address}:{port}? (opskit lab down "
                    f"there); log: {log}")  # fmt: skip


def stop_instance(host: LabHost, ctx: LabContext, port: int = PORT) -> None:
    pid = server_pid(host, port)
    if pid is None:
        return
    # NOSAVE: no RDB on the way down; NOW: no waiting for lagging replicas.
    ctx.run(host, cli(host, "shutdown", "nosave", "now", port=port))
    try:
        wait.until(lambda: (not procs.alive(pid), "running"), what=f"redis {pid} to exit",
                   timeout=2.0, interval=0.02)
    except wait.WaitTimedOut:
        procs.terminate([pid], grace=1.0)


def stop_sentinel(host: LabHost) -> None:
    pid = sentinel_pid(host)
    if pid is not None:
        procs.terminate([pid], grace=2.0)  # SIGTERM: it saves its config and exits


def publish(ctx: LabContext, master: LabHost, *, only_missing: bool = False) -> None:
    """Write group main's master address where the apps read it (each app host's file)."""
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
    """Put the lab's Redis back to its initial state from any state: each group's first node
    its master, the others its replicas with their links up, no keys, the Sentinels agreeing
    on redis2:6381 (knowing each other and its replica), the apps' publish file pointing at
    redis1.

    Stops every Sentinel (first: no failover meanwhile) and server (SHUTDOWN NOSAVE NOW, or
    a kill), removes the RDBs, writes the initial configs (the Sentinels' afresh: their old
    view and epochs go), starts them as ``up`` does (masters, then replicas, then the
    Sentinels), and returns once every link is up and the Sentinels agree. The lab's hosts
    must be up (``up`` first if one was killed). Holds the lab's lock, as up/down do.
    """
    sd = resolve_state_dir(state_dir)
    with locked(sd):
        ctx = pg_service._lab_context(sd)  # the same view of the running lab
        nodes = hosts_for(REDIS, ctx.hosts)
        if [h.name for h in nodes] != list(NODE_NAMES):
            raise LabError(f"the lab in {sd} lacks Redis hosts ({', '.join(NODE_NAMES)})",
                           hint="opskit lab up --hosts 10")  # fmt: skip
        by_name = {h.name: h for h in nodes}
        passwords = redis_secrets.ensure(sd)
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            list(pool.map(stop_sentinel, nodes))
            list(pool.map(lambda h: _wipe(h, ctx), nodes))
            for group in GROUPS:
                master = by_name[group.master]
                for name in group.nodes:
                    host = by_name[name]
                    upstream = None if host is master else master.address
                    _write(host, conf_path(group.port),
                           conf_text(host, upstream, port=group.port, passwords=passwords))
            for host in nodes:
                _write(host, SENTINEL_CONF, REDIS._sentinel_conf(host, ctx))
            list(pool.map(lambda h: REDIS.start(h, ctx), nodes))
        publish(ctx, by_name[GROUPS[0].master])
        for group in GROUPS:
            replicas = [by_name[n] for n in group.nodes[1:]]
            _wait_linked(by_name[group.master], replicas, ctx, timeout, group.port)
        _wait_sentinels(nodes, by_name[SENTINEL_GROUP.master], ctx, timeout)


def _wipe(host: LabHost, ctx: LabContext) -> None:
    for group in groups_of(host.name):
        stop_instance(host, ctx, group.port)
    ctx.run(host, ["rm", "-rf", DATA_DIR])  # start() makes it again, empty


def _wait_linked(master: LabHost, replicas: list[LabHost], ctx: LabContext, timeout: float,
                 port: int = PORT) -> None:  # fmt: skip
    """Until the master lists every replica online and each one has its link up."""
    def probe() -> tuple[bool, object]:
        found = info(master, ctx, port=port) or {}
        online = [v for k, v in found.items() if k.startswith("slave") and "state=online" in v]
        linked = len(online) == len(replicas) and all(
            (info(r, ctx, port=port) or {}).get("master_link_status") == "up" for r in replicas
        )
        return found.get("role") == "master" and linked, found or "no answer"

    try:
        wait.until(probe, what=f"the replicas of {master.name}:{port}", timeout=timeout,
                   interval=0.05)  # fmt: skip
    except wait.WaitTimedOut as exc:
        raise LabError(f"the replicas of {master.name}:{port} are not all linked after "
                       f"{timeout:.0f} s: {exc.seen}",
                       hint=f"look at {on_our_side(master, log_path(port))}") from None  # fmt: skip


def _wait_sentinels(sentinels: list[LabHost], master: LabHost, ctx: LabContext,
                    timeout: float) -> None:  # fmt: skip
    """Until every Sentinel names ``master`` for group watched, sees it up (flags: master)
    and knows its replica and the other Sentinels."""
    want = f"{master.address}:{WATCHED_PORT}"
    replicas = str(len(SENTINEL_GROUP.nodes) - 1)
    others = str(len(sentinels) - 1)

    def probe() -> tuple[bool, object]:
        views = {h.name: sentinel_view(h, ctx) for h in sentinels}
        agreed = all(addr == want and f.get("flags") == "master"
                     and f.get("num-slaves") == replicas and f.get("num-other-sentinels") == others
                     for addr, f in views.values())  # fmt: skip
        return agreed, {n: (a, f.get("flags")) for n, (a, f) in views.items()}

    try:
        wait.until(probe, what="the Sentinels to agree", timeout=timeout, interval=0.05)
    except wait.WaitTimedOut as exc:
        raise LabError(f"the Sentinels do not agree on {want} after {timeout:.0f} s: "
                       f"{exc.seen}",
                       hint=f"look at {on_our_side(master, SENTINEL_LOG)}") from None  # fmt: skip
