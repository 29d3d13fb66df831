"""opskit/lb/parse.py: an lb host's stub_status page and upstream include, read against their
grammar; what does not parse is a problem, never a server."""

from __future__ import annotations

import pytest

from opskit.inventory import Host
from opskit.lb import parse, status
from opskit.lb.settings import NginxSettings

STUB = ("Active connections: 3 \nserver accepts handled requests\n 10 10 42 \n"
        "Reading: 0 Writing: 1 Waiting: 2 \n")


def test_stub_status_as_nginx_prints_it() -> None:
    st = parse.stub_status(STUB)
    assert (st.active, st.accepts, st.handled, st.requests) == (3, 10, 10, 42)
    assert (st.reading, st.writing, st.waiting) == (0, 1, 2)


@pytest.mark.parametrize("text", [
    "", "<html>502 Bad Gateway</html>", STUB.replace("3", "-3", 1), STUB + "extra\n",
    STUB.replace("Active connections: 3", "Active connections: 3; rm -rf /"),
    "Active connections: 99999999999999999999999999 \n" + STUB.split("\n", 1)[1][:-1] + "x",
])
def test_anything_else_is_not_a_stub_status_page(text: str) -> None:
    with pytest.raises(ValueError, match="not an nginx stub_status page"):
        parse.stub_status(text)


def test_upstream_servers_their_params_and_down() -> None:
    up = parse.upstream(
        "# the app hosts\n"
        "server 10.0.0.1:8000 max_fails=1 fail_timeout=2s;\n"
        "  server app2.internal:8000 down;   # deploy in progress\n"
        "server [2001:db8::1]:8000 weight=5 backup;\n"
        "\n"
        "server 10.0.0.4;  # down: only a comment\n")
    assert [(s.address, s.down) for s in up.servers] == [
        ("10.0.0.1:8000", False), ("app2.internal:8000", True), ("[2001:db8::1]:8000", False),
        ("10.0.0.4", False)]
    assert up.servers[0].params == ("max_fails=1", "fail_timeout=2s")
    assert up.problems == []


@pytest.mark.parametrize("line", [
    "server 10.0.0.1:8000; include /etc/shadow;",     # a second directive on the line
    "server 10.0.0.1:8000 }; server evil { listen 80",  # closing the block
    "server $(touch /tmp/pwned):8000;",                # shell text
    "server 10.0.0.1:8000 down",                       # no semicolon
    "server 10.0.0.1:8000 sudo=yes;",                  # not an nginx server parameter
    "include /etc/nginx/other.conf;",                  # only servers belong here
    "server 10.0.0.1:8000 weight=5\n;",                # split over two lines
])
def test_a_line_that_is_not_a_server_is_a_problem_not_a_server(line: str) -> None:
    up = parse.upstream("server 10.0.0.9:8000;\n" + line + "\n")
    assert [s.address for s in up.servers] == ["10.0.0.9:8000"]
    assert up.problems and up.problems[0].startswith("line 2 is not a `server ADDRESS")


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/nginx_status", "http://127.0.0.1/a b", "file:///etc/passwd",
    "http://127.0.0.1", "http://host\n/x", "http://h:1/x\r\nX-Injected: 1",
])
def test_a_status_url_outside_the_grammar_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http://HOST"):
        NginxSettings.model_validate({"upstream_file": "/etc/nginx/up.conf", "status_url": url})


def test_the_upstream_file_is_required_and_absolute() -> None:
    with pytest.raises(ValueError, match="upstream_file"):
        NginxSettings.model_validate({})
    with pytest.raises(ValueError, match="absolute path"):
        NginxSettings.model_validate({"upstream_file": "up.conf"})
    ok = NginxSettings.model_validate({"upstream_file": "/etc/nginx/up.conf"})
    assert (ok.conf, ok.pid_file, ok.status_url) == (
        "/etc/nginx/nginx.conf", "/run/nginx.pid", "http://127.0.0.1/nginx_status")


def test_upstream_servers_are_named_by_the_inventory_address_never_by_a_guess() -> None:
    hosts = [Host(name, {"ansible_host": address}) for name, address in (
        ("app1", "10.0.0.1"), ("app2", "10.0.0.2"), ("twin-a", "10.0.0.9"),
        ("twin-b", "10.0.0.9"), ("v6", "2001:db8::1"))]
    names = status.names_by_address(hosts)
    st = status.LbState("lb1", names=names)
    up = parse.upstream("server 10.0.0.1:8000;\nserver 10.0.0.2;\nserver 10.0.0.9:80;\n"
                        "server [2001:db8::1]:8000;\nserver 10.0.0.3:8000 down;\n")
    assert [st.host_of(s) for s in up.servers] == ["app1", "app2", None, "v6", None]
    assert st.shown(up.servers[0]) == "app1 (10.0.0.1:8000)"
    st.servers = up.servers
    assert st.warnings()[-1] == "lb1: out of rotation (down): 10.0.0.3:8000"
