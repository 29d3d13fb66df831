"""Run on an lb host (stdlib only, as root): what opskit needs to judge its nginx.

argv: BINARY CONF PID_FILE UPSTREAM_FILE STATUS_URL
Prints one JSON line:
  {"pid": N|null, "running": bool, "config_ok": bool, "config_error": "...",
   "status": {"code": N|null, "body": "..."}, "upstream": "..."|null, "upstream_error": "..."}

Nothing here is interpreted beyond "is the pid an nginx master": the stub_status body and
the upstream file are sent back as text (bounded) and parsed by opskit against a grammar
(``opskit/lb/parse.py``), so a host cannot make opskit believe more than what parses.
"""

import json
import socket
import subprocess
import sys

LIMIT = 65536  # bytes of a status page or an upstream include: more is not a real one


def master(pid_file):
    try:
        with open(pid_file) as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
    return pid if cmd.startswith("nginx: master process") else None


def config_test(binary, conf):
    try:
        done = subprocess.run([binary, "-t", "-q", "-c", conf], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    # The reason is the [emerg] line; the last one only says "test failed".
    why = [ln for ln in lines if "[emerg]" in ln or "[alert]" in ln] or lines
    return done.returncode == 0, (why[-1] if why else "")[:500]


# As http_check.py's probe_http: an on-host program is one file passed to python3 -c, so it
# cannot import its sibling.
def fetch(url):
    if not url.startswith("http://"):
        return None, "only http:// status URLs"
    hostport, _, path = url[len("http://"):].partition("/")
    host, _, port = hostport.partition(":")
    request = f"GET /{path} HTTP/1.0\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection((host, int(port or 80)), timeout=3) as sock:
            sock.sendall(request.encode())
            data = b""
            while len(data) <= LIMIT:
                chunk = sock.recv(8192)
                if not chunk:
                    break
                data += chunk
    except (OSError, ValueError) as exc:
        return None, str(exc)
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None, "not an HTTP answer"
    return int(parts[1]), body[:LIMIT].decode("utf-8", "replace")


def upstream(path):
    try:
        with open(path, "rb") as fh:
            data = fh.read(LIMIT + 1)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    if len(data) > LIMIT:
        return None, f"larger than {LIMIT} bytes"
    return data.decode("utf-8", "replace"), ""


def main():
    binary, conf, pid_file, upstream_file, status_url = sys.argv[1:6]
    pid = master(pid_file)
    ok, error = config_test(binary, conf)
    code, body = fetch(status_url) if pid else (None, "nginx is not running")
    text, up_error = upstream(upstream_file)
    print(json.dumps({"pid": pid, "running": pid is not None, "config_ok": ok,
                      "config_error": "" if ok else error,
                      "status": {"code": code, "body": body},
                      "upstream": text, "upstream_error": up_error}))


main()
