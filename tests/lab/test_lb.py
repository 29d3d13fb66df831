"""`opskit lb status` against the lab's real nginx on lb1 and lb2 (opskit/lab/nginx_service.py):
what it reports when all is well, when an app host is out of rotation, when nginx is down or
its config fails `nginx -t`, when the upstream file holds what is not a server, when an lb host
is unreachable, and logged in as the non-root ops user (sudo)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_json, run_opskit, stop_sshd, wait_for

import opskit.lab as labmod
from opskit.lab import LabStatus, app_service, net, nginx_service, pg_service, procs

pytestmark = pytest.mark.lab

LB_HOSTS = ["lb1", "lb2"]


def app_addresses(lab: LabStatus) -> list[str]:
    port = app_service.http_port(lab.port)
    return [f"{h.address}:{port}" for h in lab.hosts if "app" in h.groups]


@contextlib.contextmanager
def changed(lab: LabStatus, host: str, path: str, text: str) -> Iterator[Path]:
    """A file of the host's /etc/opskit-lab replaced for the block, put back after."""
    target = pg_service.on_our_side(lab.host(host), path)
    before = target.read_text()
    target.write_text(text)
    try:
        yield target
    finally:
        target.write_text(before)


def by_name(doc: dict) -> dict[str, dict]:
    return {h["name"]: h for h in doc["hosts"]}


def test_status_of_a_healthy_tier_then_an_app_host_out_of_rotation(lab: LabStatus) -> None:
    code, doc = run_json(lab.inventory_path, "lb", "status")
    assert code == 0, doc
    hosts = by_name(doc)
    assert sorted(hosts) == LB_HOSTS and doc["warnings"] == []
    for h in hosts.values():
        assert h["running"] and h["config_ok"] and isinstance(h["active_connections"], int)
        assert [(u["address"], u["down"]) for u in h["upstream"]] == [
            (a, False) for a in app_addresses(lab)]
        # Named as the inventory names them, by address.
        assert [u["host"] for u in h["upstream"]] == [x.name for x in lab.hosts
                                                       if "app" in x.groups]
        assert h["pid"] == nginx_service.nginx_pid(lab.host(h["name"]))

    first = app_addresses(lab)[0]
    original = nginx_service.NginxService.upstream_path(lab.host("lb2")).read_text()
    with changed(lab, "lb2", nginx_service.UPSTREAM_FILE,
                 original.replace(f"server {first} ", f"server {first} down ", 1)):
        code, doc = run_json(lab.inventory_path, "lb", "status", "-l", "lb")
    assert code == 2
    assert doc["warnings"] == [f"lb2: out of rotation (down): app1 ({first})"]
    assert [u["down"] for u in by_name(doc)["lb2"]["upstream"]][:1] == [True]


def test_nginx_down_and_a_hostile_upstream_file_failing_nginx_t_are_warnings(
        lab: LabStatus, lab_restore) -> None:
    lb1, lb2 = lab.host("lb1"), lab.host("lb2")
    hostile = (f"server {app_addresses(lab)[0]};\n"
               "server 127.0.0.1:1; } server { listen 80; location / { return 200; } #\n"
               "server $(touch /tmp/opskit-pwned):80;\n")
    pid = nginx_service.nginx_pid(lb2)
    assert pid is not None
    try:
        procs.terminate([pid])
        assert wait_for(lambda: nginx_service.nginx_pid(lb2) is None)
        with changed(lab, "lb1", nginx_service.UPSTREAM_FILE, hostile):
            code, doc = run_json(lab.inventory_path, "lb", "status")
        assert code == 2
        hosts = by_name(doc)
        assert hosts["lb2"]["running"] is False and hosts["lb2"]["pid"] is None
        assert "lb2: nginx is not running" in doc["warnings"]
        assert hosts["lb1"]["running"] and hosts["lb1"]["config_ok"] is False
        # nginx -t reads the include too: the line that breaks it, in nginx's words.
        assert f"{nginx_service.UPSTREAM_FILE}:2" in hosts["lb1"]["config_error"]
        assert any(w.startswith("lb1: nginx -t fails: ") for w in doc["warnings"])
        # Only the first line is a server; the others are named problems, never servers.
        assert [u["address"] for u in hosts["lb1"]["upstream"]] == app_addresses(lab)[:1]
        assert [p.split(" is not")[0] for p in hosts["lb1"]["upstream_problems"]] == [
            "line 2", "line 3"]
        assert not Path("/tmp/opskit-pwned").exists()
        # The running nginx on lb1 still serves: a failing file on disk was never loaded.
        health = f"http://{lb1.address}:{nginx_service.http_port(lab.port)}/lb-health"
        assert net.http_status(health) == 200
    finally:
        lab_restore()
    assert wait_for(lambda: nginx_service.nginx_pid(lb2) is not None)


def test_an_unreachable_lb_host_is_exit_3_and_the_other_is_still_shown(
        lab: LabStatus, lab_restore) -> None:
    try:
        stop_sshd(lab, "lb2")
        code, doc = run_json(lab.inventory_path, "--connect-timeout", "2", "lb", "status")
        assert code == 3
        hosts = by_name(doc)
        assert hosts["lb2"]["reachable"] is False
        assert doc["warnings"][0].startswith("lb2: unreachable: ")
        assert hosts["lb1"]["running"] and hosts["lb1"]["config_ok"]
    finally:
        lab_restore()


def test_as_the_non_root_ops_user_through_sudo(lab: LabStatus) -> None:
    """The pid file and `nginx -t` need root: the probe runs under sudo as ops."""
    code, doc = run_json(labmod.ops_inventory_path(lab.inventory_path), "lb", "status")
    assert code == 0, doc
    assert all(h["running"] and h["config_ok"] for h in doc["hosts"])


def test_text_view_and_no_lb_hosts_selected(lab: LabStatus) -> None:
    proc = run_opskit(lab.inventory_path, "lb", "status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "healthy: 2 lb hosts, nginx running, config valid" in proc.stdout
    assert all(name in proc.stdout for name in LB_HOSTS)
    assert "app1 app2 app3" in proc.stdout  # the upstream's servers by their inventory names
    proc = run_opskit(lab.inventory_path, "lb", "status", "-l", "app1")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == "error: no host of the selection has nginx: settings"
