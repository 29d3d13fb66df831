"""`opskit exec` against the real lab fleet: real sshd hosts, each in its own namespaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import worker
import yaml
from helpers import stop_sshd

from opskit import lab as lab_mod

ROOT = Path(__file__).resolve().parents[2]


def opskit(*args: str, home: Path | None = None, timeout: float = 120):
    env = dict(os.environ)
    if home is not None:
        env["HOME"] = str(home)  # an empty ~/.ssh: only the inventory's known_hosts count
    return subprocess.run([sys.executable, "-m", "opskit", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture()
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "journal.jsonl"
    monkeypatch.setenv("OPSKIT_JOURNAL", str(path))
    return path


def exec_json(inv: Path, *args: str, home: Path | None = None) -> tuple[int, dict]:
    proc = opskit("-i", str(inv), "exec", "--json", "--yes", *args, home=home)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON: {proc.stdout!r} {proc.stderr!r}") from None


def test_hostname_on_every_lab_host_each_its_own_namespace(lab, journal: Path) -> None:
    inv = lab.inventory_path
    proc = opskit("-i", str(inv), "exec", "--yes", "--", "hostname")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code, doc = exec_json(inv, "--", "hostname")
    assert code == 0
    n = len(lab.hosts)
    assert n >= 8
    assert doc["summary"]["ok"] == n and len(doc["hosts"]) == n
    names = {h["host"]: h["stdout"].strip() for h in doc["hosts"]}
    assert len(set(names.values())) == n
    assert all(inv_name == hostname for inv_name, hostname in names.items())
    entry = json.loads(journal.read_text().splitlines()[-1])
    assert entry["command"] == "exec" and len(entry["hosts"]) == n


def test_srv_is_private_to_each_host(lab) -> None:
    inv = lab.inventory_path
    first, second = lab.hosts[0].name, lab.hosts[1].name
    code, _ = exec_json(inv, "-l", first, "--", "echo secret > /srv/only-here")
    assert code == 0
    code, doc = exec_json(inv, "-l", f"{first}:{second}", "--",
                          "test -e /srv/only-here && echo present || echo absent")
    seen = {h["host"]: h["stdout"].strip() for h in doc["hosts"]}
    assert seen == {first: "present", second: "absent"}
    assert not Path("/srv/only-here").exists()
    exec_json(inv, "-l", first, "--", "rm -f /srv/only-here")


def test_killed_sshd_is_unreachable_others_ok_exit_3(lab) -> None:
    victim = lab.hosts[2].name
    stop_sshd(lab, victim)
    try:
        code, doc = exec_json(lab.inventory_path, "--connect-timeout", "3", "--", "true")
        assert code == 3
        status = {h["host"]: h["status"] for h in doc["hosts"]}
        assert status.pop(victim) == "unreachable"
        assert set(status.values()) == {"ok"} and len(status) == len(lab.hosts) - 1
        assert "refused" in next(h for h in doc["hosts"] if h["host"] == victim)["error"]
    finally:
        lab_mod.up(len(lab.hosts), port=lab.port, state_dir=lab.state_dir,
                   inventory_path=lab.inventory_path)


def test_failing_host_reports_stderr_and_exit_status(lab) -> None:
    bad = lab.hosts[1].name
    cmd = f'if [ "$(hostname)" = {bad} ]; then echo "disk on fire" >&2; exit 42; fi; echo fine'
    code, doc = exec_json(lab.inventory_path, "--", cmd)
    assert code == 2
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert by_host[bad]["status"] == "failed" and by_host[bad]["exit_status"] == 42
    assert "disk on fire" in by_host[bad]["stderr"]
    assert sum(h["status"] == "ok" for h in doc["hosts"]) == len(lab.hosts) - 1


def test_forks_2_never_more_than_2_in_flight(lab) -> None:
    # Each host reports when its command started and ended, by the one shared clock.
    code, doc = exec_json(lab.inventory_path, "-f", "2", "--",
                          "date +%s.%N; sleep 0.3; date +%s.%N")
    assert code == 0
    spans = [tuple(map(float, h["stdout"].split())) for h in doc["hosts"]]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2


def test_unknown_host_key_refused_then_opt_out(lab, tmp_path: Path) -> None:
    data = yaml.safe_load(lab.inventory_path.read_text())
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    data["all"]["vars"]["opskit_known_hosts"] = str(empty)
    inv = tmp_path / "lab-nokeys.yml"
    inv.write_text(yaml.safe_dump(data))
    target = lab.hosts[0].name
    home = tmp_path / "home"
    home.mkdir()
    # The lab's ssh args (-o UserKnownHostsFile=its known_hosts) are read too: accepted.
    assert "UserKnownHostsFile" in data["all"]["vars"]["ansible_ssh_common_args"]
    code, doc = exec_json(inv, "-l", target, "--", "hostname", home=home)
    assert code == 0 and doc["hosts"][0]["stdout"].strip() == target
    # With neither file knowing the host: refused.
    del data["all"]["vars"]["ansible_ssh_common_args"]
    inv.write_text(yaml.safe_dump(data))
    code, doc = exec_json(inv, "-l", target, "--", "touch /srv/should-not-exist", home=home)
    assert code == 3
    host = doc["hosts"][0]
    assert host["status"] == "unreachable" and "not in known_hosts" in host["error"]
    assert "ssh-keyscan" in host["hint"]
    code, doc = exec_json(inv, "-l", target, "--insecure-accept-unknown-host-keys", "--",
                          "hostname", home=home)
    assert code == 0 and doc["hosts"][0]["stdout"].strip() == target
    # The refused run never ran its command.
    code, doc = exec_json(lab.inventory_path, "-l", target, "--",
                          "test -e /srv/should-not-exist && echo yes || echo no")
    assert doc["hosts"][0]["stdout"].strip() == "no"


def test_changed_host_key_is_refused(lab, tmp_path: Path) -> None:
    # known_hosts claims host 1's address has host 2's key: a man in the middle.
    lines = Path(lab.state_dir, "known_hosts").read_text().splitlines()
    first = f"[{lab.hosts[0].address}]:{lab.port}"
    second = f"[{lab.hosts[1].address}]:{lab.port}"
    other_key = next(ln for ln in lines if ln.startswith(second + " ")).split(" ", 1)[1]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{first} {other_key}\n")
    data = yaml.safe_load(lab.inventory_path.read_text())
    data["all"]["vars"]["opskit_known_hosts"] = str(forged)
    inv = tmp_path / "forged.yml"
    inv.write_text(yaml.safe_dump(data))
    home = tmp_path / "home"
    home.mkdir()
    code, doc = exec_json(inv, "-l", lab.hosts[0].name, "--", "true", home=home)
    assert code == 3 and "CHANGED" in doc["hosts"][0]["error"]


def test_metacharacters_in_names_and_vars_never_reach_a_shell(lab, tmp_path: Path) -> None:
    host = lab.hosts[0]
    evil = "x;touch /srv/pwned-1;$(touch /srv/pwned-2)"
    data = {"all": {
        "vars": yaml.safe_load(lab.inventory_path.read_text())["all"]["vars"],
        "hosts": {evil: {"ansible_host": host.address}},
    }}
    inv = tmp_path / "evil.yml"
    inv.write_text(yaml.safe_dump(data))
    code, doc = exec_json(inv, "-l", "x*", "--", 'printf %s "$OPSKIT_HOST"')
    assert code == 0 and doc["hosts"][0]["stdout"] == evil
    code, doc = exec_json(lab.inventory_path, "-l", host.name, "--", "ls /srv")
    assert "pwned" not in doc["hosts"][0]["stdout"]


def test_fabfile_task_uses_the_same_runner(lab, journal: Path) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "fab"), "exec", "--inventory", str(lab.inventory_path),
         "--limit", "app", "--yes", "--command", "hostname"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    apps = [h.name for h in lab.hosts if "app" in h.groups]
    for name in apps:
        assert f"{name} | ok" in proc.stdout
    entry = json.loads(journal.read_text().splitlines()[-1])
    assert (entry["command"], entry["via"]) == ("exec", "fab")


def _ssh_config_home(tmp_path: Path, lab, body: str) -> tuple[Path, Path]:
    """A HOME whose ~/.ssh/config is ``body``, and an inventory without a key file var."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(body)
    data = yaml.safe_load(lab.inventory_path.read_text())
    data["all"]["vars"].pop("ansible_ssh_private_key_file")
    inv = tmp_path / "nokey.yml"
    inv.write_text(yaml.safe_dump(data))
    return home, inv


def test_ssh_config_identity_file_and_proxyjump_are_honoured(lab, tmp_path: Path) -> None:
    key = Path(lab.state_dir, "id_ed25519")
    jump, target = lab.hosts[0], lab.hosts[1]
    base = f"Host 127.{worker.NET}.0.*\n  IdentityFile {key}\n"
    # Without IdentityFile the inventory gives no key: authentication must fail.
    home, inv = _ssh_config_home(tmp_path / "a", lab, "")
    code, doc = exec_json(inv, "-l", target.name, "--", "true", home=home)
    assert code == 3 and "authentication" in doc["hosts"][0]["error"]
    # IdentityFile from ssh_config is used.
    home, inv = _ssh_config_home(tmp_path / "b", lab, base)
    code, doc = exec_json(inv, "-l", target.name, "--", "hostname", home=home)
    assert code == 0 and doc["hosts"][0]["stdout"].strip() == target.name
    # ProxyJump through a dead port fails: the jump is really taken ...
    dead = f"Host {target.address}\n  ProxyJump root@{jump.address}:1\n" + base
    home, inv = _ssh_config_home(tmp_path / "c", lab, dead)
    code, doc = exec_json(inv, "-l", target.name, "--connect-timeout", "3", "--", "true",
                          home=home)
    assert code == 3
    # ... and through a live lab host it reaches the target, the jump's key checked too.
    live = f"Host {target.address}\n  ProxyJump root@{jump.address}:{lab.port}\n" + base
    home, inv = _ssh_config_home(tmp_path / "d", lab, live)
    code, doc = exec_json(inv, "-l", target.name, "--", "hostname", home=home)
    assert code == 0 and doc["hosts"][0]["stdout"].strip() == target.name


def test_proxyjump_hop_host_key_is_checked(lab, tmp_path: Path) -> None:
    key = Path(lab.state_dir, "id_ed25519")
    jump, target = lab.hosts[0], lab.hosts[1]
    only_target = tmp_path / "known_hosts"
    only_target.write_text("".join(
        ln + "\n" for ln in Path(lab.state_dir, "known_hosts").read_text().splitlines()
        if ln.startswith(f"[{target.address}]:")))
    config = (f"Host {target.address}\n  ProxyJump root@{jump.address}:{lab.port}\n"
              f"Host 127.{worker.NET}.0.*\n  IdentityFile {key}\n")
    home, inv = _ssh_config_home(tmp_path, lab, config)
    data = yaml.safe_load(inv.read_text())
    data["all"]["vars"]["opskit_known_hosts"] = str(only_target)
    del data["all"]["vars"]["ansible_ssh_common_args"]  # it names the lab's whole file
    inv.write_text(yaml.safe_dump(data))
    code, doc = exec_json(inv, "-l", target.name, "--", "true", home=home)
    assert code == 3 and "not in known_hosts" in doc["hosts"][0]["error"]
    assert jump.address in doc["hosts"][0]["error"]


def test_fab_dash_H_checks_known_hosts_and_runs(lab, journal: Path, tmp_path: Path) -> None:
    fab = str(Path(sys.executable).parent / "fab")
    target = lab.hosts[0]
    key = str(Path(lab.state_dir, "id_ed25519"))
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    env = {**os.environ, "HOME": str(home)}
    argv = [fab, "-H", f"root@{target.address}:{lab.port}", "-i", key, "exec", "--yes",
            "--command", "hostname"]
    # No known_hosts entry: refused, exit 3, the command never ran.
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 3 and "not in known_hosts" in proc.stdout
    (home / ".ssh" / "known_hosts").write_text(Path(lab.state_dir, "known_hosts").read_text())
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert target.name in proc.stdout
    proc = subprocess.run([fab, "inventory", "--inventory", str(lab.inventory_path), "--limit",
                           "db"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    dbs = [h.name for h in lab.hosts if "db" in h.groups]
    assert proc.returncode == 0 and all(name in proc.stdout for name in dbs)
    assert not any(h.name in proc.stdout.split() for h in lab.hosts if h.name not in dbs)


def test_connections_use_the_quick_socket_and_runner(lab) -> None:
    """Each SSH connection sits on opskit.transport.tcp's socket (no Nagle, quick ACKs) and
    waits for a command's exit status by event; several commands on one connection all report
    back."""
    import socket

    from opskit import inventory as inv_mod
    from opskit.transport import tcp
    from opskit.transport.connection import ConnectOptions, connect
    from opskit.transport.quick_runner import QuickRemote
    from opskit.transport.session import Session

    host = inv_mod.load(lab.inventory_path).hosts[lab.hosts[0].name]
    conn = connect(host, ConnectOptions())
    try:
        sock = conn.transport.sock
        assert isinstance(sock, tcp.QuickAckSocket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert conn.config.runners.remote is QuickRemote
        session = Session(host, conn)
        statuses = [session.run(f"exit {n % 3}", check=False).exit_status for n in range(12)]
        assert statuses == [n % 3 for n in range(12)]
        assert session.run("echo $((6*7))").stdout.strip() == "42"
    finally:
        conn.close()


def test_proxyjump_hops_use_the_quick_socket_too(lab, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A bastion hop is opened on opskit.transport.tcp's socket (key checked); the target runs."""
    from opskit import inventory as inv_mod
    from opskit.transport import tcp
    from opskit.transport.connection import ConnectOptions, QuickConnection, connect
    from opskit.transport.session import Session

    key = Path(lab.state_dir, "id_ed25519")
    jump, target = lab.hosts[0], lab.hosts[1]
    config = (f"Host {target.address}\n  ProxyJump root@{jump.address}:{lab.port}\n"
              f"Host 127.{worker.NET}.0.*\n  IdentityFile {key}\n")
    home, inv = _ssh_config_home(tmp_path, lab, config)
    monkeypatch.setenv("HOME", str(home))
    host = inv_mod.load(inv).hosts[target.name]
    conn = connect(host, ConnectOptions())
    hop = conn.gateway
    try:
        assert isinstance(hop, QuickConnection) and hop.host == jump.address
        assert isinstance(hop.transport.sock, tcp.QuickAckSocket)
        assert not isinstance(conn.transport.sock, tcp.QuickAckSocket)  # a channel of the hop
        assert Session(host, conn).run("hostname").stdout.strip() == target.name
    finally:
        conn.close()
        hop.close()
