"""The sample app's git repo that lab deploys deploy from: ``<state_dir>/sample-app``.

Built from ``examples/sample-app/`` with three commits, all deterministic (fixed author,
committer and dates, so the same source gives the same shas on every machine):

* ``v1``     the example as it is;
* ``v2``     ``VERSION = "2"``;
* ``broken`` on top of v2: app.py raises at import (a release whose workers cannot boot).

``main`` points at v2 (deploying the branch gives a good release); ``broken`` is reachable
only through its tag. The repo is kept across ``down`` (like the keys) and rebuilt only when
a tag is missing or ``examples/sample-app/`` changed.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess

from opskit.errors import LabError

REPO_DIR = "sample-app"
TAGS = ("v1", "v2", "broken")
RECIPE = "1"  # bump when the recipe below changes, so existing repos are rebuilt
_STAMP = "opskit-lab-source"  # in .git/: hash of the recipe and the source it was built from
_IDENTITY = ["-c", "user.name=opskit-lab", "-c", "user.email=lab@opskit.invalid"]
_DATES = ("2024-01-01T12:00:00+0000", "2024-01-02T12:00:00+0000", "2024-01-03T12:00:00+0000")
V1_LINE = 'VERSION = "1"'
V2_LINE = 'VERSION = "2"'
BROKEN_LINE = 'raise RuntimeError("broken release")  # tag `broken`: fails at import\n'


def source_dir() -> pathlib.Path:
    """``examples/sample-app`` of the source tree opskit runs from (an editable install)."""
    return pathlib.Path(__file__).resolve().parents[2] / "examples" / "sample-app"


def repo_path(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / REPO_DIR


def ensure(state_dir: pathlib.Path) -> pathlib.Path:
    """Create the repo unless it already has the tags and matches the source; returns it."""
    src = source_dir()
    files = _source_files(src)
    stamp = _stamp(src, files)
    repo = repo_path(state_dir)
    if _stamp_of(repo) == stamp and all(_has_tag(repo, t) for t in TAGS):
        return repo
    if shutil.which("git") is None:
        raise LabError("the lab's sample repo needs git", hint="apt-get install -y git")
    # Build aside and swap in, so a crash never leaves a half-made repo behind.
    tmp = state_dir / f".{REPO_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _build(tmp, src, files)
        (tmp / ".git" / _STAMP).write_text(stamp + "\n")
        shutil.rmtree(repo, ignore_errors=True)
        tmp.rename(repo)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return repo


def _source_files(src: pathlib.Path) -> list[pathlib.Path]:
    if not (src / "app.py").is_file():
        raise LabError(
            f"the sample app is missing: {src / 'app.py'}",
            hint="the lab runs from a source checkout (pip install -e .) that has examples/",
        )
    return sorted(
        p.relative_to(src)
        for p in src.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def _stamp(src: pathlib.Path, files: list[pathlib.Path]) -> str:
    digest = hashlib.sha256(f"recipe {RECIPE}\n".encode())
    for rel in files:
        digest.update(f"{rel}\n".encode() + (src / rel).read_bytes())
    return digest.hexdigest()


def _stamp_of(repo: pathlib.Path) -> str | None:
    try:
        return (repo / ".git" / _STAMP).read_text().strip()
    except OSError:
        return None


def _has_tag(repo: pathlib.Path, tag: str) -> bool:
    done = _git(repo, ["rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}"], check=False)
    return done.returncode == 0


def _build(repo: pathlib.Path, src: pathlib.Path, files: list[pathlib.Path]) -> None:
    repo.mkdir(parents=True)
    _git(repo, ["init", "-q", "-b", "main"])
    for rel in files:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, repo / rel)
    app = repo / "app.py"
    v1 = app.read_text()
    if V1_LINE not in v1:
        raise LabError(
            f"{src / 'app.py'} has no line {V1_LINE!r}", hint="the v2 commit changes that line"
        )
    _commit(repo, "v1: the sample app", _DATES[0], "v1")
    v2 = v1.replace(V1_LINE, V2_LINE, 1)
    app.write_text(v2)
    _commit(repo, "v2: bump VERSION", _DATES[1], "v2")
    head, sep, tail = v2.partition(V2_LINE + "\n")
    app.write_text(head + sep + "\n" + BROKEN_LINE + tail)
    _commit(repo, "broken: raise at import", _DATES[2], "broken")
    _git(repo, ["reset", "-q", "--hard", "v2"])  # main stays on the good release


def _commit(repo: pathlib.Path, message: str, date: str, tag: str) -> None:
    env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    _git(repo, ["add", "-A"])
    _git(repo, ["commit", "-q", "--no-verify", "-m", message], env=env)
    _git(repo, ["tag", tag])


def _git(
    repo: pathlib.Path, args: list[str], *, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    # No global/system config (hooks, signing, templates): the same repo on every machine.
    full_env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
                **(env or {})}  # fmt: skip
    argv = ["git", *_IDENTITY, "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false",
            "-C", str(repo), *args]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, env=full_env, stdin=subprocess.DEVNULL, timeout=60
    )
    if check and done.returncode != 0:
        raise LabError(
            f"git {args[0]} failed in {repo}: {done.stderr.strip()}",
            hint="check that git works (apt-get install -y git) and the state dir is writable",
        )
    return done
