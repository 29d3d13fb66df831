"""The lab's nginx tier (opskit/lab/nginx_service.py): Debian's nginx on every lb host, in the
host's namespace, on its address, the app hosts in its upstream include."""

from __future__ import annotations

import re
import urllib.request

import pytest
from helpers import wait_for

import opskit.lab as labmod
from opskit.lab import LabStatus, app_service, net, nginx_service, pg_service, procs

pytestmark = pytest.mark.lab

LB_HOSTS = ("lb1", "lb2")


def url(lab: LabStatus, name: str, path: str) -> str:
    return f"http://{lab.host(name).address}:{nginx_service.http_port(lab.port)}{path}"


def get(address: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(address, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_every_lb_host_runs_nginx_in_its_namespace_in_front_of_the_app_hosts(
        lab: LabStatus) -> None:
    now = labmod.status(state_dir=lab.state_dir)
    assert all(now.host(n).services.get("nginx") for n in LB_HOSTS)
    app = [h for h in lab.hosts if "app" in h.groups]
    for name in LB_HOSTS:
        host = now.host(name)
        pid = nginx_service.nginx_pid(host)
        assert pid is not None and pg_service.ours(pid, host, "nginx: master process")
        # In the host's mount namespace (its private /etc/opskit-lab), not the machine's.
        assert procs.mnt_ns(pid) == procs.mnt_ns(host.pid)
        assert get(url(lab, name, nginx_service.HEALTH_PATH)) == (200, "ok\n")
        code, text = get(url(lab, name, nginx_service.STATUS_PATH))
        assert code == 200 and re.match(r"Active connections: \d+", text), text
        assert labmod.run_in_host(name, [nginx_service.NGINX_BIN, "-t", "-c",
                                         nginx_service.NGINX_CONF, "-e", nginx_service.NGINX_LOG],
                                  state_dir=lab.state_dir).returncode == 0
        upstream = nginx_service.NginxService.upstream_path(host).read_text()
        port = app_service.http_port(lab.port)
        assert re.findall(r"^server (\S+) ", upstream, re.M) == [f"{h.address}:{port}"
                                                                for h in app]
    # On the host's own address only: nothing answers on the machine's 127.0.0.1 there.
    assert net.http_status(f"http://127.0.0.1:{nginx_service.http_port(lab.port)}/") is None
    config = pg_service.on_our_side(now.host("lb1"), nginx_service.NGINX_CONF).read_text()
    assert f"listen {lab.host('lb1').address}:{nginx_service.http_port(lab.port)};" in config


def test_a_restarted_lab_keeps_an_upstream_changed_since_and_restarts_a_dead_nginx(
        lab: LabStatus, lab_restore) -> None:
    """``up`` writes the upstream include only when it is missing (opskit's own changes to it
    survive) and starts an nginx that died."""
    host = lab.host("lb2")
    path = nginx_service.NginxService.upstream_path(host)
    before = path.read_text()
    first = re.search(r"^server (\S+) ", before, re.M)
    assert first is not None
    changed = before.replace(f"server {first.group(1)} ", f"server {first.group(1)} down ", 1)
    try:
        path.write_text(changed)
        pid = nginx_service.nginx_pid(host)
        assert pid is not None
        procs.terminate([pid])
        assert wait_for(lambda: nginx_service.nginx_pid(host) is None)
        lab_restore()
        assert wait_for(lambda: nginx_service.nginx_pid(host) not in (None, pid))
        assert path.read_text() == changed
        assert get(url(lab, "lb2", nginx_service.HEALTH_PATH))[0] == 200
    finally:
        path.write_text(before)
        labmod.run_in_host("lb2", [nginx_service.NGINX_BIN, "-s", "reload", "-c",
                                   nginx_service.NGINX_CONF, "-e", nginx_service.NGINX_LOG],
                           state_dir=lab.state_dir)
