"""Fixtures for tests against the real lab fleet (root, real sshd in namespaces).

* ``lab`` (session): a 13-host lab (both PostgreSQL clusters, two nginx) on this worker's net
  and port (tests/lab/worker.py: 127.10.0.x port 2322 for the first) in a tmp state dir,
  inventory at ``<tmp>/lab.yml``; yields its LabStatus; ``down`` at session end.
  A developer's own lab (port 2222, /var/lib/opskit-lab) is never touched.
* ``lab_params`` (session): the keyword arguments of that ``up``.
* ``lab_restore`` (function): a callable that brings every lab host back (``up`` again, so
  only dead hosts restart); it also runs after the test if a host was left dead.
* ``lab_ssh`` (function): ``lab_ssh(host_name, command) -> CompletedProcess`` over the
  system ssh client with the lab's key and strict known_hosts checking.
* (autouse, session) OPSKIT_JOURNAL and OPSKIT_LOCK_DIR point into the session's tmp dir.

Not root → every lab test fails with "lab tests need root" (never skipped, never exits).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Callable, Iterator

import pytest
import worker

import opskit.lab as labmod
from opskit.lab import LabStatus

LAB_HOSTS = 13  # the default lab: 11 and 12 are the second PostgreSQL cluster, 13 lb2


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (they start sshd in namespaces): run them as root")


@pytest.fixture(autouse=True)
def _lab_tests_need_root() -> None:
    _need_root()


@pytest.fixture(scope="session", autouse=True)
def _own_journal_and_locks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session's journal and lock dir, not the operator's ~/.local/state/opskit: no test
    reads entries another run wrote or waits on a lock another one holds (tests that look at
    the journal still point OPSKIT_JOURNAL at their own file)."""
    base = tmp_path_factory.mktemp("opskit-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSKIT_JOURNAL", str(base / "journal.jsonl"))
        mp.setenv("OPSKIT_LOCK_DIR", str(base / "locks"))
        yield


@pytest.fixture(scope="session")
def lab_params(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Keyword arguments of the session lab's ``up`` (hosts, port, state_dir, inventory_path)."""
    base = tmp_path_factory.mktemp("lab")
    return {
        "hosts": LAB_HOSTS,
        "port": worker.PORT,
        "net": worker.NET,
        "state_dir": base / "state",
        "inventory_path": base / "lab.yml",
    }


@pytest.fixture(scope="session")
def lab(lab_params: dict[str, object]) -> Iterator[LabStatus]:
    _need_root()
    try:
        yield labmod.up(**lab_params)  # type: ignore[arg-type]
    finally:
        labmod.down(state_dir=lab_params["state_dir"])  # type: ignore[arg-type]


@pytest.fixture
def lab_restore(lab: LabStatus, lab_params: dict[str, object]) -> Iterator[Callable[[], LabStatus]]:
    def restore() -> LabStatus:
        return labmod.up(**lab_params)  # type: ignore[arg-type]

    yield restore
    if not labmod.status(state_dir=lab.state_dir).running:
        restore()


def ssh_argv(status: LabStatus, host_name: str, command: str) -> list[str]:
    host = status.host(host_name)
    state = pathlib.Path(status.state_dir)
    return [
        "ssh",
        "-i", str(state / "id_ed25519"),
        "-o", f"UserKnownHostsFile={state / 'known_hosts'}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "-p", str(host.port),
        f"root@{host.address}",
        command,
    ]  # fmt: skip


@pytest.fixture
def lab_ssh(lab: LabStatus) -> Callable[[str, str], subprocess.CompletedProcess[str]]:
    def run(host_name: str, command: str) -> subprocess.CompletedProcess[str]:
        argv = ssh_argv(lab, host_name, command)
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )

    return run
