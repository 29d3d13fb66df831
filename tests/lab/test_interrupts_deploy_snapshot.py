"""Ctrl-C / SIGTERM during `opskit deploy` and `opskit snapshot create`, on the real lab.

Each run is a real opskit process (SIGINT at its default) signalled at a moment of the run:
before the canary's switch, while the canary is between leaving and rejoining the target
group, while batch 2 is in its switches; for snapshots, before the freeze, and while
CreateSnapshots is in flight inside the freeze (held there by ec2_proxy.py). Afterwards:
exit 130, no traceback, every app host on its old release or the new one and serving it,
the filesystem thawed, no untagged set in moto, the journal's run interrupted (exit 130),
and the one paragraph naming where each host is and how to go on.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from ec2_proxy import Ec2Proxy
from test_deploy import _elb, app_hosts, fleet, host_state, released, served  # noqa: F401
from test_snapshot_freeze_window import (  # noqa: F401
    HOST,
    all_snapshots,
    inv,
    made_since,
    new_snapshots,
    proxy,
    tags,
    writable,
)

from opskit.lab import LabStatus

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


class Proc:
    """`opskit -i INV ARGS` in the background, its output lines read as they come."""

    def __init__(self, inventory: Path, *args: str, journal: Path) -> None:
        env = {**os.environ, "OPSKIT_JOURNAL": str(journal), "PYTHONUNBUFFERED": "1"}
        # A background child of a non-interactive shell ignores SIGINT: reset it.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opskit", "-i", str(inventory), *args], cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []  # stdout and stderr, as they came
        self.out: list[str] = []
        self.err: list[str] = []
        self._came = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                         for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self._came:
                into.append(line)
                self.lines.append(line)
                self._came.notify_all()

    def wait_line(self, pattern: str, nth: int = 1, timeout: float = 120) -> None:
        """Until the ``nth`` line matching ``pattern`` came (on stdout or stderr)."""
        rx = re.compile(pattern)
        with self._came:
            ok = self._came.wait_for(
                lambda: sum(bool(rx.search(x)) for x in self.lines) >= nth
                or self.proc.poll() is not None, timeout)
            seen = sum(bool(rx.search(x)) for x in self.lines)
        assert ok and seen >= nth, f"no line {pattern!r} #{nth} in:\n{''.join(self.lines)}"

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=10)
        return code, "".join(self.out), "".join(self.err)


def journal_run(inventory: Path, journal: Path, command: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "opskit", "-i", str(inventory), "journal", "--json"]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
                         env={**os.environ, "OPSKIT_JOURNAL": str(journal)}).stdout
    runs = [r for r in json.loads(out)["runs"] if r["command"] == command]
    assert len(runs) == 1, runs
    return runs[0]


def names(said: str) -> list[str]:
    return [] if said == "none" else said.split(", ")


# moment -> (a line of the run, which one of them): the signal is sent as it comes.
DEPLOY_MOMENTS = {
    "before the canary's switch": (r"^batch 1: ", 1),
    "in the canary's switch": (r"^\S+: draining ", 1),  # it left the target group
    "in batch 2's switches": (r"^\S+: draining ", 2),
}


@pytest.mark.parametrize(("moment", "sig"), [
    ("before the canary's switch", signal.SIGINT),
    ("in the canary's switch", signal.SIGTERM),
    ("in batch 2's switches", signal.SIGINT),
])
def test_signal_during_deploy_leaves_every_host_on_one_release_serving_it(
        released: LabStatus, tmp_path: Path, moment: str, sig: int) -> None:  # noqa: F811
    inv_path = released.inventory_path
    old = host_state(inv_path)
    journal = tmp_path / "journal.jsonl"
    run = Proc(inv_path, "deploy", "--ref", "v1", "--yes", "--batch", "1,100%",
               journal=journal)
    run.wait_line(*DEPLOY_MOMENTS[moment])
    run.send(sig)
    code, out, err = run.finish()
    assert code == 130, out + err
    assert "Traceback" not in out + err
    new = re.search(r"^release (\S+): ", err, re.M)
    canary = re.search(r"^batch 1: (\S+)$", err, re.M)
    assert new and canary, err
    rel, canary_name = new.group(1), canary.group(1)

    now = host_state(inv_path)
    apps = app_hosts(released)
    for h in apps:  # the old release or the new one, and serving what current says
        assert now[h.name]["current"] in (old[h.name]["current"], rel), (h.name, err)
        assert served(h.address)["release"] == now[h.name]["current"]
    client, tg, ids = _elb(inv_path)
    health = client.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    states = {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in health}
    assert all(states.get(ids[h.name]) == "healthy" for h in apps), states

    on_new = sorted(h.name for h in apps if now[h.name]["current"] == rel)
    if moment == "before the canary's switch":
        assert on_new in ([], [canary_name]), on_new
    elif moment == "in the canary's switch":  # it finished; batch 2 never started
        assert on_new == [canary_name], on_new
        name = "SIGTERM"
        assert f"{name}: finishing switch -> reload -> health on {canary_name} first" in err
    else:  # the canary, and at least the batch-2 host that was draining, are on it
        assert canary_name in on_new and len(on_new) >= 2, on_new
        assert "Ctrl-C: finishing switch -> reload -> health on " in err

    said = re.search(r"^stopped: deploy interrupted at a safe point \(no host was left "
                     r"half-switched\); on the new release (\S+) and healthy: (.*?); untouched "
                     r"on their old release: (.*?)\.$", err, re.M)
    assert said, err
    assert said.group(1) == rel
    assert sorted(names(said.group(2))) == on_new
    assert sorted(names(said.group(3))) == sorted(h.name for h in apps if h.name not in on_new)
    assert re.search(r"^continue: re-run `opskit -i \S+ deploy --ref v1 --yes --batch 1,100%`",
                     err, re.M), err
    ran = journal_run(inv_path, journal, "deploy")
    assert ran["status"] == "interrupted" and ran["exit_code"] == 130, ran


FREEZE_TIMEOUT = "10"  # well past the hold below: the freeze holds until our THAW


@pytest.mark.parametrize(("moment", "sig"), [
    ("before the freeze", signal.SIGINT),
    ("CreateSnapshots in flight", signal.SIGINT),
    ("CreateSnapshots in flight", signal.SIGTERM),
])
def test_signal_during_snapshot_create_leaves_a_complete_set_or_none(
        lab: LabStatus, proxy: Ec2Proxy, inv: Path,  # noqa: F811
        new_snapshots: dict[str, dict[str, Any]], tmp_path: Path,  # noqa: F811
        moment: str, sig: int) -> None:
    action = "DescribeInstances" if moment == "before the freeze" else "CreateSnapshots"
    proxy.hold[action] = 1.5
    before = all_snapshots(lab)
    journal = tmp_path / "journal.jsonl"
    run = Proc(inv, "snapshot", "create", "-l", HOST, "--yes", "--freeze-timeout",
               FREEZE_TIMEOUT, journal=journal)
    assert proxy.wait_for(action), "".join(run.lines)
    run.send(sig)
    code, out, err = run.finish()
    assert code == 130, out + err
    assert "Traceback" not in out + err
    assert writable(lab)  # thawed
    made = made_since(lab, before, new_snapshots)
    head = (r"^stopped: snapshot create interrupted at a safe point \(every filesystem thawed, "
            r"no set left untagged\); ")
    if moment == "before the freeze":
        assert made == {}
        assert proxy.seen["CreateSnapshots"] == 0
        assert re.search(head + rf"a new complete set: none; not started, no new set: {HOST}\.$",
                         err, re.M), err
        assert f"continue: snapshot the rest: `opskit snapshot create -l {HOST} --yes`" in err
    else:
        name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
        assert f"{name}: finishing freeze -> snapshot -> thaw -> tag on {HOST} first" in err
        assert made, "no set was made"
        sets = {tags(s).get("opskit:set-id") for s in made.values()}
        assert len(sets) == 1 and None not in sets, made  # one set, every snapshot tagged
        (sid,) = sets
        members = sorted(int(tags(s).get("opskit:member", "-1")) for s in made.values())
        count = int(tags(next(iter(made.values())))["opskit:members"])
        assert members == list(range(count)), members  # complete, each tagged
        assert re.search(head + rf"a new complete set: {HOST} \({sid}\); not started, no new "
                         r"set: none\.$", err, re.M), err
    ran = journal_run(inv, journal, "snapshot create")
    assert ran["status"] == "interrupted" and ran["exit_code"] == 130, ran
