"""`opskit snapshot` on the real lab: XFS on a loop device at /data, fsfreeze, moto EBS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import yaml

import opskit.lab as labmod
from opskit.lab import LabStatus

ROOT = Path(__file__).resolve().parents[2]
HOST = "db1"


def opskit(inv: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                          cwd=ROOT, env=env or os.environ)


def run_json(inv: Path, *args: str, env: dict | None = None) -> tuple[int, dict]:
    proc = opskit(inv, "--json", *args, env=env)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON: {proc.stdout!r} {proc.stderr!r}") from None


def host_vars(lab: LabStatus, name: str) -> dict:
    data = yaml.safe_load(lab.inventory_path.read_text())
    return data["all"]["hosts"][name]


def ec2(lab: LabStatus):
    aws = host_vars(lab, HOST)["aws"]
    return boto3.client("ec2", endpoint_url=aws["endpoint_url"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def set_snapshots(lab: LabStatus, set_id: str) -> list[dict]:
    resp = ec2(lab).describe_snapshots(
        Filters=[{"Name": "tag:opskit:set-id", "Values": [set_id]}])
    return resp["Snapshots"]


def count_snapshots(lab: LabStatus) -> int:
    return len(ec2(lab).describe_snapshots(OwnerIds=["self"])["Snapshots"])


def in_host(*argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return labmod.run_in_host(HOST, list(argv), state_dir=_STATE["dir"], timeout=timeout)


_STATE: dict = {}


@pytest.fixture(autouse=True)
def _state(lab: LabStatus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _STATE["dir"] = lab.state_dir
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "journal.jsonl"))
    monkeypatch.setenv("OPSKIT_LOCK_DIR", str(tmp_path / "locks"))


def writable(timeout: float = 3) -> bool:
    try:
        return in_host("sh", "-c", "echo ok > /data/.probe && cat /data/.probe",
                       timeout=timeout).stdout.strip() == "ok"
    except subprocess.TimeoutExpired:
        return False


def test_create_one_set_of_4_tagged_snapshots(lab: LabStatus, tmp_path: Path) -> None:
    code, doc = run_json(lab.inventory_path, "snapshot", "create", "-l", HOST, "--yes",
                         "--tag", "reason=test")
    assert code == 0, doc
    v = doc["hosts"][0]["value"]
    assert v["method"] == "CreateSnapshots" and 0 < v["freeze_ms"] < 5000
    snaps = set_snapshots(lab, v["set_id"])
    assert len(snaps) == 4
    declared = host_vars(lab, HOST)["snapshot"]["volumes"]
    by_member = {}
    for s in snaps:
        tags = {t["Key"]: t["Value"] for t in s["Tags"]}
        assert tags["opskit:host"] == HOST and tags["opskit:mount"] == "/data"
        assert tags["opskit:members"] == "4" and tags["reason"] == "test"
        assert tags["opskit:created-by"].startswith("opskit ")
        by_member[int(tags["opskit:member"])] = s["VolumeId"]
    assert [by_member[i] for i in range(4)] == declared
    assert writable()
    code, listed = run_json(lab.inventory_path, "snapshot", "list", "-l", HOST)
    assert any(s["set_id"] == v["set_id"] and s["complete"] for s in listed["sets"])
    code, verified = run_json(lab.inventory_path, "snapshot", "verify", v["set_id"], "-l", HOST)
    assert code == 0 and verified["complete"]
    entry = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert entry["command"] == "snapshot create" and entry["details"]["sets"][HOST] == v["set_id"]


def host_sets(lab: LabStatus, name: str) -> int:
    resp = ec2(lab).describe_snapshots(Filters=[{"Name": "tag:opskit:host", "Values": [name]}])
    return len(resp["Snapshots"])


def test_a_disabled_host_is_never_frozen_and_gets_no_snapshot(lab: LabStatus,
                                                              tmp_path: Path) -> None:
    # db1 and db2 run the same pre-freeze hook (right before the freeze); db2 says
    # snapshot.enabled: false, so nothing may run there: no hook, no freeze, no snapshot.
    marker = "/data/.opskit-pre-freeze-ran"
    data = yaml.safe_load(lab.inventory_path.read_text())
    for name in (HOST, "db2"):
        labmod.run_in_host(name, ["rm", "-f", marker], state_dir=lab.state_dir, timeout=10)
        data["all"]["hosts"][name]["snapshot"]["pre_freeze"] = f"touch {marker}"
    data["all"]["hosts"]["db2"]["snapshot"]["enabled"] = False
    inv = tmp_path / "disabled.yml"
    inv.write_text(yaml.safe_dump(data))
    skipped = {"host": "db2", "skipped": "snapshot.enabled is false"}
    code, plan = run_json(inv, "snapshot", "create", "-l", f"{HOST},db2", "--dry-run")
    assert code == 0 and [p["host"] for p in plan["plan"]] == [HOST], plan
    assert plan["skipped"] == [skipped]
    db1_before, db2_before = host_sets(lab, HOST), host_sets(lab, "db2")
    code, doc = run_json(inv, "snapshot", "create", "-l", f"{HOST},db2", "--yes")
    assert code == 0, doc
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert by_host[HOST]["status"] == "ok" and by_host[HOST]["value"]["set_id"]
    assert (by_host["db2"]["status"], by_host["db2"]["error"]) == ("skipped",
                                                                   skipped["skipped"])
    assert host_sets(lab, HOST) == db1_before + 4 and host_sets(lab, "db2") == db2_before

    def hook_ran(name: str) -> bool:
        return labmod.run_in_host(name, ["test", "-e", marker], state_dir=lab.state_dir,
                                  timeout=10).returncode == 0

    assert hook_ran(HOST) and not hook_ran("db2")
    entry = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert entry["outcomes"]["db2"]["status"] == "skipped"
    proc = opskit(inv, "snapshot", "create", "-l", "db2", "--yes")
    assert proc.returncode == 1, proc.stderr
    assert "snapshot.enabled is false for every selected host: db2" in proc.stderr
    assert host_sets(lab, "db2") == db2_before and not hook_ran("db2")


DRIVER = """
import sys, time
from opskit.runner import fleet
from opskit import inventory
from opskit.snapshot.freeze import frozen
host = inventory.load(sys.argv[1]).select(sys.argv[2])
def hold(s):
    with frozen(s, "/data", float(sys.argv[3])):
        print("FROZEN", flush=True)
        time.sleep(120)
fleet.run(host, hold)
"""


def start_driver(lab: LabStatus, timeout: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(lab.inventory_path), HOST,
                             str(timeout)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "FROZEN"
    return proc


def start_writer() -> subprocess.Popen[str]:
    pid = labmod.host_pid(HOST, state_dir=_STATE["dir"])
    return subprocess.Popen(["nsenter", "-t", str(pid), "-m", "-u", "--", "sh", "-c",
                             "echo data > /data/written && echo done"],
                            stdout=subprocess.PIPE, text=True)


def test_writer_blocks_while_frozen_and_completes_after_thaw(lab: LabStatus) -> None:
    driver = start_driver(lab, 30)
    writer = start_writer()
    try:
        time.sleep(0.8)
        assert writer.poll() is None  # blocked on the frozen filesystem
    finally:
        driver.send_signal(signal.SIGKILL)  # opskit dies: EOF on the guard's stdin -> thaw
        driver.wait()
    out, _ = writer.communicate(timeout=10)
    assert out.strip() == "done" and writable()


def test_sigkilled_opskit_is_thawed_at_once(lab: LabStatus) -> None:
    driver = start_driver(lab, 20)
    t0 = time.monotonic()
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert writable(timeout=10)
    assert time.monotonic() - t0 < 5  # at once, long before the 20 s freeze timeout


def test_silent_controller_is_thawed_at_the_freeze_timeout(lab: LabStatus) -> None:
    # SIGSTOP keeps the connection open but says nothing: only the deadline can thaw.
    driver = start_driver(lab, 2)
    writer = start_writer()
    t0 = time.monotonic()
    driver.send_signal(signal.SIGSTOP)
    try:
        out, _ = writer.communicate(timeout=15)
        waited = time.monotonic() - t0
        assert out.strip() == "done" and 1.0 < waited < 6
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.send_signal(signal.SIGCONT)
        driver.wait()
    assert writable()


def test_connection_cut_mid_freeze_thaws_at_once(lab: LabStatus) -> None:
    sshd = labmod.host_pid(HOST, state_dir=_STATE["dir"])
    before = set(subprocess.run(["pgrep", "-P", str(sshd)], capture_output=True,
                                text=True).stdout.split())
    driver = start_driver(lab, 30)
    try:
        after = set(subprocess.run(["pgrep", "-P", str(sshd)], capture_output=True,
                                   text=True).stdout.split())
        session = after - before  # the sshd process serving this connection
        assert session
        t0 = time.monotonic()
        for pid in session:
            os.kill(int(pid), signal.SIGKILL)
        assert writable(timeout=10) and time.monotonic() - t0 < 5
    finally:
        driver.kill()
        driver.wait()


def test_not_a_mount_point_gives_no_snapshot(lab: LabStatus) -> None:
    before = count_snapshots(lab)
    code, doc = run_json(lab.inventory_path, "snapshot", "create", "-l", HOST, "--mount",
                         "/srv", "--yes")
    assert code != 0 and doc["hosts"][0]["status"] in ("failed", "refused")
    assert count_snapshots(lab) == before
    proc = opskit(lab.inventory_path, "snapshot", "create", "-l", HOST, "--mount", "/", "--yes")
    assert proc.returncode == 1 and "refusing to freeze /" in proc.stderr
    assert count_snapshots(lab) == before


def test_unmappable_member_is_refused_exit_4(lab: LabStatus, tmp_path: Path) -> None:
    # A copy of the host's md/NVMe tree where one member has neither serial nor by-id link.
    broken = "/etc/opskit-lab/fsroot-broken"
    in_host("sh", "-c", f"rm -rf {broken} && cp -a /etc/opskit-lab/fsroot {broken} && "
            f"rm -f {broken}/sys/block/nvme3n1/device/serial && "
            f"find {broken}/dev/disk/by-id -lname '*nvme3n1' -delete")
    data = yaml.safe_load(lab.inventory_path.read_text())
    snap = data["all"]["hosts"][HOST]["snapshot"]
    snap.pop("volumes")
    snap["discovery_root"] = broken
    inv = tmp_path / "broken.yml"
    inv.write_text(yaml.safe_dump(data))
    before = count_snapshots(lab)
    code, doc = run_json(inv, "snapshot", "create", "-l", HOST, "--yes")
    assert code == 4 and doc["hosts"][0]["status"] == "refused"
    assert "nvme3n1" in doc["hosts"][0]["error"]
    assert count_snapshots(lab) == before and writable()


def test_overlapping_cron_runs(lab: LabStatus, tmp_path: Path) -> None:
    from opskit import lock

    before = count_snapshots(lab)
    with lock.exclusive("snapshot"):
        proc = opskit(lab.inventory_path, "snapshot", "create", "-l", HOST, "--cron")
    assert proc.returncode == 4 and "in progress" in proc.stderr
    assert count_snapshots(lab) == before
    quiet = opskit(lab.inventory_path, "snapshot", "create", "-l", HOST, "--cron")
    assert quiet.returncode == 0 and quiet.stdout == ""  # quiet on success
    assert count_snapshots(lab) == before + 4


def test_restore_creates_and_attaches_in_member_order(lab: LabStatus) -> None:
    code, doc = run_json(lab.inventory_path, "snapshot", "create", "-l", HOST, "--yes")
    assert code == 0, doc
    sid = doc["hosts"][0]["value"]["set_id"]
    target = host_vars(lab, "db2")["aws"]["instance_id"]
    code, plan = run_json(lab.inventory_path, "snapshot", "restore", sid, "-l", HOST,
                          "--instance", target, "--dry-run")
    assert code == 0 and all("volume" not in m for m in plan["members"])
    code, done = run_json(lab.inventory_path, "snapshot", "restore", sid, "-l", HOST,
                          "--instance", target, "--yes")
    assert code == 0, done
    snaps = {s["SnapshotId"]: s for s in set_snapshots(lab, sid)}
    inst = ec2(lab).describe_instances(InstanceIds=[target])["Reservations"][0]["Instances"][0]
    attached = {m["Ebs"]["VolumeId"]: m["DeviceName"] for m in inst["BlockDeviceMappings"]}
    devices = []
    for m in done["members"]:
        vol = ec2(lab).describe_volumes(VolumeIds=[m["volume"]])["Volumes"][0]
        assert vol["SnapshotId"] == m["snapshot"] and m["snapshot"] in snaps
        member_tag = {t["Key"]: t["Value"] for t in snaps[m["snapshot"]]["Tags"]}
        assert int(member_tag["opskit:member"]) == m["member"]
        assert attached[m["volume"]] == m["device"]
        devices.append(m["device"])
    assert [m["member"] for m in done["members"]] == [0, 1, 2, 3]
    assert devices == sorted(devices)  # member 0 on the first free name, and so on


def test_prune_dry_run_then_keep_last_1(lab: LabStatus) -> None:
    for _ in range(2):
        assert run_json(lab.inventory_path, "snapshot", "create", "-l", HOST, "--yes")[0] == 0
    vol = host_vars(lab, HOST)["snapshot"]["volumes"][0]
    foreign = ec2(lab).create_snapshot(VolumeId=vol, Description="made by hand")["SnapshotId"]
    before = count_snapshots(lab)
    code, dry = run_json(lab.inventory_path, "snapshot", "prune", "-l", HOST, "--keep-last",
                         "1", "--dry-run")
    assert code == 0 and dry["dry_run"] and dry["plans"][0]["delete"]
    assert count_snapshots(lab) == before
    newest = dry["plans"][0]["keep"][0]["set_id"]
    code, _ = run_json(lab.inventory_path, "snapshot", "prune", "-l", HOST, "--keep-last", "1",
                       "--yes")
    assert code == 0
    code, listed = run_json(lab.inventory_path, "snapshot", "list", "-l", HOST)
    assert [s["set_id"] for s in listed["sets"]] == [newest]
    ids = {s["SnapshotId"] for s in ec2(lab).describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert foreign in ids  # not created by opskit: never pruned
    proc = opskit(lab.inventory_path, "snapshot", "prune", "-l", HOST, "--yes")
    assert proc.returncode == 1 and "keeps nothing" in proc.stderr
