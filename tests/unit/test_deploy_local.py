"""Deploys onto local hosts (ansible_connection: local): real git, tar, symlinks, no SSH.

The lab tests cover gunicorn, HTTP health gates and the ELB; these cover the release layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q")
    for tag in ("v1", "v2", "v3", "v4"):
        (r / "app.py").write_text(f"VERSION = {tag!r}\n")
        git(r, "add", ".")
        git(r, "commit", "-qm", tag)
        git(r, "tag", tag)
    return r


def make_inventory(tmp_path: Path, repo: Path, n: int = 3, **deploy: object) -> Path:
    hosts = {}
    for i in range(1, n + 1):
        settings = {"root": str(tmp_path / f"h{i} x;y" / "app"), "repo": str(repo),
                    "reload": "true", "shared_dirs": ["log"], **deploy}
        hosts[f"h{i}"] = {"deploy": settings}
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"all": {"vars": {"ansible_connection": "local"},
                                           "children": {"app": {"hosts": hosts}}}}))
    return inv


def opskit(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opskit", "-i", str(inv), *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


def deploy(inv: Path, ref: str, *args: str) -> tuple[int, dict]:
    proc = opskit(inv, "deploy", "--ref", ref, "--json", "--yes", *args)
    return proc.returncode, json.loads(proc.stdout)


def root(tmp_path: Path, i: int) -> Path:
    return tmp_path / f"h{i} x;y" / "app"


def current_version(tmp_path: Path, i: int) -> str:
    return (root(tmp_path, i) / "current" / "app.py").read_text().strip()


@pytest.fixture(autouse=True)
def _journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSKIT_JOURNAL", str(tmp_path / "journal.jsonl"))


def test_layout_release_files_and_shared_links(tmp_path: Path, repo: Path) -> None:
    inv = make_inventory(tmp_path, repo)
    code, doc = deploy(inv, "v1")
    assert code == 0 and doc["summary"]["ok"] == 3
    release = doc["artifact"]["release"]
    r = root(tmp_path, 1)
    assert os.readlink(r / "current") == str(r / "releases" / release)
    assert (r / "current" / "RELEASE").read_text().strip() == release
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "v1"], capture_output=True,
                         text=True).stdout.strip()
    assert (r / "current" / "REVISION").read_text().strip() == sha
    assert os.readlink(r / "current" / "log") == str(r / "shared" / "log")
    assert current_version(tmp_path, 1) == "VERSION = 'v1'"
    assert not list((r / "releases").glob(".*"))  # the uploaded tarball is gone


def test_failing_install_leaves_current_untouched(tmp_path: Path, repo: Path) -> None:
    inv = make_inventory(tmp_path, repo)
    assert deploy(inv, "v1")[0] == 0
    before = {i: os.readlink(root(tmp_path, i) / "current") for i in (1, 2, 3)}
    bad = make_inventory(tmp_path, repo, install="echo 'pip: no matching dist' >&2; exit 9")
    code, doc = deploy(bad, "v2", "--batch", "100%")
    assert code == 2
    for i, host in enumerate(doc["hosts"], 1):
        assert host["status"] == "failed"
        assert "install step failed (exit status 9)" in host["error"]
        assert "current untouched" in host["error"]
        assert "no matching dist" in host["stderr"]
        assert os.readlink(root(tmp_path, i) / "current") == before[i]
        assert len(list((root(tmp_path, i) / "releases").iterdir())) == 1  # v2 removed


def test_canary_failure_stops_later_batches(tmp_path: Path, repo: Path) -> None:
    inv = make_inventory(tmp_path, repo)
    assert deploy(inv, "v1")[0] == 0
    # Only the canary (h1) fails its install; the gate must keep h2, h3 untouched.
    bad = make_inventory(tmp_path, repo, install='case "$RELEASE_DIR" in *h1*) exit 1;; esac')
    code, doc = deploy(bad, "v2", "--batch", "1,100%")
    assert code == 2 and doc["stopped_after_batch"] == 1
    status = {h["host"]: h["status"] for h in doc["hosts"]}
    assert status == {"h1": "failed", "h2": "skipped", "h3": "skipped"}
    assert all(current_version(tmp_path, i) == "VERSION = 'v1'" for i in (1, 2, 3))


def test_max_fail_percent_lets_rollout_continue(tmp_path: Path, repo: Path) -> None:
    inv = make_inventory(tmp_path, repo, n=4)
    assert deploy(inv, "v1")[0] == 0
    bad = make_inventory(tmp_path, repo, n=4,
                         install='case "$RELEASE_DIR" in *h2*) exit 1;; esac')
    code, doc = deploy(bad, "v2", "--batch", "2", "--max-fail-percent", "50")
    assert code == 2 and doc["stopped_after_batch"] is None
    status = {h["host"]: h["status"] for h in doc["hosts"]}
    assert status == {"h1": "ok", "h2": "failed", "h3": "ok", "h4": "ok"}


def test_keep_releases_never_prunes_current_or_previous(tmp_path: Path, repo: Path) -> None:
    inv = make_inventory(tmp_path, repo, n=1, keep_releases=2)
    releases = []
    for tag in ("v1", "v2", "v3"):
        code, doc = deploy(inv, tag)
        assert code == 0
        releases.append(doc["artifact"]["release"])
    rel_dir = root(tmp_path, 1) / "releases"
    assert sorted(p.name for p in rel_dir.iterdir()) == releases[1:]
    # Roll back to v2, then deploy v4: keep=2 would keep only v3 and v4 by age, but v2 was
    # current just before the deploy (the "previous" to fall back to) and must survive.
    assert opskit(inv, "rollback", "--yes").returncode == 0
    assert current_version(tmp_path, 1) == "VERSION = 'v2'"
    code, doc = deploy(inv, "v4")
    assert code == 0
    names = sorted(p.name for p in rel_dir.iterdir())
    assert releases[1] in names and doc["artifact"]["release"] in names


def test_dry_run_changes_nothing(tmp_path: Path, repo: Path) -> None:
    inv = make_inventory(tmp_path, repo)
    assert deploy(inv, "v1")[0] == 0

    def tree() -> list[tuple[str, str]]:
        out = []
        for i in (1, 2, 3):
            for p in sorted(root(tmp_path, i).rglob("*")):
                out.append((str(p), os.readlink(p) if p.is_symlink() else str(p.stat().st_mtime)))
        return out

    before = tree()
    proc = opskit(inv, "deploy", "--ref", "v2", "--dry-run", "--batch", "1,50%")
    assert proc.returncode == 0, proc.stderr
    assert "dry run" in proc.stdout and "h3" in proc.stdout and "switch" in proc.stdout
    assert tree() == before
    plan = json.loads(opskit(inv, "deploy", "--ref", "v2", "--dry-run", "--json").stdout)
    assert [p["batch"] for p in plan["plan"]] == [1, 2, 3]


def test_rollback_to_named_release_and_releases_drift(tmp_path: Path, repo: Path) -> None:
    inv = make_inventory(tmp_path, repo)
    _, d1 = deploy(inv, "v1")
    _, d2 = deploy(inv, "v2")
    first = d1["artifact"]["release"]
    proc = opskit(inv, "-l", "h2", "rollback", "--to", first, "--yes", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["hosts"][0]["value"]["to"] == first
    doc = json.loads(opskit(inv, "releases", "--json").stdout)
    assert doc["majority"] == d2["artifact"]["release"] and doc["drift"] == ["h2"]
    bad = opskit(inv, "rollback", "--to", "../../etc", "--yes")
    assert bad.returncode == 1 and "bad release name" in bad.stderr


def test_journal_has_one_entry_per_deploy_and_rollback(tmp_path: Path, repo: Path) -> None:
    inv = make_inventory(tmp_path, repo)
    deploy(inv, "v1")
    deploy(inv, "v2")
    opskit(inv, "rollback", "--yes")
    records = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    # Each run: its started record before the change, then its end.
    assert [(e["command"], e["phase"]) for e in records] == [
        ("deploy", "started"), ("deploy", "end"), ("deploy", "started"), ("deploy", "end"),
        ("rollback", "started"), ("rollback", "end")]
    assert records[0]["plan"]["release"] == records[1]["details"]["release"]
    assert records[1]["outcomes"]["h1"]["status"] == "ok"
    assert len({e["run_id"] for e in records}) == 3


def test_bad_input_is_one_line(tmp_path: Path, repo: Path) -> None:
    inv = make_inventory(tmp_path, repo)
    for args, needle in [
        (("deploy", "--yes"), "exactly one of --ref or --artifact"),
        (("deploy", "--ref", "nosuchref", "--yes"), "nosuchref"),
        (("deploy", "--ref", "v1", "--batch", "0", "--yes"), "--batch"),
    ]:
        proc = opskit(inv, *args)
        assert proc.returncode == 1 and needle in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    relative = make_inventory(tmp_path, repo, root="srv/app")
    proc = opskit(relative, "deploy", "--ref", "v1", "--yes")
    assert proc.returncode == 1 and "deploy.root: must be an absolute path" in proc.stderr
    assert not any(root(tmp_path, i).exists() for i in (1, 2, 3))


def tarball(path: Path, links: dict[str, str]) -> Path:
    """A .tar.gz with app.py and the given symlinks (name -> target)."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        data = b"VERSION = 'evil'\n"
        info = tarfile.TarInfo("app.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


@pytest.mark.parametrize("links", [{"RELEASE": "VICTIM"}, {"tmp": "OUTSIDE"}])
def test_hostile_artifact_is_refused_and_removed(tmp_path: Path, repo: Path,
                                                 links: dict[str, str]) -> None:
    victim = tmp_path / "outside" / "victim"
    (victim.parent / "pids").mkdir(parents=True)
    victim.write_text("precious\n")
    links = {k: v.replace("VICTIM", str(victim)).replace("OUTSIDE", str(victim.parent))
             for k, v in links.items()}
    inv = make_inventory(tmp_path, repo, n=1, shared_dirs=["log", "tmp/pids"])
    assert deploy(inv, "v1")[0] == 0
    before = os.readlink(root(tmp_path, 1) / "current")
    for auto in ([], ["--no-auto-rollback"]):
        code, doc = run_artifact(inv, tarball(tmp_path / "evil.tar.gz", links), *auto)
        assert code == 2, doc
        error = doc["hosts"][0]["error"]
        assert "artifact refused" in error and "outside the release" in error
        assert victim.read_text() == "precious\n" and (victim.parent / "pids").is_dir()
        assert os.readlink(root(tmp_path, 1) / "current") == before
        assert [p.name for p in (root(tmp_path, 1) / "releases").iterdir()] == \
            [os.path.basename(before)]  # the refused release is gone, also without rollback


def run_artifact(inv: Path, path: Path, *args: str) -> tuple[int, dict]:
    proc = opskit(inv, "deploy", "--artifact", str(path), "--json", "--yes", *args)
    return proc.returncode, json.loads(proc.stdout)


def test_rollback_to_a_bad_name_is_refused_in_a_dry_run_too(tmp_path: Path, repo: Path) -> None:
    inv = make_inventory(tmp_path, repo)
    for extra in (["--dry-run"], ["--yes"]):
        proc = opskit(inv, "rollback", "--to", "../../etc", *extra)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines[0] == "error: bad release name '../../etc'" and lines[1].startswith("hint:")
        assert len(lines) == 2 and "would switch" not in proc.stdout
