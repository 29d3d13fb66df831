"""Small /proc helpers: is a pid alive, is it our sshd, who lives in a mount namespace.

Lab sshds are orphans (started through ``setsid -f``) and the VM's init reaps orphans lazily,
so a dead process can linger as a zombie for seconds: zombies count as dead everywhere here.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable

from opskit.runner import wait

HOST_MARKER = ".opskit-lab-host"  # in each host's /etc/opskit-lab; holds the host's host_id


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:  # gone, or not ours to read
        return None


def read_pid_file(path: os.PathLike[str] | str) -> int | None:
    """The pid in a pid file, or None if the file is missing or holds no number."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def alive(pid: int | None) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    if not pid or pid <= 0:
        return False
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return False
    # Field 3 (after the parenthesised comm, which may itself contain spaces) is the state.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def cmdline(pid: int) -> str:
    """The command line with NULs as spaces ('' for kernel threads, zombies and gone pids)."""
    raw = _read(f"/proc/{pid}/cmdline") or ""
    return raw.replace("\0", " ").strip()


def is_lab_sshd(pid: int | None, config: os.PathLike[str] | str) -> bool:
    """True if ``pid`` is a live sshd listener started with ``-f config``.

    sshd rewrites its title to ``sshd: /usr/sbin/sshd -D -f CFG [listener] ...``; before that
    it is the plain argv. Both contain ``-f CFG``; the shell wrapper that execs sshd also does,
    hence the check that the command itself is sshd.
    """
    if not alive(pid):
        return False
    assert pid is not None
    line = cmdline(pid)
    head = line.split(" ", 1)[0]
    is_sshd = head == "sshd:" or os.path.basename(head) == "sshd"
    return is_sshd and f" -f {os.fspath(config)}" in f" {line} "


def pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def mnt_ns(pid: int | None) -> int | None:
    """Inode of the pid's mount namespace (None if gone or a zombie)."""
    if not pid:
        return None
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def ns_table() -> dict[int, list[int]]:
    """Mount-namespace inode -> live pids in it, from one /proc scan (reused across hosts)."""
    me = os.getpid()
    table: dict[int, list[int]] = {}
    for pid in pids():
        inode = mnt_ns(pid)
        if inode is not None and pid != me and alive(pid):
            table.setdefault(inode, []).append(pid)
    return table


def ns_members(inode: int, table: dict[int, list[int]] | None = None) -> list[int]:
    """Live pids whose mount namespace has this inode."""
    found = (table if table is not None else ns_table()).get(inode, [])
    return [p for p in found if alive(p)]


def ns_is_host(pid: int, host_id: str) -> bool:
    """True if ``pid`` sees the host's private /etc/opskit-lab (so it is inside that host).

    Namespace inodes are reused once a namespace dies, so an inode alone could point at some
    unrelated namespace (a systemd unit's, say); the marker file proves it is ours.
    """
    marker = _read(f"/proc/{pid}/root/etc/opskit-lab/{HOST_MARKER}")
    return marker is not None and marker.strip() == host_id


def host_members(
    inode: int | None, host_id: str, table: dict[int, list[int]] | None = None
) -> list[int]:
    """Live pids in the host's namespace, or [] if that namespace is gone or not ours."""
    if not inode:
        return []
    members = ns_members(inode, table)
    # One check is enough: all members share the namespace, hence the same mounts.
    for pid in members:
        if alive(pid):
            return members if ns_is_host(pid, host_id) else []
    return []


def terminate(targets: Iterable[int], *, grace: float = 5.0, kill_wait: float = 3.0) -> list[int]:
    """SIGTERM, wait up to ``grace`` s, SIGKILL the rest, wait ``kill_wait`` s.

    Returns the pids still alive at the end (e.g. stuck in uninterruptible sleep).
    """
    left = _signal_all(targets, signal.SIGTERM)
    left = _wait_gone(left, grace)
    if left:
        left = _wait_gone(_signal_all(left, signal.SIGKILL), kill_wait)
    return left


def _signal_all(targets: Iterable[int], sig: signal.Signals) -> list[int]:
    sent = []
    for pid in targets:
        try:
            os.kill(pid, sig)
            sent.append(pid)
        except ProcessLookupError:
            pass
    return sent


def _wait_gone(targets: list[int], timeout: float) -> list[int]:
    left = [p for p in targets if alive(p)]

    def probe() -> tuple[bool, list[int]]:
        left[:] = [p for p in left if alive(p)]
        return not left, left

    try:
        wait.until(probe, what="processes to exit", timeout=timeout, interval=0.02)
    except wait.WaitTimedOut:
        pass  # the caller escalates (SIGKILL) for those still alive
    return left
