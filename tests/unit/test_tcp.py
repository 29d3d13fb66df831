"""opskit.transport.tcp: the SSH connection's socket (no Nagle, quick ACKs) and its errors."""

from __future__ import annotations

import socket
import threading

import pytest

from opskit.transport import tcp
from opskit.transport.connection import describe_connect_error


def _server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    return srv, srv.getsockname()[1]


def test_connect_sets_nodelay_and_reads_as_a_socket() -> None:
    srv, port = _server()

    def serve() -> None:
        peer, _ = srv.accept()
        peer.sendall(b"SSH-2.0-test\r\n")
        peer.close()

    threading.Thread(target=serve, daemon=True).start()
    sock = tcp.connect("127.0.0.1", port, 5)
    try:
        assert isinstance(sock, tcp.QuickAckSocket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.gettimeout() == 5
        data = b""
        while chunk := sock.recv(64):
            data += chunk
        assert data == b"SSH-2.0-test\r\n"  # recv's extra setsockopt changes nothing read
    finally:
        sock.close()
        srv.close()


def test_refused_port_raises_and_reads_as_refused() -> None:
    srv, port = _server()
    srv.close()  # nothing listens there now
    with pytest.raises(ConnectionRefusedError) as info:
        tcp.connect("127.0.0.1", port, 5)
    message, hint = describe_connect_error(info.value)
    assert message == "connection refused" and hint and "sshd" in hint


def test_unresolvable_name_raises_gaierror() -> None:
    with pytest.raises(socket.gaierror):
        tcp.connect("no-such-host.invalid", 22, 5)
