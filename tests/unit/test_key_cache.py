"""connection.KeyCachingClient: identity files parsed once per run, as paramiko loads them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import paramiko
import pytest

from opskit.transport.connection import KeyCachingClient


def _client() -> KeyCachingClient:
    client = KeyCachingClient()
    client._log = lambda level, msg: None  # paramiko logs through a transport; none here
    return client


def _keygen(path: Path) -> None:
    path.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def test_same_file_same_key_object_until_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    _keygen(path)
    a = _client()._key_from_filepath(str(path), paramiko.Ed25519Key, None)
    b = _client()._key_from_filepath(str(path), paramiko.Ed25519Key, None)
    assert a is b and a.get_name() == "ssh-ed25519"
    old = a.get_fingerprint()
    _keygen(path)  # a new key in the same place: read again
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    c = _client()._key_from_filepath(str(path), paramiko.Ed25519Key, None)
    assert c is not a and c.get_fingerprint() != old


def test_wrong_key_class_fails_each_time_with_a_fresh_exception(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    _keygen(path)
    seen = []
    for _ in range(2):
        with pytest.raises(paramiko.SSHException) as info:
            _client()._key_from_filepath(str(path), paramiko.RSAKey, None)
        seen.append(info.value)
    assert seen[0] is not seen[1] and str(seen[0]) == str(seen[1])


def test_missing_file_is_not_cached_as_a_key(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        _client()._key_from_filepath(str(tmp_path / "nope"), paramiko.Ed25519Key, None)
