"""``python -m opskit`` and the ``opskit`` script.

A Ctrl-C while the modules load (half a second: click, rich, paramiko) exits 130 with one
word instead of a traceback; ``cli.run`` installs the real policy (``runner.interrupts``).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def quiet_interrupt(signum: int, frame: FrameType | None) -> None:
    """Exit 130 with one word (also the Fabric front end's, while its fabfile loads)."""
    sys.stderr.write("interrupted\n")
    raise SystemExit(130)


def main() -> None:
    signal.signal(signal.SIGINT, quiet_interrupt)
    signal.signal(signal.SIGTERM, quiet_interrupt)
    from opskit.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
