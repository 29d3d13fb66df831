"""Run on a target host (stdlib only): freeze a filesystem, thaw no matter what.

argv: MOUNT TIMEOUT_SECONDS
Protocol on stdout (one line each): "FROZEN" once frozen; "THAWED <reason> <window_ms>" after,
also when it thaws on its own (then it exits: a reader finds that line before the EOF).
Thaws on the first of: a line "THAW" on stdin; EOF on stdin (the SSH connection or opskit
died); TIMEOUT; SIGTERM/SIGHUP/SIGINT. A watchdog child, in its own session, also thaws when
this process dies in any way (even SIGKILL: its end of a pipe closes) or at the deadline.
<reason> is "asked" only when the freeze held until opskit's THAW: THAW was read before the
deadline (so the watchdog had not thawed) and this guard's own `fsfreeze -u` ended the freeze.
Otherwise it is why the freeze ended first: "timeout", "eof", "signal", or "already" (THAW
came in time but the filesystem was no longer frozen: something else thawed it, or the
watchdog did when THAW came just before the deadline: we cannot tell, so no vouching). Only
"asked" vouches that whatever opskit did before sending THAW happened inside the freeze.
Exit 0 after a clean freeze+thaw; 3 refused (/, not a mount point, not freezable); 4 freeze
failed; 5 thaw failed (the filesystem may still be frozen: say so loudly).
"""

import os
import select
import signal
import subprocess
import sys
import time


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def is_mount_point(path):
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == path for line in fh)


def run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    return proc.returncode, proc.stdout.strip()


def thaw(mount):
    """"thawed" (this call ended the freeze), "not frozen" (something else had), or "failed"."""
    code, out = run(["fsfreeze", "-u", mount])
    if code == 0:
        return "thawed"
    # "Invalid argument": not frozen (already thawed by the other side): fine for safety.
    return "not frozen" if "Invalid argument" in out else "failed"


def verdict(reason, thawed_by_us):
    """The reason to report: "asked" only if the freeze held until THAW (see the docstring)."""
    if reason == "asked" and thawed_by_us != "thawed":
        return "already"
    return reason


def release(pipe_w):
    """Tell the watchdog it is not needed. At the deadline it may have thawed and exited
    already: its end is closed (EPIPE), which must not stop us from saying THAWED."""
    try:
        os.write(pipe_w, b"done")
    except OSError:
        pass


def watchdog(mount, deadline, pipe_r):
    """In a child: wait for the guard to say "done" or die, or for the deadline; then thaw."""
    os.setsid()
    # Let go of the SSH channel's pipes: the session must end when the guard does.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    left = max(0.0, deadline - time.monotonic())
    ready, _, _ = select.select([pipe_r], [], [], left)
    if ready and os.read(pipe_r, 16) == b"done":
        os._exit(0)
    thaw(mount)
    os._exit(0)


def main():
    mount, timeout = os.path.realpath(sys.argv[1]), float(sys.argv[2])
    if mount == "/":
        say("REFUSED freezing / would block the whole host")
        return 3
    if not is_mount_point(mount):
        say(f"REFUSED {mount} is not a mount point")
        return 3
    os.sync()  # flush dirty pages first, so the freeze itself is short
    deadline = time.monotonic() + timeout
    pipe_r, pipe_w = os.pipe()
    if os.fork() == 0:
        os.close(pipe_w)
        watchdog(mount, deadline, pipe_r)
    os.close(pipe_r)
    stop = []
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, f: stop.append("signal"))
    code, out = run(["fsfreeze", "-f", mount])
    if code != 0:
        release(pipe_w)
        say(f"FAILED fsfreeze -f {mount}: {out}")
        return 4
    frozen_at = time.monotonic()
    say("FROZEN")
    reason = "timeout"
    while not stop:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([sys.stdin], [], [], min(left, 0.5))
        if ready:
            line = sys.stdin.readline()
            if not line:
                reason = "eof"
                break
            if line.strip() == "THAW":
                # Read at or after the deadline, the watchdog may have thawed already.
                reason = "asked" if time.monotonic() < deadline else "timeout"
                break
    if stop:
        reason = "signal"
    result = thaw(mount)
    window_ms = (time.monotonic() - frozen_at) * 1000
    ok = result != "failed"
    if ok:
        release(pipe_w)
    say(f"THAWED {verdict(reason, result)} {window_ms:.1f}" if ok else f"THAWFAILED {mount}")
    return 0 if ok else 5


if __name__ == "__main__":
    sys.exit(main())
