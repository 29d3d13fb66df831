"""Run on a PgBouncer host (stdlib only): point [databases] entries at a new host and port.

argv: INI HOST PORT DB [DB ...]
Computes the ini with ``host=`` and ``port=`` rewritten in each named entry's connection
string, keeping everything else (comments, other entries, other parameters). It writes
nothing: the caller hands the text to ``replace_file.py`` (with the digest of what was read
here), the one helper that replaces files on hosts.
Prints one JSON line: {"changed": {db: [old, new]}, "missing": [db, ...], "text": NEW_INI,
"sha256": DIGEST_OF_THE_INI_READ}; exit 1 if an entry is missing or a value is malformed.
HOST and PORT are checked again here (a host name, an IP literal; 1-65535): a newline or a
space in them would add lines or parameters to the ini.
"""

import hashlib
import ipaddress
import json
import re
import sys

SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
ENTRY = re.compile(r"^(\s*)([^=;#\s][^=]*?)(\s*=\s*)(.*?)(\s*)$")
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(r"(?=.{1,253}\Z)" + LABEL + r"(?:\." + LABEL + r")*\.?\Z")
DBNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\Z")
PARAM = re.compile(r"(\b(?:host|port)\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)")


def repoint(value, host, port):
    seen = set()

    def sub(m):
        key = m.group(1).split("=")[0].strip()
        seen.add(key)
        return m.group(1) + (host if key == "host" else str(port))

    out = PARAM.sub(sub, value)
    if "host" not in seen:
        out += " host=" + host
    if "port" not in seen:
        out += " port=" + str(port)
    return out.strip()


def valid_host(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME.match(host))


def main():
    ini, host, port, dbs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    bad = ([f"host {host!r}"] if not valid_host(host) else []) + \
        ([f"port {port!r}"] if not (port.isdigit() and 1 <= int(port) <= 65535) else []) + \
        [f"database {d!r}" for d in dbs if not DBNAME.match(d)]
    if bad:
        print(json.dumps({"error": "malformed " + ", ".join(bad)}))
        return 1
    port = int(port)
    with open(ini, "rb") as fh:
        raw = fh.read()
    lines = raw.decode().splitlines(keepends=True)
    section, changed = None, {}
    for i, line in enumerate(lines):
        m = SECTION.match(line)
        if m:
            section = m.group(1).strip().lower()
            continue
        if section != "databases":
            continue
        e = ENTRY.match(line.rstrip("\n"))
        if not e or e.group(2).strip() not in dbs:
            continue
        name = e.group(2).strip()
        new = repoint(e.group(4), host, port)
        changed[name] = [e.group(4), new]
        lines[i] = e.group(1) + e.group(2) + e.group(3) + new + "\n"
    missing = [d for d in dbs if d not in changed]
    print(json.dumps({"changed": changed, "missing": missing, "text": "".join(lines),
                      "sha256": hashlib.sha256(raw).hexdigest()}))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
