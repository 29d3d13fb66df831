"""`opskit deploy` on the real lab: gunicorn on every app host, HUP reloads, ELB on moto.

The module grows the session lab to 16 hosts (8 of them app hosts) and shrinks it back after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import worker
import yaml

import opskit.lab as labmod
from opskit.lab import LabStatus

ROOT = Path(__file__).resolve().parents[2]
# The lab's growth order gives 8 app hosts at 19 (11-12: the second PostgreSQL cluster, 13 lb2).
DEPLOY_HOSTS = 19


def opskit(inv: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout, cwd=ROOT)


def run_json(inv: Path, *args: str) -> tuple[int, dict]:
    proc = opskit(inv, "--json", *args)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON: {proc.stdout!r} {proc.stderr!r}") from None


def deploy(inv: Path, ref: str, *args: str) -> tuple[int, dict]:
    return run_json(inv, "deploy", "--ref", ref, "--yes", *args)


def wipe(inv: Path) -> None:
    """No gunicorn and no /srv/sample on any app host (what a host had before any deploy)."""
    # Wait (up to 10 s) for the master to exit: the next deploy's gunicorn needs its port.
    opskit(inv, "exec", "-l", "app", "--yes", "--",
           "p=$(cat /srv/sample/shared/pids/gunicorn.pid 2>/dev/null) && kill $p 2>/dev/null"
           " && for i in $(seq 100); do kill -0 $p 2>/dev/null || break; sleep 0.1; done;"
           " rm -rf /srv/sample")


@pytest.fixture(scope="module")
def fleet(lab: LabStatus, lab_params: dict) -> Iterator[LabStatus]:
    grown = labmod.up(**{**lab_params, "hosts": DEPLOY_HOSTS})
    try:
        yield grown
    finally:
        wipe(Path(lab_params["inventory_path"]))
        labmod.up(**lab_params)


@pytest.fixture()
def fresh(fleet: LabStatus) -> LabStatus:
    """App hosts never deployed to, whatever ran before: the first deploy starts gunicorn."""
    wipe(fleet.inventory_path)
    return fleet


@pytest.fixture()
def released(fleet: LabStatus) -> LabStatus:
    """Every app host serving one release, with an older one to roll back to, and healthy in
    the target group; deployed (v1, then v2) only when an earlier test left anything else."""
    if not _released(fleet):
        wipe(fleet.inventory_path)
        for ref in ("v1", "v2"):
            code, doc = deploy(fleet.inventory_path, ref, "--batch", "100%")
            assert code == 0, doc
        assert _released(fleet)
    return fleet


def _released(fleet: LabStatus) -> bool:
    code, doc = run_json(fleet.inventory_path, "exec", "-l", "app", "--yes", "--",
                         "kill -0 $(cat /srv/sample/shared/pids/gunicorn.pid)"
                         " && [ $(ls /srv/sample/releases | wc -l) -ge 2 ]"
                         " && readlink /srv/sample/current")
    if code != 0 or len({h["stdout"] for h in doc["hosts"]}) != 1:
        return False
    client, tg, ids = _elb(fleet.inventory_path)
    health = client.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    states = {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in health}
    return all(states.get(ids[h.name]) == "healthy" for h in app_hosts(fleet))


@pytest.fixture()
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "journal.jsonl"
    monkeypatch.setenv("OPSKIT_JOURNAL", str(path))
    return path


def app_hosts(status: LabStatus) -> list:
    return [h for h in status.hosts if "app" in h.groups]


def served(address: str) -> dict:
    port = labmod.app_port(worker.PORT)
    with urllib.request.urlopen(f"http://{address}:{port}/", timeout=5) as resp:
        return json.loads(resp.read())


def host_state(inv: Path) -> dict[str, dict[str, str]]:
    """current symlink and master pid of every app host, read over SSH."""
    code, doc = run_json(inv, "exec", "-l", "app", "--yes", "--",
                         "readlink /srv/sample/current; cat /srv/sample/shared/pids/gunicorn.pid")
    assert code == 0, doc
    out = {}
    for h in doc["hosts"]:
        link, pid = h["stdout"].split()
        out[h["host"]] = {"current": os.path.basename(link), "pid": pid}
    return out


def test_deploy_to_8_app_hosts_then_hup_reload(fresh: LabStatus, journal: Path) -> None:
    inv = fresh.inventory_path
    apps = app_hosts(fresh)
    assert len(apps) == 8
    code, first = deploy(inv, "v1", "--batch", "100%")
    assert code == 0, first
    r1 = first["artifact"]["release"]
    assert all(h["deploy"]["reload"]["method"] == "start" for h in first["hosts"])
    before = host_state(inv)
    assert {v["current"] for v in before.values()} == {r1}
    code, second = deploy(inv, "v2")
    assert code == 0, second
    r2 = second["artifact"]["release"]
    after = host_state(inv)
    for h in apps:
        assert served(h.address)["release"] == r2
        assert served(h.address)["host"] == h.name
        assert after[h.name]["current"] == r2
        assert after[h.name]["pid"] == before[h.name]["pid"]  # HUP: same master, no restart
    reloads = {h["host"]: h["deploy"]["reload"] for h in second["hosts"]}
    assert all(r["method"] == "hup" and r["master_pid_before"] == r["master_pid_after"]
               for r in reloads.values())
    assert len(second["batches"]) == 5 and second["batches"][0] == [apps[0].name]
    entries = [json.loads(x) for x in journal.read_text().splitlines()]
    deploys = [e for e in entries if e["command"] == "deploy" and e["phase"] == "end"]
    assert len(deploys) == 2  # one end per deploy (the exec entries are the test's reads)
    assert sum(e["command"] == "deploy" and e["phase"] == "started" for e in entries) == 2
    assert deploys[1]["details"]["release"] == r2 and len(deploys[1]["outcomes"]) == 8


def test_broken_release_stops_at_canary_and_rolls_it_back(released: LabStatus) -> None:
    inv = released.inventory_path
    good = host_state(inv)
    code, doc = deploy(inv, "broken", "--batch", "1,100%")
    assert code == 2 and doc["stopped_after_batch"] == 1
    canary = doc["batches"][0][0]
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert by_host[canary]["status"] == "failed"
    assert "health check" in by_host[canary]["error"]
    assert "rolled back to" in by_host[canary]["error"]
    assert all(by_host[n]["status"] == "skipped" for n in doc["batches"][1])
    bad_release = doc["artifact"]["release"]
    now = host_state(inv)
    for h in app_hosts(released):
        assert now[h.name]["current"] == good[h.name]["current"] != bad_release
        assert served(h.address)["release"] == good[h.name]["current"]
    code, out = run_json(inv, "exec", "-l", canary, "--yes", "--", "ls /srv/sample/releases")
    assert bad_release not in out["hosts"][0]["stdout"]


def test_failing_install_leaves_current_untouched(released: LabStatus, tmp_path: Path) -> None:
    data = yaml.safe_load(released.inventory_path.read_text())
    app_group = data["all"]["children"]["app"]
    app_group["vars"]["deploy"]["install"] = "echo 'wheel missing' >&2; exit 4"
    inv = tmp_path / "install-fails.yml"
    inv.write_text(yaml.safe_dump(data))
    target = app_hosts(released)[1].name
    before = host_state(released.inventory_path)[target]
    code, doc = deploy(inv, "v1", "-l", target)
    assert code == 2 and "install step failed" in doc["hosts"][0]["error"]
    assert "wheel missing" in doc["hosts"][0]["stderr"]
    assert host_state(released.inventory_path)[target] == before


def test_dry_run_changes_nothing(released: LabStatus) -> None:
    inv = released.inventory_path
    listing = "find /srv/sample -printf '%p %y %l %T@\\n' | sort"

    def tree() -> dict[str, str]:
        code, doc = run_json(inv, "exec", "-l", "app", "--yes", "--", listing)
        assert code == 0
        return {h["host"]: h["stdout"] for h in doc["hosts"]}

    before = tree()
    proc = opskit(inv, "deploy", "--ref", "v1", "--dry-run", "--batch", "1,5,25%")
    assert proc.returncode == 0, proc.stderr
    assert "dry run" in proc.stdout and "deregister+drain" in proc.stdout
    assert tree() == before


def _elb(inv: Path) -> tuple[object, str, dict[str, str]]:
    data = yaml.safe_load(inv.read_text())
    tg = data["all"]["children"]["app"]["vars"]["deploy"]["target_group_arn"]
    aws = {n: v["aws"] for n, v in data["all"]["hosts"].items()}
    any_aws = next(iter(aws.values()))
    client = boto3.client("elbv2", endpoint_url=any_aws["endpoint_url"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return client, tg, {n: v["instance_id"] for n, v in aws.items()}


def test_elb_deregistered_during_deploy_and_registered_after(released: LabStatus,
                                                             tmp_path: Path) -> None:
    client, tg, ids = _elb(released.inventory_path)
    target = app_hosts(released)[2].name
    data = yaml.safe_load(released.inventory_path.read_text())
    # A slow reload keeps the host out of the group long enough to be seen there (the upload,
    # unpack and install happen before it leaves; the switch, reload and check after).
    settings = data["all"]["children"]["app"]["vars"]["deploy"]
    settings["reload"] = (f"sleep 1.5; kill -HUP $(cat {settings['pid_file']}) 2>/dev/null "
                          f"|| {{ cd / && {settings['start']}; }}")
    inv = tmp_path / "slow-reload.yml"
    inv.write_text(yaml.safe_dump(data))

    def state() -> str:
        d = client.describe_target_health(TargetGroupArn=tg, Targets=[{"Id": ids[target]}])
        return d["TargetHealthDescriptions"][0]["TargetHealth"]["State"]

    assert state() == "healthy"
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(state())
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        code, doc = deploy(inv, "v2", "-l", target)
    finally:
        done.set()
        watcher.join()
    assert code == 0, doc
    assert "unused" in seen  # out of the target group while its deploy ran
    assert state() == "healthy"  # and back in after
    d = doc["hosts"][0]["deploy"]
    assert d["elb_out"]["deregistered"] and d["elb_in"]["registered"]
    others = [n for n in ids if n != target and n.startswith("app")]
    health = client.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    registered = {t["Target"]["Id"] for t in health}
    assert all(ids[n] in registered for n in others)


def test_unreachable_host_is_reported_and_others_finish(fleet: LabStatus, lab_params: dict,
                                                        journal: Path) -> None:
    inv = fleet.inventory_path
    victim = app_hosts(fleet)[3].name
    pid = labmod.host_pid(victim, state_dir=fleet.state_dir)
    assert pid
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    try:
        code, doc = deploy(inv, "v1", "--batch", "100%", "--connect-timeout", "3")
        assert code == 3
        status = {h["host"]: h["status"] for h in doc["hosts"]}
        assert status.pop(victim) == "unreachable"
        assert set(status.values()) == {"ok"}
        entry = json.loads(journal.read_text().splitlines()[-1])
        assert entry["outcomes"][victim]["status"] == "unreachable"
    finally:
        labmod.up(**{**lab_params, "hosts": DEPLOY_HOSTS})


def test_rollback_and_releases_drift(released: LabStatus, journal: Path) -> None:
    inv = released.inventory_path
    apps = app_hosts(released)
    state = host_state(inv)
    releases_doc = run_json(inv, "releases")[1]
    majority, drift_before = releases_doc["majority"], releases_doc["drift"]
    one = next(h.name for h in apps if h.name not in drift_before)
    code, doc = run_json(inv, "rollback", "-l", one, "--yes")
    assert code == 0, doc
    went_to = doc["hosts"][0]["value"]["to"]
    assert went_to != state[one]["current"]
    assert served(released.host(one).address)["release"] == went_to
    code, doc = run_json(inv, "releases")
    # (a host that was unreachable during an earlier deploy is drift already)
    assert doc["majority"] == majority and set(doc["drift"]) == {one, *drift_before}
    assert json.loads(journal.read_text().splitlines()[-1])["command"] == "rollback"


def test_fab_tasks_call_the_same_library(released: LabStatus, journal: Path) -> None:
    fab = str(Path(sys.executable).parent / "fab")
    inv = str(released.inventory_path)
    target = app_hosts(released)[4].name

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([fab, *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=180, stdin=subprocess.DEVNULL)

    proc = run("deploy", "--inventory", inv, "--limit", target, "--ref", "v2", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = json.loads(journal.read_text().splitlines()[-1])
    assert (entry["command"], entry["via"]) == ("deploy", "fab")
    assert entry["outcomes"][target]["status"] == "ok"
    release = entry["details"]["release"]
    assert served(released.host(target).address)["release"] == release
    proc = run("releases", "--inventory", inv, "--limit", target)
    assert proc.returncode == 0 and release in proc.stdout
    proc = run("rollback", "--inventory", inv, "--limit", target, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert served(released.host(target).address)["release"] != release
    entry = json.loads(journal.read_text().splitlines()[-1])
    assert (entry["command"], entry["via"]) == ("rollback", "fab")


def test_a_deploy_killed_midway_is_journaled_as_interrupted(released: LabStatus,
                                                            journal: Path) -> None:
    inv = released.inventory_path
    proc = subprocess.Popen([sys.executable, "-m", "opskit", "-i", str(inv), "deploy", "--ref",
                             "v1", "--yes", "--batch", "1,100%"], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the canary batch has begun on the hosts
            if line.startswith("batch 1"):
                break
        time.sleep(0.3)
    finally:
        proc.kill()
        proc.wait()
    records = [json.loads(x) for x in journal.read_text().splitlines()]
    assert [r["phase"] for r in records if r["command"] == "deploy"] == ["started"]
    runs = json.loads(opskit(inv, "journal", "--json").stdout)["runs"]
    killed = [r for r in runs if r["command"] == "deploy"]
    assert len(killed) == 1 and killed[0]["status"] == "interrupted"
    assert killed[0]["exit_code"] is None and len(killed[0]["hosts"]) == len(app_hosts(released))
    shown = opskit(inv, "journal", "show", killed[0]["run_id"])
    assert "no end record" in shown.stdout and "v1" in shown.stdout
    # Its lease outlives it (until its ttl): the next deploy is refused, naming the dead run;
    # --break-lock (journaled) takes it over and finishes the job.
    proc = opskit(inv, "deploy", "--ref", "v2", "--yes", "--batch", "100%")
    assert proc.returncode == 4 and killed[0]["run_id"] in proc.stderr, proc
    code, doc = deploy(inv, "v2", "--batch", "100%", "--break-lock")
    assert code == 0, doc
    broke = [json.loads(x) for x in journal.read_text().splitlines()]
    assert any(r["phase"] == "step" and killed[0]["run_id"] in json.dumps(r["details"])
               for r in broke)


def test_two_deploys_at_once_one_runs_the_other_is_refused(released: LabStatus,
                                                           journal: Path) -> None:
    inv = released.inventory_path

    def start(ref: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "opskit", "-i", str(inv), "deploy",
                                 "--ref", ref, "--yes", "--batch", "1,100%"], cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = start("v1")
    assert first.stderr is not None
    err_first = []
    for line in first.stderr:  # the first holds its lease: its canary batch has begun
        err_first.append(line)
        if line.startswith("batch 1"):
            break
    # Paused while the second runs: however slowly the second starts (building its artifact
    # comes before its lease), the first still holds its lease then (ttl 120 s, far longer).
    first.send_signal(signal.SIGSTOP)
    try:
        second = start("v2")
        out2, err2 = second.communicate(timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    out1, rest = first.communicate(timeout=300)
    assert (first.returncode, second.returncode) == (0, 4), (err_first, rest, err2)
    assert "locked by" in err2 and "Traceback" not in err2 + rest
    started = [json.loads(x) for x in journal.read_text().splitlines()]
    winner = next(r for r in started if r["phase"] == "started" and "v1" in r["argv"])
    assert winner["run_id"] in err2  # the loser names the holder's run
    # Every app host serves the winner's release: nothing of the loser's was deployed.
    state = host_state(inv)
    release = winner["plan"]["release"]
    for h in app_hosts(released):
        assert state[h.name]["current"] == release
        assert served(h.address)["release"] == release
