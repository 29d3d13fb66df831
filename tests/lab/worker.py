"""The lab of this test process: one per pytest-xdist worker, side by side on one machine.

Worker gwN's labs sit on 127.(10+N).0.x with sshd ports 1000·N above the base port
($OPSKIT_LAB_TEST_PORT, default 2322; not 2222, where a developer's own lab may run), so
the same service ports (5432, 6379, ...) never clash and the derived ones (moto at port + 3000,
gunicorn at 8000 + port - 2222) stay apart. Without xdist the process is worker 0.
"""

from __future__ import annotations

import os

INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
NET = 10 + INDEX
PORT = int(os.environ.get("OPSKIT_LAB_TEST_PORT", "2322")) + 1000 * INDEX
# Separate small labs get the next port (and a tmp state dir): the session lab is unaffected.
SMALL_PORT = PORT + 1


def address(index: int) -> str:
    """Host ``index``'s address in this worker's labs (1-based, as in opskit.lab.layout)."""
    return f"127.{NET}.0.{index}"
