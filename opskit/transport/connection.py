"""Open one connection to an inventory host: Fabric over SSH, or Invoke locally.

Fabric's default is to trust any host key (its auto-add policy) and not to read known_hosts
at all.
opskit reads the user's and the system's known_hosts, ssh_config's UserKnownHostsFile and the
inventory's ``opskit_known_hosts``, and rejects unknown keys unless the caller opts out.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection
from invoke import Context

from opskit.inventory import Host
from opskit.transport import tcp
from opskit.transport.quick_runner import QuickRemote

SYSTEM_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "~/.ssh/known_hosts")


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach hosts; shared by every host of one operation."""

    connect_timeout: float = 10.0
    # Unsafe: accept any host key. Only set by an explicit command-line opt-out.
    insecure_host_keys: bool = False
    ssh_config_path: str | None = None


class UnknownHostKey(paramiko.SSHException):
    """The host's key is not in any known_hosts file we read."""


class _AcceptAnyUnsafe(paramiko.MissingHostKeyPolicy):
    """Only behind --insecure-accept-unknown-host-keys: take any key, never save it."""

    def missing_host_key(self, client, hostname, key):  # type: ignore[no-untyped-def]
        client.get_host_keys().add(hostname, key.get_name(), key)


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):  # type: ignore[no-untyped-def]
        raise UnknownHostKey(
            f"host key for {hostname} ({key.get_name()} {key.fingerprint}) is not in known_hosts"
        )


def _known_hosts_files(extra: list[str]) -> list[Path]:
    files = [Path(p).expanduser() for p in (*SYSTEM_KNOWN_HOSTS, *extra)]
    return [f for f in files if f.is_file()]


def _file_id(path: str) -> tuple[int, int] | None:
    """(mtime, size) of a file, None if it is missing: the key of our parse-once caches."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


_PARSED: dict[tuple[str, tuple[int, int] | None], paramiko.HostKeys] = {}
_PARSED_LOCK = threading.Lock()


def _parsed(path: Path) -> paramiko.HostKeys:
    """A known_hosts file parsed once per run (keyed by path, mtime and size).

    Parsing builds a key object per line: re-reading a 200-line file for each of 200
    connections cost more client CPU than the handshakes (200 lab hosts, `exec -- true`:
    14.1 s and 12.5 client CPU-s before, 5.0 s and 3.1 CPU-s after).
    """
    key = (str(path), _file_id(str(path)))
    with _PARSED_LOCK:
        hk = _PARSED.get(key)
        if hk is None:
            hk = _PARSED[key] = paramiko.HostKeys(str(path))
        return hk


def _load_known_hosts(client: paramiko.SSHClient, files: list[Path]) -> None:
    # The client's own HostKeys gets the parsed entries (a list copy, no re-parsing); paramiko
    # only reads them. Entries are shared objects, never modified by the check.
    own = client.get_host_keys()
    for path in files:
        own._entries.extend(_parsed(path)._entries)


def _harden(conn: Connection, extra_known_hosts: list[str], insecure: bool) -> None:
    """Replace Fabric's auto-add policy on one connection (and its gateways)."""
    node: object = conn
    while isinstance(node, Connection):
        client = node.client
        if insecure:
            client.set_missing_host_key_policy(_AcceptAnyUnsafe())
        else:
            _load_known_hosts(client, _known_hosts_files(extra_known_hosts))
            client.set_missing_host_key_policy(_RejectUnknown())
        node = node.gateway


_KEYS: dict[tuple[object, ...], paramiko.PKey | paramiko.SSHException] = {}
_KEYS_LOCK = threading.Lock()


class KeyCachingClient(paramiko.SSHClient):
    """paramiko's SSHClient, loading each identity file once per run (while unchanged).

    For every connection paramiko parses each identity file once per key class it tries
    (RSA, then ECDSA, then Ed25519 for an ed25519 key): about 0.6 ms of client CPU per host.
    The loaded key (with its ``-cert.pub`` certificate, as paramiko loads it) is only read
    afterwards (signing), so connections share it. Passphrase-protected keys are not cached.
    """

    def _key_from_filepath(self, filename, klass, password):  # type: ignore[no-untyped-def]
        if password is not None:
            return super()._key_from_filepath(filename, klass, password)
        base = filename.removesuffix("-cert.pub")
        key = (filename, klass, _file_id(base), _file_id(base + "-cert.pub"))
        with _KEYS_LOCK:
            found = _KEYS.get(key)
        if found is None:
            try:
                found = super()._key_from_filepath(filename, klass, password)
            except paramiko.SSHException as exc:  # not this class: paramiko tries the next
                found = exc
            with _KEYS_LOCK:
                _KEYS[key] = found
        if isinstance(found, paramiko.SSHException):
            raise type(found)(*found.args)  # a fresh exception per connection
        return found


class QuickConnection(Connection):
    """Fabric's Connection over opskit.transport.tcp's socket, with identity files parsed once.

    Its ProxyJump hops are QuickConnections too: through a bastion with Fabric's own
    sockets every command took 88 ms and a connection 220 ms in the lab, the 40 ms stalls
    (opskit/transport/tcp.py) paid on both legs. The client's host-key policy is left to the caller
    (CheckedConnection sets it on every hop); paramiko's default rejects unknown keys.
    """

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        # Fabric truncates connect_timeout to an int: 0.5 became 0, a non-blocking socket
        # (every host "unreachable: BlockingIOError"). Keep the float we were given.
        given = kwargs.get("connect_timeout")
        if given is not None:
            self.connect_timeout = float(given)
        self.client = KeyCachingClient()

    def get_gateway(self):  # type: ignore[no-untyped-def]
        """Fabric's own ProxyJump chain (fabric.Connection.get_gateway), built of our class."""
        if "proxyjump" not in self.ssh_config:
            return super().get_gateway()  # ProxyCommand or the config's gateway, as Fabric
        previous = None
        for hop in reversed(self.ssh_config["proxyjump"].split(",")):
            if self.derive_shorthand(hop)["host"] == self.host:
                return None  # the jump host itself: no gateway, as Fabric
            kwargs = {"config": self.config.clone()}
            if previous is not None:
                kwargs["gateway"] = previous
            previous = QuickConnection(hop, **kwargs)
        return previous

    def open(self):  # type: ignore[no-untyped-def]
        """Connect over our own TCP socket (opskit.transport.tcp: no Nagle/delayed-ACK stalls).

        Through a gateway the socket is a channel of the hop's connection (itself opened on
        our socket); a ProxyCommand brings its own. Fabric opens those as before.
        """
        if self.is_connected or self.gateway or "sock" in self.connect_kwargs:
            return super().open()
        sock = tcp.connect(self.host, self.port, self.connect_timeout)
        plain = self.connect_kwargs
        self.connect_kwargs = {**plain, "sock": sock}
        try:
            return super().open()
        except BaseException:
            sock.close()
            raise
        finally:
            self.connect_kwargs = plain  # a later re-open gets a fresh socket


class CheckedConnection(QuickConnection):
    """A QuickConnection whose host keys (and its ProxyJump hops') are checked."""

    def __init__(self, *args, known_hosts: list[str], insecure: bool, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        user_files = self.ssh_config.get("userknownhostsfile", "").split()
        _harden(self, [*user_files, *known_hosts], insecure)


_SSH_CONFIGS: dict[tuple[object, ...], paramiko.SSHConfig] = {}
_SSH_CONFIGS_LOCK = threading.Lock()
# The files Fabric reads when no explicit path is given.
SSH_CONFIG_FILES = ("/etc/ssh/ssh_config", "~/.ssh/config")


def _ssh_config_key(explicit: str | None) -> tuple[object, ...]:
    """Which ssh_config files a Config would read now, with their mtimes and sizes."""
    key: list[object] = []
    for name in (explicit,) if explicit else SSH_CONFIG_FILES:
        path = os.path.expanduser(name)
        key.append((path, _file_id(path)))
    return tuple(key)


def _fabric_config(options: ConnectOptions) -> Config:
    """A Fabric config per connection, over ssh_config files parsed once while unchanged.

    Parsing ssh_config files was half of the Config's cost (about 0.25 ms per host);
    paramiko's SSHConfig is only read (``lookup``) once parsed.
    """
    overrides = {"run": {"in_stream": False}, "runners": {"remote": QuickRemote}}
    key = _ssh_config_key(options.ssh_config_path)
    with _SSH_CONFIGS_LOCK:
        parsed = _SSH_CONFIGS.get(key)
        if parsed is None:
            if options.ssh_config_path:
                first = Config(overrides=overrides, runtime_ssh_path=options.ssh_config_path)
            else:
                first = Config(overrides=overrides)
            _SSH_CONFIGS[key] = first.base_ssh_config
            return first
    return Config(overrides=overrides, ssh_config=parsed)


def connect(host: Host, options: ConnectOptions) -> Connection | Context:
    """Return an open connection for ``host``; raises on failure to connect."""
    if host.connection == "local":
        return Context()
    connect_kwargs: dict[str, object] = {}
    if host.key_file:
        connect_kwargs["key_filename"] = [os.path.expanduser(host.key_file)]
    conn = CheckedConnection(
        host.address,
        user=host.user,
        port=host.port,
        config=_fabric_config(options),
        connect_timeout=options.connect_timeout,
        connect_kwargs=connect_kwargs,
        known_hosts=host.known_hosts_files,
        insecure=options.insecure_host_keys,
    )
    conn.open()
    return conn


def describe_connect_error(exc: BaseException) -> tuple[str, str | None]:
    """One line saying why a host could not be reached, and a hint."""
    if isinstance(exc, UnknownHostKey):
        return str(exc), (
            "verify the key and add it (ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts), "
            "or set opskit_known_hosts in the inventory"
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return (
            f"host key for {exc.hostname} CHANGED (got {exc.key.get_name()} "
            f"{exc.key.fingerprint}) -- possible man-in-the-middle",
            "if the host was rebuilt, remove the old key with ssh-keygen -R HOST",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        hint = "check ansible_user and ansible_ssh_private_key_file"
        return f"authentication failed: {exc}", hint
    if isinstance(exc, (paramiko.ssh_exception.NoValidConnectionsError,
                        ConnectionRefusedError)):
        return "connection refused", "is sshd running on the host and the port right?"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "connect timed out", "is the host up? raise the timeout with --connect-timeout"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name: {exc}", "check ansible_host in the inventory"
    return f"{type(exc).__name__}: {exc}", None
