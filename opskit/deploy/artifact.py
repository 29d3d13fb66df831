"""The release artifact: built once on the operator machine, checksummed, uploaded per host."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from opskit.deploy import config
from opskit.errors import UsageError
from opskit.inventory import Host


@dataclass(frozen=True)
class Artifact:
    path: Path          # a .tar.gz on the operator machine
    sha256: str
    size: int
    release: str        # the release id: the directory name under releases/
    revision: str       # git sha, or the tarball's checksum prefix

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "sha256": self.sha256, "size": self.size,
                "release": self.release, "revision": self.revision}


def release_id(revision: str, now: datetime | None = None) -> str:
    """Sortable and unique enough: UTC time to the millisecond plus the short revision."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d%H%M%S}{now.microsecond // 1000:03d}-{revision[:7]}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git(repo: str, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:
        raise UsageError("git is not installed", hint="apt-get install git") from None
    if proc.returncode != 0:
        raise UsageError(f"git {' '.join(args)} in {repo}: {proc.stderr.strip().splitlines()[-1]}"
                         if proc.stderr.strip() else f"git {args[0]} failed in {repo}",
                         hint="check deploy.repo and --ref (a branch, tag or commit)")
    return proc.stdout.strip()


def from_git(repo: str, ref: str, workdir: Path | None = None) -> Artifact:
    """``git archive`` of ``ref`` as a tar.gz; the revision is the commit's full sha."""
    if not Path(repo).exists():
        raise UsageError(f"deploy.repo {repo} does not exist",
                         hint="deploy.repo is the app's git repository on this machine")
    if ref.startswith("-"):
        raise UsageError(f"bad --ref {ref!r}", hint="a branch, tag or commit, e.g. --ref v2")
    sha = _git(repo, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
    out_dir = workdir or Path(tempfile.mkdtemp(prefix="opskit-artifact-"))
    path = out_dir / f"{sha[:12]}.tar.gz"
    _git(repo, "archive", "--format=tar.gz", "-o", str(path), sha)
    return Artifact(path, sha256_file(path), path.stat().st_size, release_id(sha), sha)


def from_tarball(tarball: str, workdir: Path | None = None) -> Artifact:
    """A given .tar.gz (e.g. built by CI); the revision is its checksum's prefix."""
    src = Path(tarball)
    if not src.is_file():
        raise UsageError(f"artifact {tarball} is not a file", hint="--artifact PATH.tar.gz")
    out_dir = workdir or Path(tempfile.mkdtemp(prefix="opskit-artifact-"))
    path = out_dir / src.name
    shutil.copyfile(src, path)  # a private copy: the file cannot change under the upload
    digest = sha256_file(path)
    return Artifact(path, digest, path.stat().st_size, release_id(digest[:12]), digest[:12])


def build(hosts: Sequence[Host], ref: str | None, tarball: str | None, workdir: Path) -> Artifact:
    """The artifact for a deploy: a given tarball, or ``ref`` of the hosts' one deploy.repo."""
    if bool(ref) == bool(tarball):
        raise UsageError("give exactly one of --ref or --artifact",
                         hint="opskit deploy --ref v2, or --artifact build/app.tar.gz")
    if tarball:
        return from_tarball(tarball, workdir)
    repos = {config.repo(h) for h in hosts}
    if len(repos) != 1 or None in repos:
        raise UsageError("the selected hosts do not share one deploy.repo",
                         hint="set deploy.repo for the group, or deploy one app at a time with -l")
    return from_git(str(repos.pop()), str(ref), workdir)
