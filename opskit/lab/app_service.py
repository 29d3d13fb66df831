"""The ``app`` hosts' service: gunicorn serving the sample app, started by the deploy.

Like ``systemctl start app`` on a production host, the *deploy* starts gunicorn (the
inventory's ``deploy.start``) when no master runs; before the first deploy there is no
release to serve. So this service only prepares the host at ``up`` (``start`` makes the
shared dirs), never waits for it (``wait_healthy = False``: its health is reported in
``LabHost.apps``, where false just means "not deployed yet"), and ``stop`` (at ``down``)
stops the master named by the pid file. It also builds the sample repo and contributes the
``deploy:`` group vars of ``app`` to lab.yml.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import shlex
import sys
from typing import Any

from opskit.errors import LabError
from opskit.lab import net, procs, sample_repo
from opskit.lab.models import LabHost
from opskit.lab.services import InventoryVars, LabContext, register

ROOT = "/srv/sample"
CURRENT = f"{ROOT}/current"
SHARED = f"{ROOT}/shared"
PID_FILE = f"{SHARED}/pids/gunicorn.pid"
HTTP_PORT = 8000  # for the default lab (sshd port 2222); see http_port()
TARGET_GROUP = "lab-app"  # created by aws_resources for the app hosts


def gunicorn_binary() -> pathlib.Path:
    """gunicorn of the venv opskit runs in; hosts see it (only /srv, /data, /etc/opskit-lab
    are private to a host)."""
    return pathlib.Path(sys.executable).parent / "gunicorn"


def _has_control_socket() -> bool:
    # gunicorn >= 25.1 opens a control socket at ~/.gunicorn/gunicorn.ctl by default: every
    # lab host shares root's home, so masters would fight over one socket. Turn it off there.
    try:
        major, minor = (int(x) for x in importlib.metadata.version("gunicorn").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (25, 1)


def http_port(lab_port: int) -> int:
    """gunicorn's port: 8000 for the default lab (2222), 8100 for the test lab (2322), ...

    Labs share the 127.10.0.N addresses, so their app hosts need different ports to run at
    the same time (a developer's lab, the test suite and a benchmark).
    """
    port = HTTP_PORT + lab_port - 2222
    if not 1024 <= port <= 65535:
        raise LabError(f"lab port {lab_port} gives app port {port}, out of range",
                       hint="use a lab port between 2222 and 59757")
    return port


def start_command(port: int, address: str = "{address}") -> str:
    """The ``deploy.start`` line; ``{address}`` is left for the deployer to fill in.

    ``--pythonpath`` names ``current`` through the symlink (sys.path keeps the unresolved
    path), so the workers a HUP spawns import the release ``current`` points at then.
    """
    argv = [
        str(gunicorn_binary()),
        "--daemon",
        "--bind", f"{address}:{port}",
        "--pid", PID_FILE,
        "--pythonpath", CURRENT,
        "--workers", "2",
        "--access-logfile", f"{SHARED}/log/access.log",
        "--error-logfile", f"{SHARED}/log/error.log",
    ]  # fmt: skip
    if _has_control_socket():
        argv.append("--no-control-socket")
    argv.append("app:application")
    return " ".join(a if "{" in a else shlex.quote(a) for a in argv)


def deploy_vars(repo: pathlib.Path, target_group_arn: str | None, port: int) -> dict[str, Any]:
    """The ``deploy:`` group vars of ``app`` (see docs/lab.md)."""
    settings: dict[str, Any] = {
        "repo": str(repo),
        "root": ROOT,
        "keep_releases": 5,
        "shared_dirs": ["log", "pids"],
        "reload": "hup",
        "pid_file": PID_FILE,
        "start": start_command(port),
        "health_url": f"http://{{address}}:{port}/health",
        "health_timeout": 10,
    }
    if target_group_arn:
        settings["target_group_arn"] = target_group_arn
    settings["drain_timeout"] = 5
    return settings


class AppService:
    name = "gunicorn"
    roles = ("app",)
    wait_healthy = False  # the deploy starts gunicorn; `up` must not wait for it

    def prepare(self, ctx: LabContext) -> None:
        if not gunicorn_binary().exists():
            raise LabError(
                f"the lab's app hosts need gunicorn ({gunicorn_binary()} is missing)",
                hint="pip install 'gunicorn>=21' (in the test extra: pip install -e '.[test]')",
            )
        sample_repo.ensure(ctx.state_dir)

    def inventory_vars(self, ctx: LabContext) -> InventoryVars:
        arn = ctx.aws.target_groups.get(TARGET_GROUP) if ctx.aws else None
        repo = sample_repo.repo_path(ctx.state_dir)
        settings = deploy_vars(repo, arn, http_port(ctx.port))
        return InventoryVars(group_vars={"app": {"deploy": settings}})

    def start(self, host: LabHost, ctx: LabContext) -> None:
        # Only the dirs the start command writes to, so it also works by hand before a deploy.
        for sub in ("log", "pids"):
            _in_host(host, f"{SHARED}/{sub}").mkdir(parents=True, exist_ok=True)

    def stop(self, host: LabHost, ctx: LabContext) -> None:
        pid = master_pid(host)
        if pid is not None:
            procs.terminate([pid], grace=10.0)  # TERM: gunicorn stops its workers, then exits

    def health(self, host: LabHost, ctx: LabContext) -> bool:
        """A master runs (pid file) and ``/health`` answers 200."""
        if master_pid(host) is None:
            return False
        url = f"http://{host.address}:{http_port(ctx.port)}/health"
        return net.http_status(url) == 200


def _in_host(host: LabHost, path: str) -> pathlib.Path:
    """Where a path under the host's /srv lives on our side (its bind-mount source)."""
    assert path.startswith("/srv/")
    return host.state_dir / "srv" / path.removeprefix("/srv/")


def master_pid(host: LabHost) -> int | None:
    """The gunicorn master of ``host``: pid file, alive, gunicorn, inside this host."""
    try:
        text = _in_host(host, PID_FILE).read_text().strip()
    except OSError:
        return None
    pid = int(text) if text.isdigit() else None
    if not procs.alive(pid) or "gunicorn" not in procs.cmdline(pid or 0):
        return None
    assert pid is not None
    marker = host.state_dir / "etc" / procs.HOST_MARKER
    try:
        host_id = marker.read_text().strip()
    except OSError:
        return None
    return pid if procs.ns_is_host(pid, host_id) else None


register(AppService())
