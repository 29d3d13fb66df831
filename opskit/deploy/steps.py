"""The steps of a release on one host, each run over the host's one session.

Layout under ``deploy.root`` (Capistrano's): ``releases/<id>/``, ``shared/``, and ``current``,
a symlink switched atomically (a new symlink renamed over the old one). Every path and value
is shell-quoted.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass

from opskit.deploy.artifact import Artifact
from opskit.deploy.config import DeployConfig
from opskit.remote import script
from opskit.session import Session, StepFailed

q = shlex.quote


@dataclass
class HostReleases:
    current: str | None
    releases: list[str]

    @property
    def previous(self) -> str | None:
        """The release before current, in release-id (time) order."""
        if self.current not in self.releases:
            return None
        i = self.releases.index(self.current)
        return self.releases[i - 1] if i > 0 else None


def read_releases(s: Session, cfg: DeployConfig) -> HostReleases:
    out = s.run(
        f"readlink {q(cfg.current)} || true; echo '--'; "
        f"ls -1 {q(cfg.releases_dir)} 2>/dev/null || true"
    ).stdout
    link, _, listing = out.partition("--\n")
    link = link.strip()
    names = sorted(n for n in listing.split() if not n.startswith("."))
    return HostReleases(posixpath.basename(link.rstrip("/")) if link else None, names)


def upload(s: Session, cfg: DeployConfig, art: Artifact) -> None:
    """Put the artifact next to the releases and verify its checksum there."""
    s.run_argv(["mkdir", "-p", cfg.releases_dir, cfg.shared_dir])
    remote = posixpath.join(cfg.releases_dir, f".{art.release}.tar.gz")
    s.put(str(art.path), remote)
    check = s.run(f"printf '%s  %s\\n' {q(art.sha256)} {q(remote)} | sha256sum -c --quiet",
                  check=False)
    if check.exit_status != 0:
        s.run_argv(["rm", "-f", remote])
        raise StepFailed(f"checksum mismatch after upload of {art.path.name}", check.exit_status,
                         check.stderr)


def unpack(s: Session, cfg: DeployConfig, art: Artifact) -> str:
    """Extract into releases/<id>, write RELEASE and REVISION, link the shared paths."""
    rel = cfg.release_dir(art.release)
    tarball = posixpath.join(cfg.releases_dir, f".{art.release}.tar.gz")
    lines = [
        "set -e",
        f"mkdir {q(rel)}",
        f"tar -xzf {q(tarball)} -C {q(rel)}",
        f"rm -f {q(tarball)}",
        f"printf '%s\\n' {q(art.release)} > {q(rel + '/RELEASE')}",
        f"printf '%s\\n' {q(art.revision)} > {q(rel + '/REVISION')}",
    ]
    for d in cfg.shared_dirs:
        target, link = posixpath.join(cfg.shared_dir, d), posixpath.join(rel, d)
        lines += [f"mkdir -p {q(target)} {q(posixpath.dirname(link))}", f"rm -rf {q(link)}",
                  f"ln -s {q(target)} {q(link)}"]
    for f in cfg.shared_files:
        target, link = posixpath.join(cfg.shared_dir, f), posixpath.join(rel, f)
        lines += [
            f"test -e {q(target)} || {{ echo 'missing shared file {target}' >&2; exit 3; }}",
            f"mkdir -p {q(posixpath.dirname(link))}", f"rm -rf {q(link)}",
            f"ln -s {q(target)} {q(link)}",
        ]
    s.run("\n".join(lines))
    return rel


def install(s: Session, cfg: DeployConfig, art: Artifact) -> None:
    """The inventory's install command, run inside the new release (before the switch)."""
    if not cfg.install:
        return
    rel = cfg.release_dir(art.release)
    out = s.run(f"cd {q(rel)} && sh -c {q(cfg.install)}", check=False,
                env={"RELEASE_DIR": rel, "RELEASE": art.release, "SHARED_DIR": cfg.shared_dir})
    if out.exit_status != 0:
        raise StepFailed(f"install step failed (exit status {out.exit_status})",
                         out.exit_status, out.stderr)


def switch(s: Session, cfg: DeployConfig, release: str) -> None:
    """Point ``current`` at ``release`` atomically: new symlink, then rename over the old."""
    tmp = posixpath.join(cfg.root, f".current-{release}")
    s.run(f"test -d {q(cfg.release_dir(release))} && "
          f"ln -sfn {q(cfg.release_dir(release))} {q(tmp)} && mv -T {q(tmp)} {q(cfg.current)}")


def master_pid(s: Session, cfg: DeployConfig) -> int | None:
    """The gunicorn master's pid from the pid file, if that process is alive."""
    if not cfg.pid_file:
        return None
    out = s.run(f"pid=$(cat {q(cfg.pid_file)} 2>/dev/null) && kill -0 \"$pid\" 2>/dev/null "
                f"&& echo \"$pid\" || true").stdout.strip()
    return int(out) if out.isdigit() else None


def reload(s: Session, cfg: DeployConfig) -> dict[str, object]:
    """Make the app serve ``current``: graceful reload, or start it when not running."""
    before = master_pid(s, cfg)
    if cfg.reload == "command":
        s.run(f"sh -c {q(cfg.reload_command or '')}")
        return {"method": "command", "master_pid_before": before, "master_pid_after": None}
    if before is None:
        if not cfg.start:
            raise StepFailed(f"no running master (pid file {cfg.pid_file}) and no deploy.start")
        s.run(f"cd / && sh -c {q(cfg.start)}")
        after = _wait_master(s, cfg, None)
        return {"method": "start", "master_pid_before": None, "master_pid_after": after}
    if cfg.reload == "hup":
        s.run_argv(["kill", "-HUP", str(before)])
        return {"method": "hup", "master_pid_before": before, "master_pid_after":
                master_pid(s, cfg)}
    # usr2: a new master with the new code, then retire the old one's workers and itself.
    s.run_argv(["kill", "-USR2", str(before)])
    after = _wait_master(s, cfg, before)
    s.run_argv(["kill", "-WINCH", str(before)], check=False)
    s.run_argv(["kill", "-QUIT", str(before)])
    return {"method": "usr2", "master_pid_before": before, "master_pid_after": after}


def _wait_master(s: Session, cfg: DeployConfig, old: int | None, timeout: float = 15.0) -> int:
    """Wait (in one remote loop, not many round trips) for a live master other than ``old``."""
    out = s.run(
        f"i=0; while [ $i -lt {int(timeout * 10)} ]; do "
        f"pid=$(cat {q(cfg.pid_file or '')} 2>/dev/null) && kill -0 \"$pid\" 2>/dev/null "
        f"&& [ \"$pid\" != \"$OLD\" ] && {{ echo \"$pid\"; exit 0; }}; "
        f"sleep 0.1; i=$((i+1)); done; exit 1",
        check=False, env={"OLD": str(old) if old else "none"},
    )
    pid = out.stdout.strip()
    if out.exit_status != 0 or not pid.isdigit():
        raise StepFailed(f"gunicorn master did not come up (pid file {cfg.pid_file})",
                         out.exit_status, out.stderr)
    return int(pid)


def health(s: Session, cfg: DeployConfig, release: str | None) -> dict[str, object]:
    """GET health_url on the host until it answers 200 (with the release id, if expected)."""
    if not cfg.health_url:
        return {"checked": False}
    expect = release if (cfg.expect_release and release) else ""
    out = s.run_argv(["python3", "-c", script("http_check"), cfg.health_url,
                      str(cfg.health_timeout), expect], check=False)
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        result = {"status": None, "body": out.stderr.strip()[-300:]}
    if out.exit_status != 0:
        got = f"HTTP {result.get('status')}" if result.get("status") else "no answer"
        why = f" without release {release}" if result.get("status") == 200 else ""
        raise StepFailed(f"health check {cfg.health_url} failed: {got}{why} after "
                         f"{cfg.health_timeout:g}s", out.exit_status)
    return {"checked": True, "status": result.get("status"), "seconds": result.get("seconds")}


def prune(s: Session, cfg: DeployConfig, keep_also: set[str]) -> list[str]:
    """Delete old releases beyond keep_releases; never current, previous or ``keep_also``."""
    state = read_releases(s, cfg)
    keep = set(state.releases[-cfg.keep_releases:]) | keep_also
    keep |= {r for r in (state.current, state.previous) if r}
    doomed = [r for r in state.releases if r not in keep]
    if doomed:
        s.run_argv(["rm", "-rf", "--", *(cfg.release_dir(r) for r in doomed)])
    return doomed


def remove_release(s: Session, cfg: DeployConfig, release: str) -> None:
    """Drop a release that never passed (never the one ``current`` points at)."""
    s.run(f"[ \"$(readlink {q(cfg.current)})\" = {q(cfg.release_dir(release))} ] || "
          f"rm -rf -- {q(cfg.release_dir(release))} "
          f"{q(posixpath.join(cfg.releases_dir, '.' + release + '.tar.gz'))}")
