"""The lab's non-root logins: ``ops`` (passwordless sudo) and ``dev`` (sudo wants its password).

Production hosts are often reached as an operator account that elevates with sudo, not as
root; these accounts let tests see what ``--sudo`` and the runbooks' ``sudo -n -u postgres``
really do. They exist only inside the lab hosts: each host bind-mounts its own copies of
``/etc/passwd``, ``/etc/group`` and ``/etc/sudoers`` (the machine's two account files plus
the lab's lines; a sudoers of the lab's own), so the machine's /etc never changes and ``down``
has no user to remove -- the copies go with the host dir. Their homes are host-private, under
``/etc/opskit-lab/home/<user>`` (with the lab's client key in ``.ssh/authorized_keys``: the
state dir itself may be unreadable to them, e.g. a 0700 test tmp dir).

``dev``'s sudo wants dev's password: ``sudo -n`` refuses it ("a password is required"), which
is what a sudo that wants a password looks like to opskit without one; with the password
(``--ask-sudo-pass``, ``--sudo-pass-file``) it runs. The password is made at the lab's first
``up`` and kept in ``<state dir>/dev-sudo-password`` (mode 0600: what ``--sudo-pass-file``
takes); its SHA-512 crypt is dev's password field in the host's passwd (pam_unix reads a hash
there when the field is not ``x``), so the machine's /etc/shadow is neither read nor copied.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import shlex
import subprocess

OPS_USER = "ops"  # sudo: NOPASSWD, any user (root, postgres, ...)
DEV_USER = "dev"  # sudo: only with its password (dev_password_path)
DEV_PASSWORD_FILE = "dev-sudo-password"  # in the state dir, 0600; its crypt beside it
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
# As Ubuntu's sudoers has it (a pty only for a command run from a terminal: opskit's are not).
Defaults use_pty
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


def dev_password_path(state_dir: pathlib.Path) -> pathlib.Path:
    """The file holding dev's sudo password (0600): tests pass it to --sudo-pass-file."""
    return state_dir / DEV_PASSWORD_FILE


def dev_password_hash(state_dir: pathlib.Path) -> str:
    """dev's password field: the crypt of the lab's dev password, both made on first use and
    kept (a lab brought up again keeps its password). The password mixes a random part with
    a space, quotes and a ``$``: whatever would break if it were ever joined into a command
    line breaks in the lab."""
    pw_file = dev_password_path(state_dir)
    hash_file = pw_file.with_name(f"{pw_file.name}.crypt")
    if not pw_file.exists() or not hash_file.exists():
        password = f"{secrets.token_urlsafe(12)} it's \"$HOME\";x"
        crypt = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n",
                               capture_output=True, text=True, check=True, timeout=30)
        _write_in_place(hash_file, crypt.stdout.strip() + "\n", 0o600)
        _write_in_place(pw_file, password + "\n", 0o600)
    return hash_file.read_text().strip()


def passwd_text(machine: str, uids: dict[str, int], dev_hash: str = "*") -> str:
    """The machine's passwd (minus any line of a lab user's name) plus the lab users.

    Password field ``*`` for ops: no password, and no shadow entry needed (sshd and PAM then
    never look in /etc/shadow, which stays the machine's); ``!`` would make sshd call it
    locked. dev's is the crypt of its password (``dev_hash``), read from here by pam_unix.
    """
    kept = [x for x in machine.splitlines() if x.split(":", 1)[0] not in USERS]
    fields = {OPS_USER: "*", DEV_USER: dev_hash}
    added = [f"{u}:{fields[u]}:{uids[u]}:{uids[u]}:opskit lab {u}:{home(u)}:/bin/bash"
             for u in USERS]
    return "\n".join([*kept, *added]) + "\n"


def group_text(machine: str, uids: dict[str, int]) -> str:
    kept = [x for x in machine.splitlines() if x.split(":", 1)[0] not in USERS]
    return "\n".join([*kept, *(f"{u}:x:{uids[u]}:" for u in USERS)]) + "\n"


def prepare(host_dir: pathlib.Path, authorized_keys: str, dev_hash: str = "*") -> None:
    """Write the host's account files and homes (every ``up``: they follow the machine's);
    ``dev_hash``: dev's password field (:func:`dev_password_hash`)."""
    uids = ids()
    adir = accounts_dir(host_dir)
    adir.mkdir(mode=0o755, exist_ok=True)
    _write_in_place(adir / "passwd", passwd_text(pathlib.Path("/etc/passwd").read_text(), uids,
                                                 dev_hash), 0o644)
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
