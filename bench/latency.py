"""Latency of one command on one host: opskit's session against plain Fabric and OpenSSH.

A runbook (a failover, a freeze around a snapshot, a deploy's three steps per host) runs its
commands one after the other, so the time from sending a command to having its exit status
adds up. Measured on a 3-host lab (loopback: no network latency, so what is left is each
tool's own waiting):

- a command on an already open connection: opskit ``Session.run`` / plain Fabric
  ``Connection.run`` / ``ssh -S`` over an OpenSSH ControlMaster;
- connect + one command + close: opskit ``connect`` + ``Session.run`` / plain Fabric
  ``Connection(...).run`` / ``ssh`` (curve25519, the key exchange paramiko gets);
- the same through a ProxyJump bastion (the usual way into an EC2 VPC): host 1 is the jump
  host for host 2, from ``~/.ssh/config`` for opskit and ``ssh -J``, ``gateway=`` for Fabric.

Medians of ``--repeat`` commands per row, taken in rounds (every row once per round).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from common import REPORT, Lab, lab_down, lab_up, write_section
from fabric import Connection

from opskit import inventory as inventory_mod
from opskit.transport.connection import ConnectOptions, connect
from opskit.transport.session import Session

HOSTS = 3


def _ssh_base(lab: Lab) -> list[str]:
    return ["ssh", "-i", str(lab.key), "-o", f"UserKnownHostsFile={lab.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "KexAlgorithms=curve25519-sha256", "-p", str(lab.port)]


def bastion_home(lab: Lab, root: Path) -> Path:
    """A HOME whose ~/.ssh/config sends host 2 through host 1 (for opskit and ``ssh``)."""
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host {lab.addresses[1]}\n  ProxyJump root@{lab.addresses[0]}:{lab.port}\n"
        f"Host 127.10.0.*\n  IdentityFile {lab.key}\n  UserKnownHostsFile {lab.known_hosts}\n"
        "  KexAlgorithms curve25519-sha256\n  BatchMode yes\n")
    return home


def rows(lab: Lab, root: Path) -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    """(name, one measured call, clean-up) per row."""
    inventory = inventory_mod.load(lab.inventory)
    host = inventory.hosts[lab.names[0]]
    behind = inventory.hosts[lab.names[1]]  # reached through host 1
    address = lab.addresses[0]
    opskit_conn = connect(host, ConnectOptions())
    opskit_session = Session(host, opskit_conn)
    fabric_conn = Connection(address, user="root", port=lab.port,
                             connect_kwargs={"key_filename": [str(lab.key)]})
    fabric_conn.open()
    control = root / "cm.sock"
    ssh = _ssh_base(lab)
    master = subprocess.Popen([*ssh, "-M", "-N", "-S", str(control), f"root@{address}"],
                              stdin=subprocess.DEVNULL)
    for _ in range(100):  # wait for the master's socket
        if control.exists():
            break
        time.sleep(0.05)

    def stop_master() -> None:
        subprocess.run([*ssh, "-S", str(control), "-O", "exit", f"root@{address}"],
                       capture_output=True)
        master.wait(timeout=10)

    def opskit_fresh() -> None:
        conn = connect(host, ConnectOptions())
        try:
            Session(host, conn).run("true")
        finally:
            conn.close()

    def fabric_fresh() -> None:
        with Connection(address, user="root", port=lab.port,
                        connect_kwargs={"key_filename": [str(lab.key)]}) as conn:
            conn.run("true", hide=True, in_stream=False)

    def check(argv: list[str]) -> Callable[[], None]:
        return lambda: subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)

    def fabric_via(target: str) -> Connection:
        key = {"key_filename": [str(lab.key)]}
        jump = Connection(address, user="root", port=lab.port, connect_kwargs=key)
        return Connection(target, user="root", port=lab.port, connect_kwargs=key, gateway=jump)

    via_opskit = connect(behind, ConnectOptions())
    via_session = Session(behind, via_opskit)
    via_fabric = fabric_via(lab.addresses[1])
    via_fabric.open()

    def close_via(conn: Connection) -> Callable[[], None]:
        def close() -> None:
            conn.close()
            conn.gateway.close()
        return close

    def opskit_via_fresh() -> None:
        conn = connect(behind, ConnectOptions())
        try:
            Session(behind, conn).run("true")
        finally:
            close_via(conn)()

    def fabric_via_fresh() -> None:
        conn = fabric_via(lab.addresses[1])
        try:
            conn.run("true", hide=True, in_stream=False)
        finally:
            close_via(conn)()

    return [
        ("open connection: opskit Session.run", lambda: opskit_session.run("true"),
         opskit_conn.close),
        ("open connection: plain Fabric Connection.run",
         lambda: fabric_conn.run("true", hide=True, in_stream=False), fabric_conn.close),
        ("open connection: OpenSSH ssh -S (ControlMaster)",
         check([*ssh, "-S", str(control), f"root@{address}", "true"]), stop_master),
        ("connect + run + close: opskit", opskit_fresh, lambda: None),
        ("connect + run + close: plain Fabric", fabric_fresh, lambda: None),
        ("connect + run + close: OpenSSH ssh (curve25519)",
         check([*ssh, f"root@{address}", "true"]), lambda: None),
        ("via bastion, open connection: opskit Session.run", lambda: via_session.run("true"),
         close_via(via_opskit)),
        ("via bastion, open connection: plain Fabric Connection.run",
         lambda: via_fabric.run("true", hide=True, in_stream=False), close_via(via_fabric)),
        ("via bastion, connect + run + close: opskit", opskit_via_fresh, lambda: None),
        ("via bastion, connect + run + close: plain Fabric", fabric_via_fresh, lambda: None),
        ("via bastion, connect + run + close: OpenSSH ssh -J",
         # ssh reads the passwd entry's home, not $HOME: the config by -F (the -J hop gets it)
         check([*ssh, "-F", str(Path(os.environ["HOME"]) / ".ssh" / "config"),
                "-J", f"root@{address}:{lab.port}", f"root@{lab.addresses[1]}", "true"]),
         lambda: None),
    ]


def measure(table: list[tuple[str, Callable[[], None], Callable[[], None]]],
            repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name, _, _ in table}
    for _, call, _ in table:  # warm-up round
        call()
    for _ in range(repeat):
        for name, call, _ in table:
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return times


def report(times: dict[str, list[float]], repeat: int, port: int) -> str:
    lines = [
        "## Latency: one command on one host",
        "",
        f"`true` on one lab host (sshd on 127.10.0.1:{port}, loopback), {repeat} commands per "
        "row after one warm-up, in rounds; medians and the 90th percentile in milliseconds. "
        "`bench/latency.py`. A runbook's steps run one after another, so this is what each "
        "step waits beyond its own work.",
        "",
        "| what | median ms | p90 ms |",
        "|---|---:|---:|",
    ]
    for name, values in times.items():
        p90 = statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]
        lines.append(f"| {name} | {1000 * statistics.median(values):.1f} | {1000 * p90:.1f} |")
    lines += [
        "",
        "Plain Fabric waits on TCP: sshd holds its small packets (Nagle) until the client's "
        "delayed ACK (40 ms) comes, and Invoke polls for the exit status every 10 ms. opskit's "
        "socket (`opskit/transport/tcp.py`: TCP_NODELAY, TCP_QUICKACK after every read) and "
        "runner (`opskit/transport/quick_runner.py`) remove both; see docs/scale.md. The OpenSSH "
        "rows include "
        "starting an `ssh` process per command. Through the bastion, the first command "
        "after an opskit connect still waits ~45 ms once (the held packet is on the "
        "bastion's own connection to the target; see docs/scale.md).",
        "",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="commands per row (default 30)")
    ap.add_argument("--port", type=int, default=2722, help="lab sshd port (default 2722)")
    ap.add_argument("--out", type=Path, default=REPORT)
    args = ap.parse_args(argv)
    if shutil.which("ssh") is None:
        print("error: ssh not found (apt-get install openssh-client)", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="opskit-bench-latency-"))
    lab = lab_up(HOSTS, args.port, root)
    os.environ["HOME"] = str(bastion_home(lab, root))  # read by opskit's and ssh's ssh_config
    try:
        table = rows(lab, root)
        try:
            times = measure(table, args.repeat)
        finally:
            for _, _, clean in table:
                clean()
        write_section(args.out, report(times, args.repeat, args.port))
        for name, values in times.items():
            print(f"{name:50s} {1000 * statistics.median(values):7.1f} ms", file=sys.stderr)
    finally:
        lab_down(lab.state_dir, root)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPSKIT_JOURNAL", os.devnull)
    sys.exit(main())
