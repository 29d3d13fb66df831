"""Run ``true`` on every host with a plain Fabric ThreadingGroup; print one JSON line.

What a Fabric user writes without opskit: ``ThreadingGroup(*hosts).run("true")`` -- one
thread per host (no cap), paramiko's defaults (Fabric's auto-add host-key policy: no
known_hosts check), the kernel's TCP defaults. bench/fanout.py starts this as a subprocess
so that Fabric's import time counts, as a command-line tool's would.
Usage: fabric_true.py PORT KEY ADDRESS...
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    port, key, hosts = int(argv[0]), argv[1], argv[2:]
    from fabric import ThreadingGroup  # imported here: its import time is measured
    from fabric.exceptions import GroupException

    group = ThreadingGroup(*hosts, user="root", port=port,
                           connect_kwargs={"key_filename": [key]})
    try:
        results = group.run("true", hide=True, warn=True)
    except GroupException as exc:
        results = exc.result
    ok = sorted(c.host for c, r in results.succeeded.items() if r.exited == 0)
    errors = {c.host: repr(e) for c, e in results.failed.items()}
    group.close()
    print(json.dumps({"ok": ok, "errors": errors}))
    return 0 if len(ok) == len(hosts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
