"""A small HTTP proxy on 127.0.0.1 in front of an EC2 endpoint (the lab's moto server), for
tests that need a slow or a failing EC2 call: it holds the actions in ``hold`` for that many
seconds before forwarding them, answers the actions in ``fail`` with EC2's
UnauthorizedOperation error (a 400: botocore does not retry it) -- or, narrower, the
requests ``refuse(action, params)`` says yes to (one SnapshotId of a DeleteSnapshot) --, sends
the actions in ``twice`` upstream twice and answers with the second (as if botocore had
retried after a read timeout: the first one's result is never seen), and forwards everything
else at once. opskit reaches it as ``aws.endpoint_url``, the way it reaches moto: its code path
is the production one."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}

DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
          b"<Code>UnauthorizedOperation</Code><Message>You are not authorized to perform "
          b"this operation. (ec2_proxy)</Message></Error></Errors>"
          b"<RequestID>ec2-proxy</RequestID></Response>")


class Ec2Proxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.hold: dict[str, float] = {}
        self.fail: set[str] = set()
        self.twice: set[str] = set()
        self.refuse: Callable[[str, dict[str, str]], bool] = lambda action, params: False
        self.seen: Counter[str] = Counter()
        self._arrived = threading.Condition()
        self.url = ""

    def wait_for(self, action: str, timeout: float = 60) -> bool:
        """True once a request for ``action`` has arrived (before any hold)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.seen[action] > 0, timeout)

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        params = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        action = params.get("Action", "")
        with self._arrived:
            self.seen[action] += 1
            self._arrived.notify_all()
        if action in self.fail or self.refuse(action, params):
            self._reply(req, 400, {"Content-Type": "text/xml"}, DENIED)
            return
        time.sleep(self.hold.get(action, 0))
        headers = {k: v for k, v in req.headers.items() if k.lower() not in HOP_BY_HOP}
        for _ in range(2 if action in self.twice else 1):
            status, answer, data = self._forward(req.command, req.path, body, headers)
        self._reply(req, status, answer, data)

    def _forward(self, method: str, path: str, body: bytes,
                 headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k: v for k, v in resp.getheaders()
                                 if k.lower() not in HOP_BY_HOP}, data
        finally:
            conn.close()

    @staticmethod
    def _reply(req: BaseHTTPRequestHandler, status: int, headers: dict[str, str],
               data: bytes) -> None:
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)


@contextmanager
def ec2_proxy(upstream: str) -> Iterator[Ec2Proxy]:
    """An :class:`Ec2Proxy` serving on a free port of 127.0.0.1 meanwhile (``.url``)."""
    proxy = Ec2Proxy(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            proxy.handle(self)

        do_GET = do_POST  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: pytest shows the test's own output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
