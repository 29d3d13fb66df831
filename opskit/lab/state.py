"""Where the lab keeps its state: the state directory, ``state.json`` and a lock.

``state.json`` is the lab's memory of what ``up`` started (pid, mount-namespace inode,
address, port, start time per host; the moto server's pid and port), so ``down`` can stop
exactly that and nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from opskit.errors import LabError
from opskit.lab.layout import DEFAULT_NET

DEFAULT_STATE_DIR = "/var/lib/opskit-lab"
STATE_ENV = "OPSKIT_LAB_DIR"
STATE_FILE = "state.json"
STATE_VERSION = 1


def state_dir_from_env() -> pathlib.Path:
    """The state dir: ``$OPSKIT_LAB_DIR`` if set, else ``/var/lib/opskit-lab``."""
    return pathlib.Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR).absolute()


def resolve_state_dir(state_dir: pathlib.Path | str | None) -> pathlib.Path:
    # Absolute, because the path ends up in sshd configs and in /proc cmdlines we match on.
    if state_dir is None:
        return state_dir_from_env()
    return pathlib.Path(state_dir).absolute()


@dataclass
class HostRecord:
    """What ``up`` started for one host."""

    name: str
    index: int
    address: str
    port: int
    groups: list[str]
    host_id: str  # random marker written into the host's /etc/opskit-lab (see procs.ns_is_host)
    pid: int | None = None
    mnt_ns: int | None = None
    started_at: float | None = None


@dataclass
class AwsServerRecord:
    """The lab's moto server process (one per lab, on 127.0.0.1:port)."""

    pid: int | None
    port: int
    started_at: float | None = None


@dataclass
class LabState:
    port: int
    inventory_path: str | None = None
    net: int = DEFAULT_NET  # second octet of the hosts' addresses
    hosts: dict[str, HostRecord] = field(default_factory=dict)
    aws: AwsServerRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "port": self.port,
            "net": self.net,
            "inventory_path": self.inventory_path,
            "hosts": {name: asdict(rec) for name, rec in self.hosts.items()},
            "aws": asdict(self.aws) if self.aws else None,
        }


def state_path(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / STATE_FILE


def load_state(state_dir: pathlib.Path) -> LabState | None:
    """The recorded state, or None when there is no lab (or the file is unreadable junk)."""
    path = state_path(state_dir)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(
            f"cannot read lab state {path}: {exc}",
            hint=f"stop any lab processes by hand, then remove {path}",
        ) from exc
    hosts = {name: HostRecord(**rec) for name, rec in raw.get("hosts", {}).items()}
    aws = AwsServerRecord(**raw["aws"]) if raw.get("aws") else None  # absent in older files
    return LabState(
        port=raw["port"], inventory_path=raw.get("inventory_path"), hosts=hosts, aws=aws,
        net=raw.get("net", DEFAULT_NET),  # absent in older files: they all ran on 127.10
    )


def save_state(state_dir: pathlib.Path, state: LabState) -> None:
    # Write-then-rename so a crash never leaves a half-written state file behind.
    path = state_path(state_dir)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def remove_state(state_dir: pathlib.Path) -> bool:
    try:
        state_path(state_dir).unlink()
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def locked(state_dir: pathlib.Path) -> Iterator[None]:
    """Serialise up/down on one state dir (a CLI run while a test session works on it)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(state_dir / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
