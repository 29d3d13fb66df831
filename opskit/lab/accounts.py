"""The lab's non-root logins: ``ops`` (passwordless sudo) and ``dev`` (sudo wants a password).

Production hosts are often reached as an operator account that elevates with sudo, not as
root; these accounts let tests see what ``--sudo`` and the runbooks' ``sudo -n -u postgres``
really do. They exist only inside the lab hosts: each host bind-mounts its own copies of
``/etc/passwd``, ``/etc/group`` and ``/etc/sudoers`` (the machine's two account files plus
the lab's lines; a sudoers of the lab's own), so the machine's /etc never changes and ``down``
has no user to remove -- the copies go with the host dir. Their homes are host-private, under
``/etc/opskit-lab/home/<user>`` (with the lab's client key in ``.ssh/authorized_keys``: the
state dir itself may be unreadable to them, e.g. a 0700 test tmp dir).

``dev`` has no password at all: sudo can only ever refuse it (``sudo -n``: "a password is
required"), which is what a sudo that wants a password looks like to opskit.
"""

from __future__ import annotations

import os
import pathlib
import shlex

OPS_USER = "ops"  # sudo: NOPASSWD, any user (root, postgres, ...)
DEV_USER = "dev"  # sudo: only with a password, which it does not have
USERS = (OPS_USER, DEV_USER)
FIRST_UID = 2722  # the first of a free uid/gid range on the machine (found, not assumed)
HOME_ROOT = "/etc/opskit-lab/home"  # in the host; <host dir>/etc/home on our side
# (file in <host dir>/accounts, bind-mounted over) -- sudoers only where sudo is installed.
BINDS = (("passwd", "/etc/passwd"), ("group", "/etc/group"), ("sudoers", "/etc/sudoers"))
SUDOERS = f"""\
# Written by `opskit lab up`: the sudo policy of a lab host (bind-mounted over /etc/sudoers).
Defaults env_reset
Defaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The host's name (its UTS name) is in no /etc/hosts: do not try to resolve it.
Defaults !fqdn
root ALL=(ALL:ALL) ALL
{OPS_USER} ALL=(ALL:ALL) NOPASSWD: ALL
{DEV_USER} ALL=(ALL:ALL) ALL
"""


def accounts_dir(host_dir: pathlib.Path) -> pathlib.Path:
    return host_dir / "accounts"


def home(user: str) -> str:
    return f"{HOME_ROOT}/{user}"


def ids(etc: pathlib.Path = pathlib.Path("/etc")) -> dict[str, int]:
    """uid (= gid) per lab user: the first free pair from FIRST_UID on, in the machine's own
    passwd and group, so no file of the lab ever belongs to a real account of the machine."""
    used = _ids(etc / "passwd", 2) | _ids(etc / "group", 2) | _ids(etc / "passwd", 3)
    found: dict[str, int] = {}
    uid = FIRST_UID
    for user in USERS:
        while uid in used:
            uid += 1
        found[user] = uid
        uid += 1
    return found


def _ids(path: pathlib.Path, field: int) -> set[int]:
    out = set()
    for line in path.read_text().splitlines():
        parts = line.split(":")
        if len(parts) > field and parts[field].isdigit():
            out.add(int(parts[field]))
    return out


def passwd_text(machine: str, uids: dict[str, int]) -> str:
    """The machine's passwd (minus any line of a lab user's name) plus the lab users.

    Password field ``*``: no password, and no shadow entry needed (sshd and PAM then never
    look in /etc/shadow, which stays the machine's); ``!`` would make sshd call it locked.
    """
    kept = [x for x in machine.splitlines() if x.split(":", 1)[0] not in USERS]
    added = [f"{u}:*:{uids[u]}:{uids[u]}:opskit lab {u}:{home(u)}:/bin/bash" for u in USERS]
    return "\n".join([*kept, *added]) + "\n"


def group_text(machine: str, uids: dict[str, int]) -> str:
    kept = [x for x in machine.splitlines() if x.split(":", 1)[0] not in USERS]
    return "\n".join([*kept, *(f"{u}:x:{uids[u]}:" for u in USERS)]) + "\n"


def prepare(host_dir: pathlib.Path, authorized_keys: str) -> None:
    """Write the host's account files and homes (every ``up``: they follow the machine's)."""
    uids = ids()
    adir = accounts_dir(host_dir)
    adir.mkdir(mode=0o755, exist_ok=True)
    _write_in_place(adir / "passwd", passwd_text(pathlib.Path("/etc/passwd").read_text(), uids),
                    0o644)
    _write_in_place(adir / "group", group_text(pathlib.Path("/etc/group").read_text(), uids),
                    0o644)
    # sudo insists on a root-owned sudoers that nobody may write.
    _write_in_place(adir / "sudoers", SUDOERS, 0o440)
    for user in USERS:
        ssh = host_dir / "etc" / "home" / user / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_in_place(ssh / "authorized_keys", authorized_keys, 0o600)
        for path in (ssh.parent, ssh, ssh / "authorized_keys"):
            os.chown(path, uids[user], uids[user])


def _write_in_place(path: pathlib.Path, text: str, mode: int) -> None:
    """Rewrite ``path`` keeping its inode: a running host's bind mount shows the new text
    (a rename would leave the mount on the old file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
    try:
        os.fchmod(fd, mode)
        data = text.encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def mount_script(host_dir: pathlib.Path) -> list[str]:
    """Shell lines (run inside the host's namespace) that bind the account files, each only
    once: a restarted sshd joins a namespace that may have them already (``-ef``: same file)."""
    q = shlex.quote
    lines = []
    for name, target in BINDS:
        src = q(str(accounts_dir(host_dir) / name))
        lines.append(f"if [ -e {target} ] && ! [ {target} -ef {src} ]; then "
                     f"mount --bind {src} {target}; fi")
    return lines


def sshd_config_lines() -> list[str]:
    """sshd_config's tail: the lab users' keys are in their host-private homes."""
    return [f"Match User {','.join(USERS)}",
            f"    AuthorizedKeysFile {HOME_ROOT}/%u/.ssh/authorized_keys"]
