"""The write-ahead journal on the real lab: no change without a started record, each prune
deletion journaled as it happens (one failing delete through a proxy in front of moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from ec2_proxy import ec2_proxy
from helpers import ROOT, run_json, run_opskit

from opskit.lab import LabStatus

MAIN = ("--group", "main")  # the lab's Redis group redis1-3:6379 (AUTH)

HOST = "db1"


def host_vars(inv: Path, name: str) -> dict[str, Any]:
    return yaml.safe_load(inv.read_text())["all"]["hosts"][name]


def ec2(endpoint: str) -> Any:
    return boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def pointed_at(lab: LabStatus, tmp_path: Path, endpoint: str) -> Path:
    """A copy of the lab inventory whose hosts reach AWS through ``endpoint``."""
    data = yaml.safe_load(lab.inventory_path.read_text())
    for h in data["all"]["hosts"].values():
        if isinstance(h.get("aws"), dict):
            h["aws"]["endpoint_url"] = endpoint
    path = tmp_path / "via-proxy.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def records(journal: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in journal.read_text().splitlines()]


def test_prune_journals_each_deletion_and_exits_2_when_one_fails(
        lab: LabStatus, tmp_path: Path) -> None:
    moto = host_vars(lab.inventory_path, HOST)["aws"]["endpoint_url"]
    journal = tmp_path / "journal.jsonl"
    for _ in range(3):
        code, doc = run_json(lab.inventory_path, "snapshot", "create", "-l", HOST, "--yes",
                             journal=journal)
        assert code == 0, doc
    code, dry = run_json(lab.inventory_path, "snapshot", "prune", "-l", HOST, "--keep-last",
                         "1", "--dry-run", journal=journal)
    doomed = dry["plans"][0]["delete"]
    assert code == 0 and len(doomed) >= 2
    snap_ids = lambda d: [m["snapshot_id"] for m in d["members"]]  # noqa: E731
    refused = snap_ids(doomed[0])[0]  # one snapshot of one set cannot be deleted

    with ec2_proxy(moto) as proxy:
        proxy.refuse = lambda action, params: (action == "DeleteSnapshot"
                                               and params.get("SnapshotId") == refused)
        proc = run_opskit(pointed_at(lab, tmp_path, proxy.url), "snapshot", "prune", "-l",
                          HOST, "--keep-last", "1", "--yes", journal=journal)
    assert proc.returncode == 2, proc
    err = proc.stderr.strip().splitlines()
    assert err[0].startswith("error: deleted ") and f"{len(doomed) - 1} snapshot sets, 1 failed" \
        in err[0] and "UnauthorizedOperation" in err[0] and err[1].startswith("hint: "), err
    assert "Traceback" not in proc.stderr
    run = [r for r in records(journal) if r["command"].startswith("snapshot prune")
           and not r["dry_run"]]
    assert run[0]["phase"] == "started" and run[-1]["phase"] == "end"
    assert {r["run_id"] for r in run} == {run[0]["run_id"]}
    steps = {r["details"]["snapshot_id"]: r for r in run if r["phase"] == "step"}
    every = {s for d in doomed for s in snap_ids(d)}
    assert set(steps) == every  # each deletion journaled, the failed one too
    assert steps[refused]["outcomes"][HOST]["status"] == "failed"
    assert all(steps[s]["outcomes"][HOST]["status"] == "ok" for s in every - {refused})
    assert run[-1]["exit_code"] == 2 and list(run[-1]["details"]["failed"]) == \
        [doomed[0]["set_id"]]
    left = {s["SnapshotId"] for s in ec2(moto).describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert refused in left and not (every - {refused}) & left  # the journal tells the truth
    shown = run_opskit(lab.inventory_path, "journal", "show", run[0]["run_id"], journal=journal)
    assert shown.returncode == 0 and refused in shown.stdout


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    path = tmp_path / "journal-is-a-directory"
    path.mkdir()
    return path


def test_an_unwritable_journal_changes_nothing_on_the_hosts(
        lab: LabStatus, unwritable: Path) -> None:
    before = run_json(lab.inventory_path, "pg", "status", "-l", "db")[1]
    redis_before = run_json(lab.inventory_path, "redis", "status", "-l", "redis", *MAIN)[1]
    moto = host_vars(lab.inventory_path, HOST)["aws"]["endpoint_url"]
    snaps = len(ec2(moto).describe_snapshots(OwnerIds=["self"])["Snapshots"])
    for args in (("pg", "switchover", "-l", "db", "--to", "db2", "--yes"),
                 ("snapshot", "create", "-l", HOST, "--yes"),
                 ("exec", "-l", HOST, "--yes", "--", "touch /data/journal-probe"),
                 ("redis", "switchover", "-l", "redis", *MAIN, "--to", "redis2:6379", "--yes")):
        proc = run_opskit(lab.inventory_path, *args, journal=unwritable)
        assert proc.returncode == 1, (args, proc)
        assert "cannot write the journal" in proc.stderr and "nothing was changed" in proc.stderr
        assert "Traceback" not in proc.stderr
    after = run_json(lab.inventory_path, "pg", "status", "-l", "db")[1]
    roles = lambda doc: {n["name"]: (n["role"], n.get("upstream")) for n in doc["nodes"]}  # noqa: E731
    assert roles(after) == roles(before)
    redis_after = run_json(lab.inventory_path, "redis", "status", "-l", "redis", *MAIN)[1]
    assert [(i["name"], i["role"]) for i in redis_after["instances"]] == \
        [(i["name"], i["role"]) for i in redis_before["instances"]]
    assert len(ec2(moto).describe_snapshots(OwnerIds=["self"])["Snapshots"]) == snaps
    probe = run_opskit(lab.inventory_path, "--json", "exec", "-l", HOST, "--yes", "--",
                       "test -e /data/journal-probe && echo yes || echo no")
    assert json.loads(probe.stdout)["hosts"][0]["stdout"].strip() == "no"


def test_a_manual_snapshot_during_a_cron_one_is_refused(lab: LabStatus, tmp_path: Path) -> None:
    moto = host_vars(lab.inventory_path, HOST)["aws"]["endpoint_url"]
    journal = tmp_path / "journal.jsonl"
    with ec2_proxy(moto) as proxy:
        proxy.hold["CreateSnapshots"] = 3  # the cron run is frozen and inside its call
        cron = subprocess.Popen(
            [sys.executable, "-m", "opskit", "-i", str(pointed_at(lab, tmp_path, proxy.url)),
             "snapshot", "create", "-l", HOST, "--cron", "--freeze-timeout", "30"],
            cwd=ROOT, env={**os.environ, "OPSKIT_JOURNAL": str(journal)},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proxy.wait_for("CreateSnapshots"), "the cron run never called CreateSnapshots"
            manual = run_opskit(lab.inventory_path, "snapshot", "create", "-l", HOST, "--yes",
                                journal=journal)
        finally:
            cron_out, cron_err = cron.communicate(timeout=120)
    assert cron.returncode == 0, (cron_out, cron_err)
    assert manual.returncode == 4, manual
    cron_run = next(r["run_id"] for r in records(journal)
                    if r["phase"] == "started" and "--cron" in r["argv"])
    assert "locked by" in manual.stderr and cron_run in manual.stderr, manual.stderr
    assert len(manual.stderr.strip().splitlines()) == 2 and "Traceback" not in manual.stderr
