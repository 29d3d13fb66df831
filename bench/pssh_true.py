"""Run ``true`` on every host with parallel-ssh; print one JSON line of outcomes.

bench/fanout.py starts this as a subprocess so that parallel-ssh's import time counts, as
a command-line tool's would. Usage: pssh_true.py PORT KEY ADDRESS...
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    port, key, hosts = int(argv[0]), argv[1], argv[2:]
    from pssh.clients import ParallelSSHClient  # imported here: its import time is measured

    client = ParallelSSHClient(hosts, user="root", pkey=key, port=port, pool_size=len(hosts))
    output = client.run_command("true", stop_on_errors=False)
    client.join(output)
    ok = sorted({out.host for out in output if out.exception is None and out.exit_code == 0})
    errors = {out.host: repr(out.exception or f"exit {out.exit_code}")
              for out in output if out.host not in ok}
    print(json.dumps({"ok": ok, "errors": errors}))
    return 0 if len(ok) == len(hosts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
