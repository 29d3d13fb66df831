"""One lab host = one ``sshd -D`` in its own mount + UTS namespace on 127.10.0.N.

The launch chain is ``setsid -f unshare --mount --uts --propagation private -- sh -ec SCRIPT``:
``setsid -f`` forks and returns at once, so sshd is an orphan in its own session (no zombie
or fd of ours), and unshare/sh ``exec`` without forking, so the pid the script writes
(``$$``) *is* the sshd pid. The script bind-mounts the host's private dirs and its own
account files (the ops and dev users, accounts.py), sets the hostname and execs sshd. A
host whose sshd died while other processes still live in its namespace gets its new sshd
started in that same namespace (``nsenter``), so services survive.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence

from opskit.errors import LabError
from opskit.lab import accounts, keys, procs
from opskit.lab.state import HostRecord
from opskit.runner import wait

# (dir under the host's state dir, mount point inside the host). /var/lib/opskit: the
# cluster lease's lock dir (runner/lease.py) must be each host's own, as on real hosts.
MOUNTS = (("srv", "/srv"), ("data", "/data"), ("etc", "/etc/opskit-lab"),
          ("var-opskit", "/var/lib/opskit"))
ROOT_BASHRC = "root.bashrc"  # bind-mounted over /root/.bashrc in the host's namespace
STOCK_BASHRC = "# ~/.bashrc of a lab host: Debian's stock root .bashrc sets nothing.\n"
TOOLS = ("ssh-keygen", "unshare", "nsenter", "setsid", "mount", "hostname")
PRIVSEP_DIR = "/run/sshd"
PROBE_IDENT = (
    b"SSH-2.0-opskit-lab-probe\r\n"  # sshd refuses to start without its privilege-separation dir
)


def host_dir(state_dir: pathlib.Path, name: str) -> pathlib.Path:
    return state_dir / "hosts" / name


def config_path(state_dir: pathlib.Path, name: str) -> pathlib.Path:
    return host_dir(state_dir, name) / "sshd_config"


def log_path(state_dir: pathlib.Path, name: str) -> pathlib.Path:
    return host_dir(state_dir, name) / "sshd.log"


def sshd_binary() -> str:
    # sshd re-execs itself per connection and insists on an absolute path.
    found = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise LabError("sshd not found", hint="apt-get install -y openssh-server")
    return os.path.abspath(found)


def check_tools() -> None:
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        raise LabError(
            f"the lab needs {', '.join(missing)}",
            hint="apt-get install -y openssh-server openssh-client util-linux",
        )
    sshd_binary()


def prepare_system() -> None:
    """Directories the root filesystem must have: sshd's privsep dir and the mount points.

    The mount points stay as empty directories after ``down``; each host mounts over them
    privately, so the root namespace never sees a host's files there.
    """
    for path in (PRIVSEP_DIR, *(point for _, point in MOUNTS)):
        os.makedirs(path, mode=0o755, exist_ok=True)


def render_sshd_config(state_dir: pathlib.Path, rec: HostRecord) -> str:
    hdir = host_dir(state_dir, rec.name)
    lines = [
        f"# Written by `opskit lab up` for {rec.name}; regenerated on every up.",
        f"ListenAddress {rec.address}:{rec.port}",
        f"HostKey {keys.host_key(state_dir, rec.name)}",
        f"PidFile {hdir / 'sshd.pid'}",
        # Our own authorized_keys in the state dir: /root/.ssh is never touched.
        f"AuthorizedKeysFile {keys.authorized_keys(state_dir)}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        # State dirs may sit under world-writable /tmp (tests), which StrictModes rejects.
        "StrictModes no",
        "MaxStartups 200",
        "MaxSessions 50",
        "LogLevel ERROR",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp internal-sftp",  # Fabric's put()/get() need sftp
        *accounts.sshd_config_lines(),  # a Match block: must stay last
    ]
    return "\n".join(lines) + "\n"


def prepare_host(state_dir: pathlib.Path, rec: HostRecord) -> bool:
    """Create the host's dirs, marker and sshd_config. True if the config changed."""
    hdir = host_dir(state_dir, rec.name)
    for sub, _ in MOUNTS:
        (hdir / sub).mkdir(parents=True, exist_ok=True, mode=0o755)
    (hdir / "etc" / procs.HOST_MARKER).write_text(rec.host_id + "\n")
    (hdir / ROOT_BASHRC).write_text(STOCK_BASHRC)
    accounts.prepare(hdir, keys.authorized_keys(state_dir).read_text(),
                     accounts.dev_password_hash(state_dir))
    cfg = config_path(state_dir, rec.name)
    text = render_sshd_config(state_dir, rec)
    old = cfg.read_text() if cfg.exists() else None
    if old != text:
        cfg.write_text(text)
    return old != text


def _fresh_namespace_script(state_dir: pathlib.Path, rec: HostRecord) -> list[str]:
    hdir = host_dir(state_dir, rec.name)
    q = shlex.quote
    mounts = [f"mount --bind {q(str(hdir / sub))} {q(point)}" for sub, point in MOUNTS]
    # Debian's bash sources ~/.bashrc for every command run over SSH; the operator's own
    # (here: pyenv init, ~0.2 CPU-s per command) must not make every lab step that slow.
    mounts.append(f"if [ -f /root/.bashrc ]; then mount --bind {q(str(hdir / ROOT_BASHRC))} "
                  "/root/.bashrc; fi")
    return [*mounts, *accounts.mount_script(hdir), f"hostname {q(rec.name)}"]


# Mounts added to MOUNTS after labs were already running: bound when an sshd rejoins.
LATE_MOUNTS = (("var-opskit", "/var/lib/opskit"),)


def _late_mounts(hdir: pathlib.Path) -> list[str]:
    q = shlex.quote
    return [f"if ! [ {q(point)} -ef {q(str(hdir / sub))} ]; then "
            f"mount --bind {q(str(hdir / sub))} {q(point)}; fi" for sub, point in LATE_MOUNTS]


def launch(state_dir: pathlib.Path, rec: HostRecord, *, join_pid: int | None = None) -> None:
    """Start the host's sshd, detached; its pid appears in ``launch.pid`` (see wait_ready).

    ``join_pid``: a live process of the host's existing namespace to start sshd in;
    None starts a fresh namespace with the bind mounts and hostname.
    """
    hdir = host_dir(state_dir, rec.name)
    for stale in ("launch.pid", "sshd.pid"):
        (hdir / stale).unlink(missing_ok=True)
    q = shlex.quote
    cfg = config_path(state_dir, rec.name)
    steps = [f"echo $$ > {q(str(hdir / 'launch.pid'))}"]
    if join_pid is None:
        steps += _fresh_namespace_script(state_dir, rec)
        enter = ["unshare", "--mount", "--uts", "--propagation", "private"]
    else:
        # A namespace made before the lab had its own accounts (or lock dir) gets them now.
        steps += accounts.mount_script(hdir)
        steps += _late_mounts(hdir)
        enter = ["nsenter", "-t", str(join_pid), "-m", "-u"]
    # -e: log to stderr (our log file); there may be no syslog daemon on a lab machine.
    steps.append(f"exec {q(sshd_binary())} -D -e -f {q(str(cfg))}")
    argv = ["setsid", "-f", *enter, "--", "sh", "-ec", "\n".join(steps), f"lab-{rec.name}"]
    with open(log_path(state_dir, rec.name), "ab") as log:
        starter = subprocess.Popen(  # returns at once: `setsid -f` forks and exits
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
            start_new_session=True,
        )
    if starter.wait(timeout=10) != 0:
        raise LabError(f"could not launch sshd of {rec.name}", hint=_log_hint(state_dir, rec.name))


def _ready_pid(state_dir: pathlib.Path, name: str) -> tuple[int | None, bool]:
    """(launch pid, listening): sshd writes its PidFile only once it has bound its address."""
    hdir = host_dir(state_dir, name)
    pid = procs.read_pid_file(hdir / "launch.pid")
    return pid, pid is not None and procs.read_pid_file(hdir / "sshd.pid") == pid


def wait_ready(state_dir: pathlib.Path, recs: Sequence[HostRecord], timeout: float) -> None:
    """Wait until every launched sshd listens and answers; fill in pid, mnt_ns, started_at.

    Fails fast when an sshd dies (e.g. address in use), with its log as the hint.
    """
    pending = {rec.name: rec for rec in recs}

    def probe() -> tuple[bool, str]:
        for name, rec in list(pending.items()):
            pid, listening = _ready_pid(state_dir, name)
            if pid is not None and not procs.alive(pid):
                raise LabError(f"sshd of {name} exited at start", hint=_log_hint(state_dir, name))
            if listening and answering(rec.address, rec.port):
                rec.pid, rec.mnt_ns, rec.started_at = pid, procs.mnt_ns(pid), time.time()
                del pending[name]
        return not pending, ", ".join(sorted(pending))

    try:
        wait.until(probe, what="every lab sshd to answer", timeout=timeout, interval=0.02)
    except wait.WaitTimedOut as exc:
        raise LabError(
            f"lab hosts did not answer within {timeout:.0f} s: {exc.seen}",
            hint=_log_hint(state_dir, next(iter(pending))),
        ) from None


def _log_hint(state_dir: pathlib.Path, name: str) -> str:
    path = log_path(state_dir, name)
    try:
        tail = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        tail = []
    last = f": {tail[-1]}" if tail else ""
    return f"see {path}{last} (another lab on the same port? try `opskit lab down` or --port)"


def answering(address: str, port: int, timeout: float = 1.0) -> bool:
    """True if ``address:port`` accepts a TCP connection and sends an SSH banner in time."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            data = b""
            while b"\n" not in data and len(data) < 256:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                sock.settimeout(left)
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"SSH-"):
                # Identify back before closing: sshd then logs the hang-up at INFO (below our
                # LogLevel ERROR) instead of an error line per probe in sshd.log.
                sock.sendall(PROBE_IDENT)
    except OSError:
        return False
    return data.startswith(b"SSH-")
