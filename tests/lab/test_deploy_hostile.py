"""Hostile input on the deploy/rollback path (issue 15), tried on the real lab's app hosts.

Each test plays the attacker first: a release name planted in ``releases/`` that is shell,
artifacts with symlinks out of the release (and device files, FIFOs, setuid), a host name
(inventory or EC2 ``Name`` tag) that is shell, pid files holding -1, 0 or abc. Then it checks
on the host that nothing ran (no file named after the test's marker anywhere it could land),
nothing outside the release changed, and the exit code and the one-line error are the
designed ones. The lab's first app hosts (app1-3) are used as they are (the session lab);
every test puts back what it planted.

The pid file tests send a reload to a host whose pid file says -1: a regression would HUP
every root process of this machine (the lab hosts share its pid namespace). The same lines
are run with a logging ``kill`` first in tests/unit/test_deploy_validate.py.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import worker
import yaml
from helpers import AWS_ENV, private_moto

import opskit.lab as labmod
from opskit.lab import LabStatus

ROOT = Path(__file__).resolve().parents[2]
APP = "/srv/sample"
RELEASES = f"{APP}/releases"


def opskit(inv: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=180,
                          cwd=ROOT, env={**os.environ, **(env or {})})


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        return json.loads(proc.stdout)  # type: ignore[no-any-return]
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON (rc {proc.returncode}): {proc.stdout!r} "
                             f"{proc.stderr!r}") from None


class Apps:
    """The lab's app hosts, as the tests see them over the system ssh client."""

    def __init__(self, lab: LabStatus) -> None:
        self.lab = lab
        self.inv = lab.inventory_path
        self.names = [h.name for h in lab.hosts if "app" in h.groups]

    def sh(self, host: str, command: str, check: bool = True) -> str:
        """``command`` on ``host`` over the system ssh client (not opskit's code path)."""
        h, state = self.lab.host(host), Path(self.lab.state_dir)
        argv = ["ssh", "-i", str(state / "id_ed25519"), "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={state / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", "-p", str(h.port), f"root@{h.address}",
                command]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        return proc.stdout

    def current(self, host: str) -> str:
        return os.path.basename(self.sh(host, f"readlink {APP}/current").strip())

    def releases(self, host: str) -> list[str]:
        return sorted(self.sh(host, f"ls {RELEASES}").split())

    def master(self, host: str) -> int:
        return int(self.sh(host, f"cat {APP}/shared/pids/gunicorn.pid"))

    def served(self, host: str) -> str:
        port = labmod.app_port(worker.PORT)
        url = f"http://{self.lab.host(host).address}:{port}/"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(json.loads(resp.read())["release"])

    def healthy(self, host: str) -> bool:
        try:
            return self.served(host) == self.current(host) and len(self.releases(host)) >= 2
        except (OSError, AssertionError, ValueError):
            return False

    def marker_anywhere(self, host: str, marker: str) -> list[str]:
        """Where a file named ``marker*`` is, on the host (its home, /, /tmp, /srv) and here."""
        found = self.sh(host, f"find ~ / /tmp /var/tmp -maxdepth 1 -name {marker}'*'; "
                              f"find /srv -name {marker}'*'", check=False).split()
        here = [str(p) for d in (ROOT, Path.home(), Path("/tmp"))
                for p in d.glob(f"{marker}*")]
        return found + here

    def inventory_copy(self, path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
        data = yaml.safe_load(self.inv.read_text())
        edit(data)
        path.write_text(yaml.safe_dump(data))
        return path


def app_settings(data: dict[str, Any]) -> dict[str, Any]:
    return data["all"]["children"]["app"]["vars"]["deploy"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def apps(lab: LabStatus, lab_params: dict[str, Any]) -> Apps:
    """app1-3 each serving a release with an older one to roll back to (v1, then v2)."""
    labmod.up(**lab_params)  # every host up and in its target group, whatever ran before
    a = Apps(lab)
    if not all(a.healthy(h) for h in a.names):
        for ref in ("v1", "v2"):
            proc = opskit(a.inv, "deploy", "--ref", ref, "--batch", "100%", "--yes", "-l", "app")
            assert proc.returncode == 0, proc.stdout + proc.stderr
    return a


@pytest.fixture()
def marker() -> str:
    return f"PWNED_{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def unchanged(apps: Apps) -> Iterator[Callable[[str], None]]:
    """``check(host)``: the host still serves what it served, same current, same master."""
    before = {h: (apps.current(h), apps.master(h), apps.served(h)) for h in apps.names}

    def check(host: str) -> None:
        assert (apps.current(host), apps.master(host), apps.served(host)) == before[host]

    yield check


# -- release names from the host ----------------------------------------------------------


def test_poisoned_release_name_is_ignored_by_rollback_releases_and_deploy(
        apps: Apps, marker: str) -> None:
    host = apps.names[0]
    current = apps.current(host)
    real_previous = apps.releases(host)[-2]
    # "'" sorts before "-": right before current, i.e. what rollback would call "previous".
    poison = f"{current[:17]}';touch${{IFS}}{marker};'"
    newline = f"{current[:17]}\n;touch {marker}"
    # Files, not dirs: the old activate reached its error branch (test -d), where the name
    # was pasted into an echo.
    apps.sh(host, f"touch {shlex.quote(f'{RELEASES}/{poison}')} "
                  f"{shlex.quote(f'{RELEASES}/{newline}')}")
    try:
        proc = opskit(apps.inv, "--json", "rollback", "-l", host, "--yes")
        doc = as_json(proc)
        assert proc.returncode == 0, doc
        value = doc["hosts"][0]["value"]
        assert value["to"] == real_previous and apps.current(host) == real_previous
        assert apps.served(host) == real_previous
        warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
        assert any(repr(poison) in ln for ln in warnings), proc.stderr
        assert any(repr(newline) in ln for ln in warnings), proc.stderr
        assert len(value["ignored"]) == 2

        proc = opskit(apps.inv, "--json", "releases", "-l", host)
        assert proc.returncode == 0 and repr(poison) in proc.stderr
        listed = as_json(proc)["hosts"][0]["value"]
        assert poison not in listed["releases"] and len(listed["ignored"]) == 2

        proc = opskit(apps.inv, "--json", "deploy", "--ref", "v2", "-l", host, "--yes")
        doc = as_json(proc)
        assert proc.returncode == 0, doc
        assert repr(poison) in proc.stderr and doc["hosts"][0]["deploy"]["ignored"]
        assert apps.served(host) == doc["artifact"]["release"]
        listing = apps.sh(host, f"ls {RELEASES}")
        assert poison in listing  # not ours: never pruned either
        assert apps.marker_anywhere(host, marker) == []
    finally:
        apps.sh(host, f"rm -rf -- {shlex.quote(f'{RELEASES}/{poison}')} "
                      f"{shlex.quote(f'{RELEASES}/{newline}')}")


def test_current_pointing_at_a_poisoned_name_is_not_rolled_back_to(apps: Apps, marker: str,
                                                                  tmp_path: Path) -> None:
    """The deploy's recovery switches back to what ``current`` named: a shell word there is
    not a release, so a failed deploy has nothing to roll back to (and runs nothing)."""
    host = apps.names[1]
    current = apps.current(host)
    poison = f"{current[:17]}';touch${{IFS}}{marker};'"
    q_poison = shlex.quote(f"{RELEASES}/{poison}")
    # Without the load balancer: a host with nothing to roll back to is left out of it.
    inv = apps.inventory_copy(tmp_path / "lab.yml",
                              lambda d: app_settings(d).pop("target_group_arn"))
    apps.sh(host, f"cp -a {RELEASES}/{current} {q_poison} && ln -sfn {q_poison} {APP}/.c && "
                  f"mv -T {APP}/.c {APP}/current")
    try:
        proc = opskit(apps.inv, "--json", "rollback", "-l", host, "--yes")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert as_json(proc)["hosts"][0]["error"] == (
            f"current points at {RELEASES + '/' + poison!r}, not a release under {RELEASES}: "
            f"give --to RELEASE")
        proc = opskit(inv, "--json", "deploy", "--ref", "broken", "-l", host, "--yes")
        doc = as_json(proc)
        assert proc.returncode == 2, doc
        error = doc["hosts"][0]["error"]
        assert "health check" in error and "no previous release to roll back to" in error
        assert "not a release under" in proc.stderr and repr(poison) in proc.stderr
        assert apps.marker_anywhere(host, marker) == []
    finally:
        proc = opskit(inv, "deploy", "--ref", "v2", "-l", host, "--yes")
        apps.sh(host, f"rm -rf -- {q_poison}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert apps.healthy(host)


@pytest.mark.parametrize("extra", [["--dry-run"], ["--yes"]])
def test_rollback_to_outside_releases_is_bad_input(apps: Apps, extra: list[str]) -> None:
    proc = opskit(apps.inv, "rollback", "--to", "../../etc", *extra)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: bad release name '../../etc'",
        "hint: release ids look like 20261124034512123-3f2a9c1 (see `opskit releases`)"]
    assert "would switch" not in proc.stdout


# -- hostile artifacts ---------------------------------------------------------------------


def member(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644,
           data: bytes = b"", link: str = "", dev: tuple[int, int] = (0, 0)) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
    info.devmajor, info.devminor = dev
    tar.addfile(info, io.BytesIO(data) if data else None)


def artifact(path: Path, add: Callable[[tarfile.TarFile], None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        member(tar, "app.py", data=b"raise SystemExit('must never be imported')\n")
        add(tar)
    return path


VICTIM = "/srv/victim"  # /srv is private to each lab host
OUTSIDE = "/srv/outside"

HOSTILE = {
    "RELEASE -> a host file": (
        lambda t: member(t, "RELEASE", tarfile.SYMTYPE, link=VICTIM), "'RELEASE': symlink"),
    "REVISION -> a host file, relative": (
        lambda t: member(t, "REVISION", tarfile.SYMTYPE, link="../../../victim"),
        "'REVISION': symlink"),
    "a directory link out of the release": (
        lambda t: member(t, "lib", tarfile.SYMTYPE, link="/srv/outside"), "'lib': symlink"),
    "shared dir through a link out": (
        lambda t: member(t, "tmp", tarfile.SYMTYPE, link=OUTSIDE), "'tmp': symlink"),
    "shared dir through a link inside": (
        lambda t: (member(t, "inner", tarfile.DIRTYPE, 0o755),
                   member(t, "inner/pids", tarfile.DIRTYPE, 0o755),
                   member(t, "tmp", tarfile.SYMTYPE, link="inner")), "'tmp': not a directory"),
    "a FIFO": (lambda t: member(t, "pipe", tarfile.FIFOTYPE), "'pipe': FIFO"),
    "a device file": (lambda t: member(t, "null", tarfile.CHRTYPE, 0o666, dev=(1, 3)),
                      "'null': device file"),
    "a setuid binary": (lambda t: member(t, "su", mode=0o4755, data=b"#!/bin/sh\nid\n"),
                        "'su': setuid/setgid"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_artifact_is_refused_before_the_switch(apps: Apps, unchanged: Any,
                                                       tmp_path: Path, case: str) -> None:
    add, needle = HOSTILE[case]
    host = apps.names[2]
    apps.sh(host, f"printf precious > {VICTIM} && mkdir -p {OUTSIDE}/pids && "
                  f"printf keep > {OUTSIDE}/pids/keep")
    inv = apps.inventory_copy(tmp_path / "lab.yml", lambda d: app_settings(d).update(
        shared_dirs=["log", "pids", "tmp/pids"]))
    releases = apps.releases(host)
    try:
        proc = opskit(inv, "--json", "deploy", "--artifact",
                      str(artifact(tmp_path / "evil.tar.gz", add)), "-l", host, "--yes")
        doc = as_json(proc)
        assert proc.returncode == 2, doc
        error = doc["hosts"][0]["error"]
        assert "\n" not in error and error.startswith("artifact refused: "), error
        assert needle in error and "current untouched" in error
        assert apps.sh(host, f"cat {VICTIM}; cat {OUTSIDE}/pids/keep") == "preciouskeep"
        assert apps.releases(host) == releases  # the refused release dir is gone
        unchanged(host)
    finally:
        apps.sh(host, f"rm -rf {VICTIM} {OUTSIDE}")


# -- host names and addresses in command templates ----------------------------------------


def test_hostile_inventory_name_is_a_config_error(apps: Apps, unchanged: Any, tmp_path: Path,
                                                  marker: str) -> None:
    evil = f"web1;touch${{IFS}}{marker};#"
    victim = apps.names[0]

    def edit(d: dict[str, Any]) -> None:
        app_settings(d)["install"] = "echo installing on {name}"
        hosts = d["all"]["children"]["app"]["hosts"]
        hosts[evil] = hosts.pop(victim)  # the same address: a run would reach that host
        if victim in d["all"].get("hosts", {}):
            d["all"]["hosts"][evil] = d["all"]["hosts"].pop(victim)

    inv = apps.inventory_copy(tmp_path / "lab.yml", edit)
    for args in (["deploy", "--ref", "v2", "--yes"], ["deploy", "--ref", "v2", "--dry-run"]):
        proc = opskit(inv, *args)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        first, hint = proc.stderr.splitlines()
        assert first == (f"error: host {evil!r}: its name cannot be filled into deploy.install "
                         f"(not a plain host name or address)")
        assert hint.startswith("hint: ")
    assert apps.marker_anywhere(victim, marker) == []
    for h in apps.names:
        unchanged(h)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """A moto server of this module's own (the lab's serves its ELB): its endpoint."""
    with private_moto() as endpoint:
        yield endpoint


@pytest.mark.parametrize("via", ["name", "address"])
def test_hostile_ec2_tag_is_a_config_error(apps: Apps, unchanged: Any, tmp_path: Path,
                                           moto: str, marker: str, via: str) -> None:
    """With the EC2 source the host name is the ``Name`` tag (and the address may come from a
    tag too): whoever may tag an instance must not run code on the next deploy."""
    target = apps.lab.host(apps.names[0])
    evil = f"web1;touch${{IFS}}{marker};#"
    tags = {"Name": evil if via == "name" else f"web-{marker.lower()}", "Role": "app",
            "Addr": f"{target.address};touch${{IFS}}{marker};#"}
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto)
    reply = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                              InstanceType="t3.micro", TagSpecifications=[{
                                  "ResourceType": "instance",
                                  "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
    instance = reply["Instances"][0]["InstanceId"]
    lab = yaml.safe_load(apps.inv.read_text())
    deploy = {**app_settings(lab), "install": "echo installing on {name}",
              "start": app_settings(lab)["start"]}
    deploy.pop("target_group_arn", None)
    conn = {k: v for k, v in lab["all"]["vars"].items() if k.startswith(("ansible_", "opskit_"))}
    if via == "name":
        conn["ansible_host"] = target.address  # a run would reach the lab host
    source = {"source": "ec2", "regions": ["us-east-1"], "aws": {"endpoint_url": moto},
              "filters": {"instance-id": instance}, "groups": ["app"],
              "vars": {**conn, "deploy": deploy}}
    if via == "address":
        source["ansible_host_from"] = "tag:Addr"
    inv = tmp_path / "ec2.yml"
    inv.write_text(yaml.safe_dump(source))
    try:
        proc = opskit(inv, "deploy", "--ref", "v2", "--yes", env=AWS_ENV)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        first = proc.stderr.splitlines()[0]
        assert "cannot be filled into deploy." in first and f"host {tags['Name']!r}" in first
        assert ("its name" if via == "name" else repr(tags["Addr"])) in first
        assert apps.marker_anywhere(target.name, marker) == []
        unchanged(target.name)
    finally:
        ec2.terminate_instances(InstanceIds=[instance])


# -- pid files ------------------------------------------------------------------------------


@pytest.fixture()
def sentinel(apps: Apps) -> Iterator[int]:
    """A process of the SSH user (root) on an app host: a kill -1 would end it."""
    out = apps.sh(apps.names[1], "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!")
    pid = int(out.strip())
    yield pid
    try:
        os.kill(pid, signal.SIGTERM)  # the lab hosts share this machine's pid namespace
    except ProcessLookupError:
        pass


@pytest.mark.parametrize("content", ["-1", "0", "abc"])
def test_pid_file_without_a_valid_pid_sends_no_signal(apps: Apps, unchanged: Any,
                                                      sentinel: int, tmp_path: Path,
                                                      content: str) -> None:
    host = apps.names[1]
    pid_file = f"{APP}/shared/pids/hostile.pid"
    apps.sh(host, f"printf '%s\\n' {shlex.quote(content)} > {pid_file}")
    inv = apps.inventory_copy(tmp_path / "lab.yml",
                              lambda d: app_settings(d).update(pid_file=pid_file))
    try:
        for args in (["rollback", "-l", host, "--yes"],
                     ["deploy", "--ref", "v1", "-l", host, "--yes"]):
            proc = opskit(inv, "--json", *args)
            doc = as_json(proc)
            assert proc.returncode == 2, doc
            error = doc["hosts"][0]["error"]
            assert error.startswith(f"pid file {pid_file} holds {content!r}, not a process id "
                                    f"> 1: no signal sent"), error
            os.kill(sentinel, 0)  # still alive
            unchanged(host)
    finally:
        apps.sh(host, f"rm -f {pid_file}")
