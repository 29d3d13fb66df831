"""Loading an inventory of many hosts from ranges: the time for N hosts, N up to 100,000.

No lab: `opskit.inventory.load` on generated files (two groups, each host in both, vars on
the groups). Loading is linear in the hosts; before issue 15 adding a host to a group was a
list scan (quadratic): one group from a range took 1.23 s for 10,000 hosts and 10.7 s for
30,000 (about 2 min for 100,000). Measured after (2 cores, shared): 0.02 s for 1,000, 0.20 s
for 10,000, 2.6 s for 100,000 hosts in two groups. Prints one line per size.

    .venv/bin/python bench/inventory_load.py            # 1,000 10,000 100,000
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opskit import inventory  # noqa: E402

SIZES = (1_000, 10_000, 100_000)
DOC = """\
all:
  children:
    app:
      hosts:
        app[1:{n}]:
      vars: {{deploy: {{root: /srv/app}}}}
    us_east_1a:
      hosts:
        app[1:{n}]:
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            path = Path(tmp) / f"inv{n}.yml"
            path.write_text(DOC.format(n=n))
            t0 = time.perf_counter()
            inv = inventory.load(path)
            seconds = time.perf_counter() - t0
            assert len(inv.hosts) == n
            per_host = seconds / n * 1e6
            print(f"{n:>7,} hosts from ranges: {seconds:6.2f} s ({per_host:.1f} us a host)")


if __name__ == "__main__":
    main()
