"""The lab Redis's secrets: the passwords of group ``main`` and the TLS certificates of group
``tls`` (redis_service.py; docs/lab.md, "The Redis groups").

Made at the lab's first ``up`` and kept in the state dir (a later ``up`` keeps them, as it
keeps dev's sudo password, accounts.py):

* ``redis-default-password`` -- the default user's ``requirepass`` (and every main node's
  ``masterauth``: replicas authenticate to the master as the default user);
* ``redis-opskit-password`` -- the ACL user ``opskit``'s; the hosts get a copy in
  ``/etc/opskit-lab/redis/opskit.pass`` (what ``redis.auth.password_file`` names);
* ``redis-tls/`` -- the lab's CA (``ca.key``, ``ca.crt``) and one client certificate
  (``client.crt``, ``client.key``); each TLS host's server certificate (IP SAN = its
  address) is signed here when the host gets its files (:func:`server_cert`).

Files with a secret are 0600, root's. Passwords never reach a command line: redis-cli gets
them through REDISCLI_AUTH (:func:`auth_env`), redis-server through its config file.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import subprocess
import tempfile
from dataclasses import dataclass

DEFAULT_PASSWORD_FILE = "redis-default-password"
OPSKIT_PASSWORD_FILE = "redis-opskit-password"
TLS_DIR = "redis-tls"
DAYS = "3650"  # a lab CA outlives any lab
# A config of our own: the machine's openssl.cnf would add its v3_ca extensions (CA:TRUE)
# to every certificate req -x509 makes.
_OPENSSL_CNF = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]  # fast keys


@dataclass(frozen=True)
class Passwords:
    default: str  # requirepass, masterauth
    opskit: str  # the ACL user opskit's


def default_password_path(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / DEFAULT_PASSWORD_FILE


def opskit_password_path(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / OPSKIT_PASSWORD_FILE


def tls_dir(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / TLS_DIR


def ensure(state_dir: pathlib.Path) -> Passwords:
    """Make what is missing (passwords, CA, client certificate); return the passwords."""
    for path in (default_password_path(state_dir), opskit_password_path(state_dir)):
        if not path.exists():
            # URL-safe characters: a redis.conf word and an ACL rule (>PASS) need no quoting.
            _write_secret(path, secrets.token_urlsafe(24) + "\n")
    tls = tls_dir(state_dir)
    tls.mkdir(mode=0o700, exist_ok=True)
    if not (tls / "ca.crt").exists() or not (tls / "ca.key").exists():
        _openssl(tls, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=opskit lab Redis CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
        (tls / "client.crt").unlink(missing_ok=True)  # signed by the old CA, if any
    if not (tls / "client.crt").exists() or not (tls / "client.key").exists():
        _sign(tls, "client", "/CN=opskit", "clientAuth")
    return passwords(state_dir)


def passwords(state_dir: pathlib.Path) -> Passwords:
    """The passwords made by :func:`ensure` (``up`` made them)."""
    return Passwords(read(default_password_path(state_dir)), read(opskit_password_path(state_dir)))


def read(path: pathlib.Path) -> str:
    return path.read_text().rstrip("\n")


def auth_env(state_dir: pathlib.Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a redis-cli child that talks to group ``main`` as the default user:
    ``base`` (default: ours) plus REDISCLI_AUTH (the password stays off its argv)."""
    env = dict(os.environ if base is None else base)
    env["REDISCLI_AUTH"] = read(default_password_path(state_dir))
    return env


def server_cert(state_dir: pathlib.Path, name: str, address: str, out: pathlib.Path) -> None:
    """A server certificate for ``address`` (IP SAN), signed by the lab CA, written as
    ``out/server.crt`` and ``out/server.key``; it also serves as the replica's client
    certificate (tls-replication with tls-auth-clients), hence clientAuth too."""
    tls = tls_dir(state_dir)
    with tempfile.TemporaryDirectory(dir=tls) as tmp:
        work = pathlib.Path(tmp)
        _sign(tls, "server", f"/CN={name}", "serverAuth,clientAuth",
              f"subjectAltName=IP:{address}", into=work)  # fmt: skip
        for part in ("server.crt", "server.key"):
            os.replace(work / part, out / part)


def _sign(tls: pathlib.Path, stem: str, subject: str, usage: str, *extra: str,
          into: pathlib.Path | None = None) -> None:  # fmt: skip
    where = into or tls
    args = ["-keyout", str(where / f"{stem}.key"), "-out", str(where / f"{stem}.crt"),
            "-subj", subject, "-CA", str(tls / "ca.crt"), "-CAkey", str(tls / "ca.key"),
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", f"extendedKeyUsage={usage}"]  # fmt: skip
    for ext in extra:
        args += ["-addext", ext]
    _openssl(tls, *args)


def _openssl(tls: pathlib.Path, *args: str) -> None:
    cnf = tls / "openssl.cnf"
    if not cnf.exists():
        cnf.write_text(_OPENSSL_CNF)
    # openssl writes private keys 0600 itself (no umask games: up runs hosts in threads).
    subprocess.run(["openssl", "req", "-config", str(cnf), "-x509", *_EC, "-days", DAYS, *args],
                   cwd=tls, check=True, capture_output=True, text=True, timeout=30)


def _write_secret(path: pathlib.Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
