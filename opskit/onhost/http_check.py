"""Run on a target host (stdlib only): poll an HTTP URL until it answers 200.

argv: URL TIMEOUT_SECONDS [EXPECT_TEXT]
Prints one JSON line {"status": N, "body": "...", "seconds": S}; exit 0 when the answer was
200 (and contained EXPECT_TEXT, if given) before the deadline, else 1.

Plain http:// is spoken over a socket: this runs on every host at the moment its app
reloads, and importing urllib costs several times the interpreter's own start. https://
falls back to urllib.
"""

import json
import socket
import sys
import time


def probe_http(url):
    rest = url[len("http://"):]
    hostport, _, path = rest.partition("/")
    if hostport.startswith("["):  # [v6]:port
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.partition(":")
    request = f"GET /{path} HTTP/1.0\r\nHost: {hostport}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((host, int(port or 80)), timeout=2) as sock:
            sock.sendall(request)
            data = b""
            while len(data) < 65536:
                chunk = sock.recv(8192)
                if not chunk:
                    break
                data += chunk
    except (OSError, ValueError) as exc:
        return None, str(exc)
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None, f"not an HTTP answer: {head[:80]!r}"
    return int(parts[1]), body[:4096].decode("utf-8", "replace")


def probe_urllib(url):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        return None, str(exc)


def main():
    url, timeout = sys.argv[1], float(sys.argv[2])
    expect = sys.argv[3] if len(sys.argv) > 3 else ""
    probe = probe_http if url.startswith("http://") else probe_urllib
    start = time.monotonic()
    status, body = None, ""
    while True:
        status, body = probe(url)
        if status == 200 and expect in body:
            break
        if time.monotonic() - start > timeout:
            break
        time.sleep(0.1)
    seconds = round(time.monotonic() - start, 3)
    print(json.dumps({"status": status, "body": body[:500], "seconds": seconds}))
    return 0 if status == 200 and expect in body else 1


if __name__ == "__main__":
    sys.exit(main())
