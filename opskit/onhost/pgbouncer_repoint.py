"""Run on a PgBouncer host (stdlib only): point [databases] entries at a new host and port.

argv: INI HOST PORT DB [DB ...]
Rewrites ``host=`` and ``port=`` in each named entry's connection string, keeps everything
else (comments, other entries, other parameters), writes a temporary file next to the ini with
the same mode and owner and renames it over the original (readers never see half a file).
Prints one JSON line: {"changed": {db: [old, new]}, "missing": [db, ...]}; exit 1 if an entry
is missing (nothing written).
"""

import json
import os
import re
import sys

SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
ENTRY = re.compile(r"^(\s*)([^=;#\s][^=]*?)(\s*=\s*)(.*?)(\s*)$")
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


def main():
    ini, host, port, dbs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    with open(ini) as fh:
        lines = fh.read().splitlines(keepends=True)
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
    if not missing:
        st = os.stat(ini)
        tmp = ini + ".opskit-tmp"
        with open(tmp, "w") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, st.st_mode & 0o7777)
        os.chown(tmp, st.st_uid, st.st_gid)
        os.rename(tmp, ini)
    print(json.dumps({"changed": changed, "missing": missing}))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
