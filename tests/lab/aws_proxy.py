"""An HTTP proxy in front of moto that can fail or hold chosen EC2 calls (tests only).

The production code path is unchanged: opskit is pointed at the proxy's URL as its endpoint,
and every request the rule does not touch is forwarded to moto as it came.

    def rule(action, params):                 # the EC2 Query API: Action=..., its parameters
        if action == "DeleteSnapshot" and params["SnapshotId"] == doomed:
            return Fail(403, "UnauthorizedOperation", "not allowed by policy")
        return None                           # forward

    with AwsProxy(moto_url, rule) as url: ...
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Fail:
    status: int
    code: str
    message: str


@dataclass(frozen=True)
class Hold:
    seconds: float  # then forward


Rule = Callable[[str, dict[str, str]], Fail | Hold | None]


@contextmanager
def aws_proxy(upstream: str, rule: Rule) -> Iterator[str]:
    """Serve on 127.0.0.1 (a free port) until the block ends; yields the proxy's URL."""
    target = urllib.parse.urlsplit(upstream)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _forward(self, body: bytes) -> None:
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            headers["Host"] = target.netloc
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            params = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
            action = params.get("Action", "")
            seen.append(action)
            verdict = rule(action, params)
            if isinstance(verdict, Hold):
                time.sleep(verdict.seconds)
            elif isinstance(verdict, Fail):
                xml = (f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>"
                       f"{verdict.code}</Code><Message>{verdict.message}</Message></Error>"
                       "</Errors><RequestID>proxy</RequestID></Response>").encode()
                self.send_response(verdict.status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)
                return
            self._forward(body)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
