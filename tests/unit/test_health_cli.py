"""`opskit health` run locally (psutil; local-connection hosts for the fleet path), Munin
plugin output against the protocol, and `opskit top` under tmux. No lab needed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opskit.health import checks as ck
from opskit.health import local, munin
from opskit.health import probe as probe_mod
from opskit.onhost import script

ROOT = Path(__file__).resolve().parents[2]
QUIET = [a for k in ck.DEFAULTS for a in ("--warn", f"{k}=off", "--crit", f"{k}=off")]
# All off but memory_percent: the inventory's own level for it stays in force.
QUIET_BUT_MEMORY = [a for k in ck.DEFAULTS if k != "memory_percent"
                    for a in ("--warn", f"{k}=off", "--crit", f"{k}=off")]
LOCAL_INVENTORY = """\
all:
  vars:
    ansible_connection: local
  hosts:
    here1:
    here2:
      health:
        memory_percent: {warn: 0}
"""


@pytest.fixture()
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text(LOCAL_INVENTORY)
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "journal.jsonl"))
    monkeypatch.delenv("OPSKIT_INVENTORY", raising=False)
    return path


def opskit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opskit", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout, env=os.environ,
                          cwd=ROOT)


def local_json(*args: str) -> tuple[int, dict]:
    proc = opskit("health", "--local", "--interval", "0.2", "--json", *args)
    return proc.returncode, json.loads(proc.stdout)


def test_local_exit_codes_follow_thresholds() -> None:
    code, doc = local_json(*QUIET)
    assert code == 0 and doc["status_name"] == "OK" and doc["checks"]
    # Memory in use is always above 0 % and below 100.5 %: thresholds either side of it.
    code, doc = local_json(*QUIET, "--warn", "memory_percent=0")
    assert code == 1 and doc["status_name"] == "WARNING"
    code, doc = local_json(*QUIET, "--warn", "memory_percent=0", "--crit", "memory_percent=0")
    assert code == 2
    mem = next(c for c in doc["checks"] if c["key"] == "memory_percent")
    code, _ = local_json(*QUIET, "--warn", f"memory_percent={mem['value'] + 5}",
                         "--crit", f"disk_percent={101}")
    assert code == 0
    assert doc["exit_code"] == 2 and doc["sample"]["source"] == "psutil"


def test_local_human_output_is_nagios_first_line() -> None:
    proc = opskit("health", "--local", "--interval", "0.2", *QUIET, "--warn", "load_per_cpu=0")
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[0]
    assert re.match(r"^HEALTH WARNING - load_per_cpu [\d.]+ \(>= 0\)[^|]* \| ", first), first
    assert "top processes" in proc.stdout


def test_bad_input_is_unknown_3_not_warning() -> None:
    assert opskit("health", "--local", "--warn", "nope=1").returncode == 3
    assert opskit("health", "--local", "--bogus").returncode == 3
    proc = opskit("health")
    assert proc.returncode == 3 and "--local" in proc.stderr


def test_local_host_thresholds_come_from_inventory(inv: Path) -> None:
    proc = opskit("-i", str(inv), "health", "--local", "--host", "here2", "--interval", "0.2",
                  "--json", *QUIET_BUT_MEMORY)
    doc = json.loads(proc.stdout)
    mem = next(c for c in doc["checks"] if c["key"] == "memory_percent")
    assert mem["warn"] == 0 and mem["status_name"] == "WARNING"
    assert opskit("-i", str(inv), "health", "--local", "--host", "nosuch").returncode == 3


def test_a_misspelt_health_key_names_file_and_line(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every path that reads a host's health: vars (--local --host, munin --host, the fleet,
    the opskit-munin plugin) refuses a typo naming the file, line, host and the right key."""
    path = tmp_path / "inv.yml"
    path.write_text(LOCAL_INVENTORY.replace("memory_percent: {warn: 0}",
                                            "memory_percnt: {warn: 0}"))
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "journal.jsonl"))
    monkeypatch.delenv("OPSKIT_INVENTORY", raising=False)
    expect = f"{path} line 8, host 'here2': health.memory_percnt: unknown key"
    for args in (["health", "--local", "--host", "here2", "--interval", "0.2"],
                 ["health", "munin", "config", "--host", "here2"],
                 ["health", "--interval", "0.2"]):
        proc = opskit("-i", str(path), *args)
        assert proc.returncode == 3, (args, proc.stdout + proc.stderr)
        assert proc.stderr.splitlines() == [f"error: {expect}",
                                            "hint: did you mean health.memory_percent?"], args
    plugin = subprocess.run([Path(sys.executable).with_name("opskit-munin"), "config"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                            env={**os.environ, "OPSKIT_INVENTORY": str(path),
                                 "OPSKIT_MUNIN_HOST": "here2"})
    assert plugin.returncode != 0 and expect in plugin.stderr, plugin.stderr


def test_probe_agrees_with_psutil() -> None:
    out = subprocess.run(["python3", "-I", "-S", "-c", script("health_probe"), "0.2", "3"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    p, s = probe_mod.parse(out), local.collect(0.2, 3)
    assert set(p) == set(s) - {"working_set"}
    assert p["cpu_count"] == s["cpu_count"]
    assert p["memory"]["total"] == s["memory"]["total"]
    assert [d["mount"] for d in p["disks"]] == [d["mount"] for d in s["disks"]]
    for a, b in zip(p["disks"], s["disks"], strict=True):
        assert abs(a["percent"] - b["percent"]) < 2
    assert p["fds"]["max"] == s["fds"]["max"]
    assert len(p["top_rss"]) == 3 and {"pid", "name", "cpu_percent", "rss"} <= set(p["top_rss"][0])
    assert [n["nic"] for n in p["net"]] == [n["nic"] for n in s["net"]]


def test_fleet_health_over_local_hosts(inv: Path) -> None:
    proc = opskit("-i", str(inv), "health", *QUIET_BUT_MEMORY, "--json", "--interval", "0.2")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 == doc["exit_code"]  # here2's own memory warning
    st = {h["host"]: h["status_name"] for h in doc["hosts"]}
    assert st == {"here1": "OK", "here2": "WARNING"}
    table = opskit("-i", str(inv), "health", *QUIET, "--interval", "0.2")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("HEALTH OK - 2 hosts")
    assert re.search(r"^here1\s+OK\s", table.stdout, re.M)
    assert re.search(r"^here2\s+OK\s", table.stdout, re.M)


def _validate(config: str, fetch: str) -> None:
    assert munin.validate(config, fetch) == []
    names = re.findall(r"^multigraph (\S+)$", config, re.M)
    assert names == re.findall(r"^multigraph (\S+)$", fetch, re.M)
    assert {"opskit_load", "opskit_memory", "opskit_disk", "opskit_actions"} <= set(names)
    for line in config.splitlines():
        key = line.split(" ", 1)[0]
        if "." in key:
            assert re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key.split(".")[0]), line
    for line in fetch.splitlines():
        assert re.match(r"^(multigraph \w+|[A-Za-z_][A-Za-z0-9_]*\.value (U|-?\d+(\.\d+)?))$",
                        line), line
    assert config.count("graph_title ") == len(names)


def test_munin_config_and_fetch_follow_the_protocol(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    journal = tmp_path / "journal.jsonl"
    entries = [{"command": "deploy"}, {"command": "deploy"}, {"command": "deploy", "dry_run": True},
               {"command": "pg failover"}, {"command": "redis promote"},
               {"command": "pg failover step"}, {"command": "snapshot create"}]
    journal.write_text("".join(json.dumps(e) + "\n" for e in entries))
    monkeypatch.setenv("OPSKIT_JOURNAL", str(journal))
    config, fetch = opskit("health", "munin", "config"), opskit("health", "munin", "fetch")
    assert config.returncode == fetch.returncode == 0, config.stderr + fetch.stderr
    _validate(config.stdout, fetch.stdout)
    actions = fetch.stdout.split("multigraph opskit_actions\n")[1]
    assert "deploys.value 2\n" in actions and "failovers.value 2\n" in actions
    assert "snapshots.value 1\n" in actions
    assert "load1.warning" in config.stdout and "root.critical 90" in config.stdout


def test_munin_entry_point_follows_argv1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "none.jsonl"))
    exe = Path(sys.executable).with_name("opskit-munin")
    assert exe.exists(), "pip install -e . makes the opskit-munin console script"
    link = tmp_path / "opskit"  # what /etc/munin/plugins/opskit would be
    link.symlink_to(exe)
    config = subprocess.run([str(link), "config"], capture_output=True, text=True, timeout=60)
    fetch = subprocess.run([str(link)], capture_output=True, text=True, timeout=60)
    assert config.returncode == fetch.returncode == 0, config.stderr + fetch.stderr
    _validate(config.stdout, fetch.stdout)
    assert subprocess.run([str(link), "autoconf"], capture_output=True, text=True,
                          timeout=60).stdout == "yes\n"


def test_munin_field_names() -> None:
    taken: set[str] = set()
    assert [munin.field_name(m, taken) for m in ("/", "/data", "/srv/my-app", "/9x", "/data")] \
        == ["root", "data", "srv_my_app", "_9x", "data_2"]


def test_top_without_a_tty_prints_one_table(inv: Path) -> None:
    proc = opskit("-i", str(inv), "top")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^here1\s", proc.stdout, re.M) and re.search(r"^here2\s", proc.stdout, re.M)


def test_top_under_tmux_quits_on_q(inv: Path) -> None:
    sock = f"opskit-top-unit-{os.getpid()}"  # our own tmux server
    tmux = ["tmux", "-L", sock]
    cmd = shlex.join([sys.executable, "-m", "opskit", "-i", str(inv), "top", "--interval", "1"])
    subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", "200", "-y", "50",
                    # pytest exports COLUMNS=80: the view must size itself from the pane.
                    f"cd {shlex.quote(str(ROOT))} && env -u COLUMNS -u LINES {cmd}"],
                   check=True, timeout=30)
    try:
        screen, deadline = "", time.monotonic() + 30
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"],
                                    capture_output=True, text=True, timeout=10).stdout
            if " here1 " in screen and " here2 " in screen:
                break
            time.sleep(0.3)
        assert " here1 " in screen and " here2 " in screen and "q: quit" in screen, screen
        subprocess.run([*tmux, "send-keys", "-t", "top", "q"], check=True, timeout=10)
        deadline, alive = time.monotonic() + 15, True
        while alive and time.monotonic() < deadline:
            alive = subprocess.run([*tmux, "has-session", "-t", "top"], capture_output=True,
                                   timeout=10).returncode == 0
            time.sleep(0.2)
        assert not alive, "top did not exit on q"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
