"""What the lab gives a deploy: the sample repo, gunicorn on app hosts, AWS on a moto server.

No `opskit deploy` here: releases are laid out by hand, as the deploy will do it.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import signal
import subprocess
import tarfile
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3.session
import botocore.session
import pytest
import worker
import yaml
from helpers import wait_for
from worker import SMALL_PORT

import opskit.lab as labmod
from opskit.lab import LabStatus, app_service

pytestmark = pytest.mark.lab

ROOT = "/srv/sample"
PID_FILE = f"{ROOT}/shared/pids/gunicorn.pid"
# No proxy for the lab's 127.x servers, whatever the environment says.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------- helpers


def inventory(path: pathlib.Path | str) -> dict[str, Any]:
    return yaml.safe_load(pathlib.Path(path).read_text())["all"]  # type: ignore[no-any-return]


def instance_ids(path: pathlib.Path | str) -> dict[str, str]:
    return {n: hv["aws"]["instance_id"] for n, hv in inventory(path)["hosts"].items()}


def deploy_vars(inv: dict[str, Any]) -> dict[str, Any]:
    return inv["children"]["app"]["vars"]["deploy"]  # type: ignore[no-any-return]


def git(repo: str, *args: str) -> str:
    done = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    with HTTP.open(url, timeout=2) as resp:
        return resp.status, json.loads(resp.read())


def try_get_json(url: str) -> dict[str, Any] | None:
    try:
        return get_json(url)[1]
    except OSError:
        return None


def aws_clients(aws: dict[str, Any]) -> tuple[Any, Any]:
    """ec2 and elbv2 clients from a host's ``aws:`` vars alone (no AWS_PROFILE, no ~/.aws)."""
    no_env: dict[str, tuple[Any, ...]] = {"profile": (None, None, None, None)}
    for var in ("config_file", "credentials_file"):
        no_env[var] = (None, None, os.devnull, None)
    session = boto3.session.Session(
        botocore_session=botocore.session.Session(session_vars=no_env),
        aws_access_key_id=aws["access_key_id"],
        aws_secret_access_key=aws["secret_access_key"],
        region_name=aws["region"],
    )
    kw = {"endpoint_url": aws["endpoint_url"]}
    return session.client("ec2", **kw), session.client("elbv2", **kw)


def instances(ec2: Any, ids: list[str]) -> dict[str, dict[str, str]]:
    """instance id -> its tags."""
    found = {}
    for res in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
        for inst in res["Instances"]:
            found[inst["InstanceId"]] = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
    return found


def registered_targets(elbv2: Any, arn: str) -> set[str]:
    descs = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return {d["Target"]["Id"] for d in descs}


def process_gone(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def moto_servers_of(state_dir: pathlib.Path) -> list[int]:
    """Live processes carrying the lab's marker for this state dir in their environment."""
    marker = f"OPSKIT_LAB_AWS={state_dir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or process_gone(int(entry)):
            continue
        try:
            env = pathlib.Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in env:
            found.append(int(entry))
    return found


# ---------------------------------------------------------------- sample repo


def test_sample_repo_has_v1_v2_and_broken(lab: LabStatus, tmp_path: pathlib.Path) -> None:
    repo = deploy_vars(inventory(lab.inventory_path))["repo"]
    assert repo == str(pathlib.Path(lab.state_dir) / "sample-app")
    assert set(git(repo, "tag").split()) == {"v1", "v2", "broken"}
    assert git(repo, "rev-parse", "v2^") == git(repo, "rev-parse", "v1")
    assert git(repo, "rev-parse", "broken^") == git(repo, "rev-parse", "v2")
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse", "v2")

    tar = tmp_path / "v1.tar"
    subprocess.run(["git", "-C", repo, "archive", "-o", str(tar), "v1"], check=True)
    with tarfile.open(tar) as archive:
        assert "app.py" in archive.getnames()
    assert 'VERSION = "1"' in git(repo, "show", "v1:app.py")
    assert 'VERSION = "2"' in git(repo, "show", "v2:app.py")
    # `broken` fails at import, as a release whose workers cannot boot.
    (tmp_path / "app.py").write_text(git(repo, "show", "broken:app.py"))
    done = subprocess.run(
        ["python3", "-c", "import app"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode != 0 and "RuntimeError: broken release" in done.stderr


# ---------------------------------------------------------------- gunicorn on an app host


def stop_gunicorn_and_remove_app(lab: LabStatus, host: str) -> None:
    # The service's own stop: the pid file's master, checked to be gunicorn in this host.
    pid = app_service.master_pid(lab.host(host))
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: process_gone(pid), 15)  # zombies count as gone
    done = labmod.run_in_host(host, ["rm", "-rf", ROOT], state_dir=lab.state_dir, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def app1_clean(lab: LabStatus) -> Iterator[str]:
    """app1 without gunicorn or /srv/sample, before (whatever ran earlier) and after the test."""
    stop_gunicorn_and_remove_app(lab, "app1")
    yield "app1"
    stop_gunicorn_and_remove_app(lab, "app1")


def lay_out_release(lab: LabStatus, host: str, repo: str, tag: str, release: str) -> None:
    """What a deploy does before the switch: releases/<id> from ``git archive`` + RELEASE."""
    q = shlex.quote
    rdir = f"{ROOT}/releases/{release}"
    script = f"""set -e
        mkdir -p {rdir} {ROOT}/shared/pids {ROOT}/shared/log
        git -C {q(repo)} archive {tag} | tar -x -C {rdir}
        echo {release} > {rdir}/RELEASE
        git -C {q(repo)} rev-parse {tag} > {rdir}/REVISION
        ln -sfn {rdir} {ROOT}/.current-{release} && mv -T {ROOT}/.current-{release} {ROOT}/current
    """
    done = labmod.run_in_host(host, ["sh", "-c", script], state_dir=lab.state_dir, timeout=30)
    assert done.returncode == 0, done.stderr


def test_gunicorn_serves_a_release_and_a_hup_switches_it(
    lab: LabStatus, lab_ssh, app1_clean: str
) -> None:
    host = lab.host(app1_clean)
    inv = inventory(lab.inventory_path)
    deploy = deploy_vars(inv)
    repo = deploy["repo"]
    pid_file = host.state_dir / "srv" / PID_FILE.removeprefix("/srv/")  # app1's /srv, our side
    assert labmod.status(state_dir=lab.state_dir).host("app1").apps == {"gunicorn": False}

    lay_out_release(lab, "app1", repo, "v1", "A")
    start = deploy["start"].replace("{address}", host.address)
    # As the deployer runs it: over SSH, `sh -c`; --daemon must not hold the session open.
    done = lab_ssh("app1", f"cd / && sh -c {shlex.quote(start)}")
    assert done.returncode == 0, done.stderr
    # --daemon returns before the master writes its pid file (measured: up to ~0.3 s later).
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 15)
    master = int(pid_file.read_text())
    health_url = deploy["health_url"].replace("{address}", host.address)
    body = wait_for(lambda: try_get_json(health_url), 15)
    assert body, (host.state_dir / "srv/sample/shared/log/error.log").read_text()
    status, body = get_json(health_url)
    assert status == 200
    assert body["release"] == "A" and body["host"] == "app1"
    assert body["revision"] == git(repo, "rev-parse", "v1") and body["version"] == "1"
    assert labmod.status(state_dir=lab.state_dir).host("app1").apps == {"gunicorn": True}

    lay_out_release(lab, "app1", repo, "v2", "B")  # switches `current` atomically
    assert lab_ssh("app1", f"kill -HUP {master}").returncode == 0
    root_url = health_url.removesuffix("health")

    def only_b() -> bool:
        # Old workers finish in-flight requests; wait for 10 answers in a row from B.
        answers = [try_get_json(root_url) for _ in range(10)]
        return all(a and a["release"] == "B" for a in answers)

    assert wait_for(only_b, 10)
    status, body = get_json(root_url)
    assert (status, body["release"], body["version"]) == (200, "B", "2")
    assert body["revision"] == git(repo, "rev-parse", "v2")
    assert int(pid_file.read_text()) == master and not process_gone(master)


# ---------------------------------------------------------------- AWS on moto


def test_each_host_has_an_instance_and_app_hosts_are_in_the_target_group(
    lab: LabStatus, lab_restore
) -> None:
    inv = inventory(lab.inventory_path)
    aws_of = {name: hv["aws"] for name, hv in inv["hosts"].items()}  # host vars: all.hosts
    assert set(aws_of) == {h.name for h in lab.hosts}
    endpoint = f"http://127.0.0.1:{lab.port + 3000}"
    for aws in aws_of.values():
        assert aws["endpoint_url"] == endpoint and aws["region"] == "us-east-1"
        assert (aws["access_key_id"], aws["secret_access_key"]) == ("testing", "testing")
    ec2, elbv2 = aws_clients(aws_of["app1"])
    ids = {name: aws["instance_id"] for name, aws in aws_of.items()}
    tags = instances(ec2, list(ids.values()))
    for host in lab.hosts:
        assert tags[ids[host.name]]["Name"] == host.name
        assert tags[ids[host.name]]["Role"] == host.groups[0]
        assert tags[ids[host.name]]["opskit-lab"] == str(lab.state_dir)

    arn = deploy_vars(inv)["target_group_arn"]
    group = elbv2.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
    assert (group["TargetGroupName"], group["Protocol"], group["Port"]) == ("lab-app", "HTTP", 8000)
    app_ids = {ids[h.name] for h in lab.hosts if "app" in h.groups}
    assert registered_targets(elbv2, arn) == app_ids and len(app_ids) == 3

    # up again: same server, same instances, same lab.yml ids.
    again = lab_restore()
    assert again.aws is not None and again.aws.answering and again.aws.endpoint_url == endpoint
    assert instance_ids(lab.inventory_path) == ids


@pytest.fixture
def small_lab(tmp_path: pathlib.Path) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {
        "hosts": 2,
        "port": SMALL_PORT,
        "net": worker.NET,
        "state_dir": tmp_path / "state",
        "inventory_path": tmp_path / "lab.yml",
    }
    try:
        yield params
    finally:
        labmod.down(state_dir=params["state_dir"])


def test_a_restarted_moto_is_filled_again_and_down_stops_it(small_lab) -> None:
    state_dir = pathlib.Path(small_lab["state_dir"])
    first = labmod.up(**small_lab)
    assert first.aws is not None and first.aws.answering
    pid = first.aws.pid
    assert pid and moto_servers_of(state_dir) == [pid]
    assert first.aws.endpoint_url == f"http://127.0.0.1:{SMALL_PORT + 3000}"
    old_ids = instance_ids(small_lab["inventory_path"])

    os.kill(pid, signal.SIGKILL)  # the server's memory is gone: up creates everything again
    assert wait_for(lambda: process_gone(pid))
    second = labmod.up(**small_lab)
    assert second.aws is not None and second.aws.pid not in (None, pid)
    inv = inventory(small_lab["inventory_path"])
    ids = instance_ids(small_lab["inventory_path"])
    assert set(ids) == {"app1", "db1"} and ids != old_ids
    ec2, elbv2 = aws_clients(inv["hosts"]["app1"]["aws"])
    assert {t["Name"] for t in instances(ec2, list(ids.values())).values()} == {"app1", "db1"}
    assert registered_targets(elbv2, deploy_vars(inv)["target_group_arn"]) == {ids["app1"]}

    lines = labmod.down(state_dir=state_dir)
    assert f"stopped moto server (pid {second.aws.pid})" in lines
    assert wait_for(lambda: process_gone(second.aws.pid))
    assert moto_servers_of(state_dir) == []
    assert not (state_dir / "aws").exists()
    assert (state_dir / "sample-app").is_dir()  # kept, like the keys
