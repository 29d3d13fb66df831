"""SSH keys of the lab: one ed25519 host key per host, one client key, known_hosts.

Keys live in the state dir and survive ``down`` (only host state is removed), so the
known_hosts entries stay valid across up/down and ``up`` only generates what is missing.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterable

from opskit.errors import LabError

CLIENT_KEY = "id_ed25519"
AUTHORIZED_KEYS = "authorized_keys"
KNOWN_HOSTS = "known_hosts"


def client_key(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / CLIENT_KEY


def host_key(state_dir: pathlib.Path, name: str) -> pathlib.Path:
    return state_dir / "keys" / f"{name}_ed25519"


def known_hosts(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / KNOWN_HOSTS


def authorized_keys(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / AUTHORIZED_KEYS


def ensure_keys(state_dir: pathlib.Path, names: Iterable[str]) -> list[pathlib.Path]:
    """Generate the client key and each host's key if missing, all ssh-keygens in parallel.

    Returns the keys that were generated.
    """
    (state_dir / "keys").mkdir(parents=True, exist_ok=True, mode=0o700)
    wanted = [client_key(state_dir)] + [host_key(state_dir, n) for n in names]
    missing = [k for k in wanted if not (k.exists() and k.with_suffix(".pub").exists())]
    procs = [(key, _start_keygen(key)) for key in missing]
    for key, proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise LabError(
                f"ssh-keygen failed for {key}: {err.strip()}",
                hint="check that openssh-client is installed and the state dir is writable",
            )
    return missing


def _start_keygen(key: pathlib.Path) -> subprocess.Popen[str]:
    # A half-written pair (crash mid-keygen) would make ssh-keygen prompt to overwrite: clear it.
    for path in (key, key.with_suffix(".pub")):
        path.unlink(missing_ok=True)
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"opskit-lab {key.stem}"]
    return subprocess.Popen(
        [*argv, "-f", os.fspath(key)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def public_key(key: pathlib.Path) -> str:
    """``type base64`` of a key pair's public half (comment dropped)."""
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    return f"{kind} {blob}"


def write_authorized_keys(state_dir: pathlib.Path) -> pathlib.Path:
    path = authorized_keys(state_dir)
    _write_private(path, public_key(client_key(state_dir)) + "\n")
    return path


def known_hosts_line(address: str, port: int, key: str) -> str:
    # OpenSSH writes non-22 ports as [host]:port; plain host for 22.
    target = address if port == 22 else f"[{address}]:{port}"
    return f"{target} {key}"


def write_known_hosts(
    state_dir: pathlib.Path, hosts: Iterable[tuple[str, str, int]]
) -> pathlib.Path:
    """known_hosts for ``(name, address, port)`` triples, regenerated whole each time."""
    lines = [
        known_hosts_line(address, port, public_key(host_key(state_dir, name)))
        for name, address, port in hosts
    ]
    path = known_hosts(state_dir)
    _write_private(path, "".join(line + "\n" for line in lines))
    return path


def _write_private(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
