"""`opskit snapshot create` when the snapshot call outlives the freeze window (issue 16.2).

The lab's db1 has a real XFS /data and the guard freezes it for real; its EC2 calls go through
an HTTP proxy (ec2_proxy.py) in front of the lab's moto server that holds CreateSnapshots past
--freeze-timeout, and can refuse DeleteSnapshot. Only the guard's own word may make a set
consistent: a set it does not vouch for is deleted, or else tagged opskit:consistent=false and
shown as inconsistent everywhere.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from ec2_proxy import Ec2Proxy, ec2_proxy
from helpers import AWS_ENV, ROOT, drop_lease, run_json, run_opskit

import opskit.lab as labmod
from opskit import inventory
from opskit.lab import LabStatus
from opskit.runner import fleet, lease
from opskit.snapshot.freeze import frozen

HOST = "db1"
FREEZE = 2.0  # --freeze-timeout of the runs below
HOLD = 4.0    # how long the proxy holds CreateSnapshots: well past FREEZE
ERROR = re.compile(
    r"db1:/data: the freeze guard thawed at its 2s deadline before CreateSnapshots returned "
    r"\(took \d+\.\ds\): the set is not consistent, (?P<fate>.*)")


def lab_aws(lab: LabStatus) -> dict[str, Any]:
    return dict(yaml.safe_load(lab.inventory_path.read_text())["all"]["hosts"][HOST]["aws"])


def moto(lab: LabStatus) -> Any:
    """A client of the lab's moto server itself, not through the proxy."""
    return boto3.client("ec2", endpoint_url=lab_aws(lab)["endpoint_url"],
                        region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def all_snapshots(lab: LabStatus) -> dict[str, dict[str, Any]]:
    return {s["SnapshotId"]: s for s in moto(lab).describe_snapshots(OwnerIds=["self"])[
        "Snapshots"]}


def tags(snap: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in snap.get("Tags", [])}


def writable(lab: LabStatus) -> bool:
    try:
        out = labmod.run_in_host(HOST, ["sh", "-c", "echo ok > /data/.probe && cat /data/.probe"],
                                 state_dir=lab.state_dir, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return out.stdout.strip() == "ok"


@pytest.fixture
def proxy(lab: LabStatus) -> Iterator[Ec2Proxy]:
    with ec2_proxy(lab_aws(lab)["endpoint_url"]) as p:
        yield p


@pytest.fixture
def inv(lab: LabStatus, proxy: Ec2Proxy, tmp_path: Path) -> Path:
    """The lab's inventory with db1's EC2 endpoint at the proxy."""
    data = yaml.safe_load(lab.inventory_path.read_text())
    data["all"]["hosts"][HOST]["aws"]["endpoint_url"] = proxy.url
    path = tmp_path / "via-proxy.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def new_snapshots(lab: LabStatus) -> Iterator[dict[str, dict[str, Any]]]:
    """Filled by the test with the snapshots it made; deleted afterwards (straight at moto),
    so the shared lab's other tests see no leftovers."""
    made: dict[str, dict[str, Any]] = {}
    yield made
    for snap in made:
        moto(lab).delete_snapshot(SnapshotId=snap)


def made_since(lab: LabStatus, before: dict[str, Any],
               into: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    now = all_snapshots(lab)
    into.update({k: v for k, v in now.items() if k not in before})
    return {k: v for k, v in now.items() if k not in before}


def test_call_outliving_the_freeze_fails_the_host_and_deletes_the_set(
        lab: LabStatus, proxy: Ec2Proxy, inv: Path,
        new_snapshots: dict[str, dict[str, Any]]) -> None:
    proxy.hold["CreateSnapshots"] = HOLD
    before = all_snapshots(lab)
    code, doc = run_json(inv, "snapshot", "create", "-l", HOST, "--yes", "--freeze-timeout",
                         str(FREEZE))
    host = doc["hosts"][0]
    assert code == 2 and host["status"] == "failed", host  # failed, never "unreachable"
    m = ERROR.fullmatch(host["error"])
    assert m and m["fate"] == "its 4 snapshots were deleted", host["error"]
    assert "--freeze-timeout" in host["hint"] and "2s" in host["hint"]
    assert proxy.seen["CreateSnapshots"] == 1 and proxy.seen["DeleteSnapshot"] == 4
    assert made_since(lab, before, new_snapshots) == {}  # no untagged snapshot left behind
    code, listed = run_json(inv, "snapshot", "list", "-l", HOST)
    assert code == 0
    old_sets = {tags(s).get("opskit:set-id") for s in before.values()}
    assert [s for s in listed["sets"] if s["set_id"] not in old_sets] == []
    assert writable(lab)


def test_snapshots_of_a_retried_call_are_deleted_too(
        lab: LabStatus, proxy: Ec2Proxy, inv: Path,
        new_snapshots: dict[str, dict[str, Any]]) -> None:
    # A slow call botocore retried made a set no response named: found by its set id.
    proxy.hold["CreateSnapshots"] = HOLD
    proxy.twice.add("CreateSnapshots")
    before = all_snapshots(lab)
    code, doc = run_json(inv, "snapshot", "create", "-l", HOST, "--yes", "--freeze-timeout",
                         str(FREEZE))
    host = doc["hosts"][0]
    m = ERROR.fullmatch(host["error"])
    assert code == 2 and m and m["fate"] == "its 8 snapshots were deleted", host
    assert made_since(lab, before, new_snapshots) == {}
    assert writable(lab)


def test_undeletable_set_is_tagged_and_shown_inconsistent(
        lab: LabStatus, proxy: Ec2Proxy, inv: Path,
        new_snapshots: dict[str, dict[str, Any]]) -> None:
    proxy.hold["CreateSnapshots"] = HOLD
    proxy.fail.add("DeleteSnapshot")
    before = all_snapshots(lab)
    proc = run_opskit(inv, "snapshot", "create", "-l", HOST, "--yes", "--freeze-timeout",
                      str(FREEZE))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    made = made_since(lab, before, new_snapshots)
    assert len(made) == 4
    for snap in made.values():  # marked, and never given member tags
        assert tags(snap)["opskit:consistent"] == "false" and "opskit:member" not in tags(snap)
    (sid,) = {tags(s)["opskit:set-id"] for s in made.values()}
    line = next(x for x in proc.stdout.splitlines() if x.startswith(f"{HOST} | failed | "))
    m = ERROR.fullmatch(line.removeprefix(f"{HOST} | failed | "))
    assert m, line
    assert m["fate"].startswith("4 of its 4 snapshots could not be deleted (")
    assert "UnauthorizedOperation" in m["fate"]
    assert "are tagged opskit:consistent=false: " in m["fate"]
    assert sorted(m["fate"].rsplit(": ", 1)[1].split()) == sorted(made)
    assert "hint: raise --freeze-timeout" in proc.stdout
    assert writable(lab)

    code, listed = run_json(inv, "snapshot", "list", "-l", HOST)
    (shown,) = [s for s in listed["sets"] if s["set_id"] == sid]
    assert shown["state"] == "inconsistent" and not shown["complete"]
    assert not shown["consistent"] and shown["reason"].startswith("not consistent")
    text = run_opskit(inv, "snapshot", "list", "-l", HOST).stdout
    (row,) = [x for x in text.splitlines() if x.startswith(sid)]
    assert row.split()[3] == "inconsistent", row

    code, verified = run_json(inv, "snapshot", "verify", sid, "-l", HOST)
    assert code == 2 and verified["state"] == "inconsistent" and not verified["complete"]
    text_proc = run_opskit(inv, "snapshot", "verify", sid, "-l", HOST)
    assert text_proc.returncode == 2
    assert text_proc.stdout.startswith(f"{sid}: inconsistent (4/4 members"), text_proc.stdout

    code, dry = run_json(inv, "snapshot", "prune", "-l", HOST, "--keep-last", "1",
                         "--dry-run")
    assert code == 0
    deleting = {s["set_id"]: s["state"] for p in dry["plans"] for s in p["delete"]}
    kept = {s["set_id"] for p in dry["plans"] for s in p["keep"]}
    assert deleting.get(sid) == "inconsistent" and sid not in kept
    text = run_opskit(inv, "snapshot", "prune", "-l", HOST, "--keep-last", "1",
                      "--dry-run").stdout
    (row,) = [x for x in text.splitlines() if x.startswith(sid)]
    assert row.split()[2:4] == ["inconsistent", "DELETE"], row


def test_no_delay_through_the_proxy_gives_a_complete_consistent_set(
        lab: LabStatus, proxy: Ec2Proxy, inv: Path,
        new_snapshots: dict[str, dict[str, Any]]) -> None:
    before = all_snapshots(lab)
    code, doc = run_json(inv, "snapshot", "create", "-l", HOST, "--yes", "--freeze-timeout",
                         "20")
    assert code == 0, doc
    sid = doc["hosts"][0]["value"]["set_id"]
    assert proxy.seen["CreateSnapshots"] == 1 and proxy.seen["DeleteSnapshot"] == 0
    made = made_since(lab, before, new_snapshots)
    assert len(made) == 4 and all("opskit:consistent" not in tags(s) for s in made.values())
    code, listed = run_json(inv, "snapshot", "list", "-l", HOST)
    (shown,) = [s for s in listed["sets"] if s["set_id"] == sid]
    assert shown["state"] == "complete" and shown["complete"] and shown["consistent"]
    code, verified = run_json(inv, "snapshot", "verify", sid, "-l", HOST)
    assert code == 0 and verified["complete"]


def test_guard_vouches_only_for_a_freeze_that_held_until_thaw(lab: LabStatus) -> None:
    # Our clock plays no part: held just past the deadline (the guard may still be running)
    # or long past it (the guard has exited and its channel is closed), the answer is no.
    host = inventory.load(lab.inventory_path).select(HOST)

    def hold(seconds: float) -> tuple[str | None, bool]:
        def fn(s: Any) -> tuple[str | None, bool]:
            with frozen(s, "/data", 3) as window:
                time.sleep(seconds)
            return window.reason, window.held
        res = fleet.run(host, fn).results[0]
        assert res.status == "ok", res.error
        return res.value  # type: ignore[no-any-return]

    assert hold(0) == ("asked", True)
    assert hold(3.05) == ("timeout", False)
    assert hold(4.5) == ("timeout", False)
    assert writable(lab)


def test_connection_cut_during_the_call_fails_the_host_not_unreachable(
        lab: LabStatus, proxy: Ec2Proxy, inv: Path,
        new_snapshots: dict[str, dict[str, Any]]) -> None:
    # The guard thaws on EOF but cannot say so: no answer to THAW is "not consistent".
    proxy.hold["CreateSnapshots"] = 3
    sshd = labmod.host_pid(HOST, state_dir=lab.state_dir)
    children = ["pgrep", "-P", str(sshd)]
    before_pids = set(subprocess.run(children, capture_output=True, text=True).stdout.split())
    before = all_snapshots(lab)
    env = {**os.environ, **AWS_ENV}
    create = subprocess.Popen(
        [sys.executable, "-m", "opskit", "-i", str(inv), "--json", "snapshot", "create", "-l",
         HOST, "--yes", "--freeze-timeout", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        cwd=ROOT, env=env)
    try:
        assert proxy.wait_for("CreateSnapshots"), "the snapshot call never came"
        ours = set(subprocess.run(children, capture_output=True, text=True).stdout.split())
        assert ours - before_pids
        for pid in ours - before_pids:  # the sshd process serving opskit's connection
            os.kill(int(pid), signal.SIGKILL)
        out, err = create.communicate(timeout=60)
    finally:
        if create.poll() is None:
            create.kill()
            create.wait()
        # The cut also took the lease's own connection: its release never reached db1.
        drop_lease(lab.state_dir, HOST, lease.scope("snapshot", "/data"))
    host = json.loads(out)["hosts"][0]
    assert create.returncode == 2 and host["status"] == "failed", (host, err)
    assert host["error"].startswith("db1:/data: the freeze guard gave no answer to THAW after "
                                    "CreateSnapshots returned"), host["error"]
    assert "its 4 snapshots were deleted; THAW NOT CONFIRMED" in host["error"]
    assert "fsfreeze -u /data" in host["hint"]
    assert made_since(lab, before, new_snapshots) == {}
    assert writable(lab)
