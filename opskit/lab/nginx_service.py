"""Debian's nginx on every lb host: the seed's load-balancing tier in front of the app hosts.

Each lb host runs one nginx (master as root, workers as www-data) in its namespace, listening
on its own address only, on the lab's nginx port (``http_port``: the app port + 80, so labs
on one net stay apart). Everything is in the host's private ``/etc/opskit-lab/nginx/``: the
config, the pid file, the error log and the temp dirs; nothing under the machine's /etc/nginx
or /var/log/nginx is read or written.

The upstream ``app`` lists every app host of the lab on the app port, in its own include
file (``upstream-app.conf``): the file that is rewritten to take an app host out of rotation.
``up`` writes it only when it is missing, as PgBouncer's ini, so a change made through opskit
survives a later ``up``.

``/nginx_status`` is stub_status (active connections), ``/lb-health`` answers 200 from nginx
itself (what the ELB's health check asks), everything else is proxied to ``app``.
"""

from __future__ import annotations

import os
import pathlib

from opskit.errors import LabError
from opskit.lab import app_service, net, pg_service, procs
from opskit.lab.models import LabHost
from opskit.lab.pg_service import ETC
from opskit.lab.services import InventoryVars, LabContext, register
from opskit.runner import wait

NGINX_BIN = "/usr/sbin/nginx"
NGINX_DIR = f"{ETC}/nginx"
NGINX_CONF = f"{NGINX_DIR}/nginx.conf"
UPSTREAM_FILE = f"{NGINX_DIR}/upstream-app.conf"
NGINX_PID = f"{NGINX_DIR}/nginx.pid"
NGINX_LOG = f"{NGINX_DIR}/error.log"
# The *_temp_path directives: each one's dir under tmp/, named after it.
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
STATUS_PATH = "/nginx_status"
HEALTH_PATH = "/lb-health"


def http_port(lab_port: int) -> int:
    """nginx's port: 8080 for the default lab (2222), 8180 for the first test lab (2322)."""
    return app_service.http_port(lab_port) + 80


def conf_text(host: LabHost, port: int) -> str:
    temp = "\n".join(f"    {kind}_temp_path {NGINX_DIR}/tmp/{kind};" for kind in TEMP_DIRS)
    return f"""\
# nginx of the opskit lab on {host.name} (opskit/lab/nginx_service.py).
user www-data;
worker_processes 1;
pid {NGINX_PID};
error_log {NGINX_LOG} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    upstream app {{
        include {UPSTREAM_FILE};
        keepalive 16;
    }}
    server {{
        listen {host.address}:{port};
        location = {STATUS_PATH} {{ stub_status; allow 127.0.0.0/8; deny all; }}
        location = {HEALTH_PATH} {{ access_log off; return 200 "ok\\n"; }}
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""


def upstream_text(app_hosts: list[LabHost], app_port: int) -> str:
    # An upstream needs one server: without app hosts, a placeholder that is always down.
    servers = [f"server {h.address}:{app_port} max_fails=1 fail_timeout=2s;"
               for h in app_hosts] or ["server 127.0.0.1:9 down;  # no app hosts in this lab"]
    return "# The app hosts behind this nginx (opskit/lab/nginx_service.py).\n" + \
        "".join(line + "\n" for line in servers)


def nginx_pid(host: LabHost) -> int | None:
    """The running nginx master of this host (pid file, verified), else None."""
    pid = procs.read_pid_file(pg_service.on_our_side(host, NGINX_PID))
    return pid if pg_service.ours(pid, host, "nginx: master process") else None


class NginxService:
    name = "nginx"
    roles = ("lb",)
    start_timeout = 10.0

    def prepare(self, ctx: LabContext) -> None:
        if not os.path.exists(NGINX_BIN):
            raise LabError(f"the lab's lb hosts need {NGINX_BIN}",
                           hint="make apt-deps (apt-get install -y nginx)")

    def inventory_vars(self, ctx: LabContext) -> InventoryVars:
        """``nginx:`` per lb host (its status URL is on its own address)."""
        port = http_port(ctx.port)
        return InventoryVars(host_vars={h.name: {"nginx": {
            "upstream_file": UPSTREAM_FILE, "conf": NGINX_CONF, "binary": NGINX_BIN,
            "pid_file": NGINX_PID, "status_url": f"http://{h.address}:{port}{STATUS_PATH}",
        }} for h in ctx.group("lb")})

    def start(self, host: LabHost, ctx: LabContext) -> None:
        self._write_files(host, ctx, upstream=not self.upstream_path(host).exists())
        if nginx_pid(host) is not None:
            return  # runs already: never a second master on the address
        pg_service.on_our_side(host, NGINX_PID).unlink(missing_ok=True)
        # -e: the error log before the config is read (Debian's default is stderr).
        done = ctx.run(host, [NGINX_BIN, "-c", NGINX_CONF, "-e", NGINX_LOG])
        if done.returncode != 0:
            raise LabError(f"nginx on {host.name} did not start: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}",
                           hint=f"another lab with nginx on {host.address}:"
                           f"{http_port(ctx.port)}? (opskit lab down there); log: "
                           f"{pg_service.on_our_side(host, NGINX_LOG)}")
        try:  # the master writes its pid file after it forked: wait for it, briefly
            wait.until(lambda: (nginx_pid(host) is not None, "no pid file yet"),
                       what=f"nginx on {host.name} to start", timeout=5.0, interval=0.05)
        except wait.WaitTimedOut:
            return  # the service layer's health wait reports it

    def stop(self, host: LabHost, ctx: LabContext) -> None:
        pid = nginx_pid(host)
        if pid is not None:
            procs.terminate([pid], grace=5.0)  # SIGTERM: fast shutdown, workers with it

    def health(self, host: LabHost, ctx: LabContext) -> bool:
        """This host's nginx runs and answers its own health URL on the address."""
        if nginx_pid(host) is None:
            return False
        return net.http_status(f"http://{host.address}:{http_port(ctx.port)}{HEALTH_PATH}") == 200

    @staticmethod
    def upstream_path(host: LabHost) -> pathlib.Path:
        return pg_service.on_our_side(host, UPSTREAM_FILE)

    def _write_files(self, host: LabHost, ctx: LabContext, *, upstream: bool) -> None:
        # nginx makes the temp dirs below it itself, owned by its worker user.
        pg_service.on_our_side(host, f"{NGINX_DIR}/tmp").mkdir(parents=True, exist_ok=True)
        pg_service.link_logs(ctx, host, self.name, NGINX_DIR)
        pg_service.write(host, NGINX_CONF, conf_text(host, http_port(ctx.port)))
        if upstream:
            pg_service.write(host, UPSTREAM_FILE,
                             upstream_text(ctx.group("app"), app_service.http_port(ctx.port)))


NGINX = register(NginxService())
