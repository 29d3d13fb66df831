"""The steps of a release on one host, each run over the host's one session.

Layout under ``deploy.root`` (Capistrano's): ``releases/<id>/``, ``shared/``, and ``current``,
a symlink switched atomically (a new symlink renamed over the old one). Every path and value
is shell-quoted.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from opskit.deploy.artifact import Artifact
from opskit.deploy.config import DeployConfig
from opskit.onhost import script
from opskit.transport.errors import CommandFailed
from opskit.transport.session import Session

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


def _parse_releases(out: str) -> HostReleases:
    link, _, listing = out.partition("--\n")
    link = link.strip()
    names = sorted(n for n in listing.split() if not n.startswith("."))
    return HostReleases(posixpath.basename(link.rstrip("/")) if link else None, names)


def _list_releases_sh(cfg: DeployConfig) -> str:
    return (f"readlink {q(cfg.current)} || true; echo '--'; "
            f"ls -1 {q(cfg.releases_dir)} 2>/dev/null || true")


def read_releases(s: Session, cfg: DeployConfig) -> HostReleases:
    return _parse_releases(s.run(_list_releases_sh(cfg)).stdout)


# Exit statuses of the ship script that mean "refused before changing anything".
_ALREADY_CURRENT, _BAD_CHECKSUM = 65, 66


class ShipFailed(CommandFailed):
    """Upload or unpack failed; ``current`` was not touched. ``before``: the state it saw."""

    def __init__(self, message: str, before: HostReleases | None, exit_status: int | None = None,
                 stderr: str = "", already_current: bool = False) -> None:
        super().__init__(message, exit_status, stderr)
        self.before = before
        self.already_current = already_current


def ship(s: Session, cfg: DeployConfig, art: Artifact) -> HostReleases:
    """Upload, verify, unpack and link a release in one round trip; the state before it.

    The artifact is streamed on the script's stdin: the script lists the releases (the state
    the rollback needs), refuses a release that is already current, writes and checks the
    tarball's sha256, extracts into releases/<id>, writes RELEASE and REVISION and links the
    shared paths. ``current`` is not touched.
    """
    rel = cfg.release_dir(art.release)
    tarball = posixpath.join(cfg.releases_dir, f".{art.release}.tar.gz")
    lines = [
        f"mkdir -p {q(cfg.releases_dir)} {q(cfg.shared_dir)} || exit",
        _list_releases_sh(cfg),
        "echo '--end'",
        f"[ \"$(readlink {q(cfg.current)})\" = {q(rel)} ] && exit {_ALREADY_CURRENT}",
        "set -e",
        f"cat > {q(tarball)}",
        f"printf '%s  %s\\n' {q(art.sha256)} {q(tarball)} | sha256sum -c --quiet >&2 "
        f"|| {{ rm -f {q(tarball)}; exit {_BAD_CHECKSUM}; }}",
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
            f"test -e {q(target)} || {{ echo {q('missing shared file ' + target)} >&2; exit 3; }}",
            f"mkdir -p {q(posixpath.dirname(link))}", f"rm -rf {q(link)}",
            f"ln -s {q(target)} {q(link)}",
        ]
    out = s.run_input("\n".join(lines), art.path.read_bytes(), check=False)
    listing, ended, _ = out.stdout.partition("--end\n")
    before = _parse_releases(listing) if ended else None
    if out.exit_status == 0 and before is not None:
        return before
    if out.exit_status == _ALREADY_CURRENT:
        raise ShipFailed(f"release {art.release} is already current", before,
                         already_current=True)
    why = (f"checksum mismatch after upload of {art.path.name}"
           if out.exit_status == _BAD_CHECKSUM
           else f"upload/unpack failed (exit status {out.exit_status})")
    raise ShipFailed(why, before, out.exit_status, out.stderr)


def install(s: Session, cfg: DeployConfig, art: Artifact) -> None:
    """The inventory's install command, run inside the new release (before the switch)."""
    if not cfg.install:
        return
    rel = cfg.release_dir(art.release)
    out = s.run(f"cd {q(rel)} && sh -c {q(cfg.install)}", check=False,
                env={"RELEASE_DIR": rel, "RELEASE": art.release, "SHARED_DIR": cfg.shared_dir})
    if out.exit_status != 0:
        raise CommandFailed(f"install step failed (exit status {out.exit_status})",
                         out.exit_status, out.stderr)


class NotSwitched(CommandFailed):
    """``current`` did not move (the release is missing, or the rename failed)."""


def activate(s: Session, cfg: DeployConfig, release: str) -> dict[str, object]:
    """Point ``current`` at ``release`` atomically, then make the app serve it.

    One round trip for the common cases: a new symlink renamed over ``current`` (``mv -T``),
    then the reload (HUP to the live master from the pid file, or the configured command).
    Starting a stopped app and the USR2 dance need waits and take a few more.
    """
    rel = cfg.release_dir(release)
    tmp = posixpath.join(cfg.root, f".current-{release}")
    lines = [f"test -d {q(rel)} && ln -sfn {q(rel)} {q(tmp)} && mv -T {q(tmp)} {q(cfg.current)} "
             f"|| {{ rm -f {q(tmp)}; echo 'release {release} could not be made current' >&2; "
             f"exit 1; }}",
             "echo switched"]
    if cfg.reload == "command":
        lines.append(f"sh -c {q(cfg.reload_command or '')}")
    elif cfg.pid_file:
        lines.append(f"pid=$(cat {q(cfg.pid_file)} 2>/dev/null) && kill -0 \"$pid\" 2>/dev/null "
                     f"|| pid=")
        if cfg.reload == "hup":
            lines.append('[ -z "$pid" ] || kill -HUP "$pid" || exit')
        lines.append('echo "master=$pid"')
    out = s.run("\n".join(lines), check=False)
    said = out.stdout.split()
    if "switched" not in said:
        raise NotSwitched(f"switch to {release} failed", out.exit_status, out.stderr)
    if out.exit_status != 0:
        raise CommandFailed(f"reload ({cfg.reload}) failed after the switch (exit status "
                         f"{out.exit_status})", out.exit_status, out.stderr)
    if cfg.reload == "command":
        return {"method": "command", "master_pid_before": None, "master_pid_after": None}
    pids = [w.partition("=")[2] for w in said if w.startswith("master=")]
    before = int(pids[0]) if pids and pids[0].isdigit() else None
    if before is None:
        if not cfg.start:
            raise CommandFailed(f"no running master (pid file {cfg.pid_file}) and no deploy.start")
        s.run(f"cd / && sh -c {q(cfg.start)}")
        after = _wait_master(s, cfg, None)
        return {"method": "start", "master_pid_before": None, "master_pid_after": after}
    if cfg.reload == "hup":  # HUP keeps the master: same pid, new workers
        return {"method": "hup", "master_pid_before": before, "master_pid_after": before}
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
        raise CommandFailed(f"gunicorn master did not come up (pid file {cfg.pid_file})",
                         out.exit_status, out.stderr)
    return int(pid)


def health(s: Session, cfg: DeployConfig, release: str | None,
           prune: Sequence[str] = ()) -> dict[str, object]:
    """GET health_url on the host until it answers 200 (with the release id, if expected).

    ``prune``: releases to delete once the check has passed, in the same round trip.
    """
    rm = (f"rm -rf -- {' '.join(q(cfg.release_dir(r)) for r in prune)} "
          f"|| echo 'opskit: prune failed' >&2") if prune else ""
    if not cfg.health_url:
        if rm:
            s.run(rm)
        return {"checked": False, "pruned": list(prune)}
    expect = release if (cfg.expect_release and release) else ""
    check = shlex.join(["python3", "-I", "-S", "-c", script("http_check"), cfg.health_url,
                        f"{cfg.health_timeout:g}", expect])
    out = s.run(f"{check}; rc=$?; [ $rc -ne 0 ] || {{ {rm or ':'}; }}; exit $rc", check=False)
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        result = {"status": None, "body": out.stderr.strip()[-300:]}
    if out.exit_status != 0:
        got = f"HTTP {result.get('status')}" if result.get("status") else "no answer"
        why = f" without release {release}" if result.get("status") == 200 else ""
        raise CommandFailed(f"health check {cfg.health_url} failed: {got}{why} after "
                         f"{cfg.health_timeout:g}s", out.exit_status)
    return {"checked": True, "status": result.get("status"), "seconds": result.get("seconds"),
            "pruned": list(prune)}


def prunable(before: HostReleases, new: str, keep_releases: int) -> list[str]:
    """Releases to delete once ``new`` is current: beyond keep_releases, never current,
    previous (the release before ``new`` in time order) or the one that was current before.
    """
    after = HostReleases(new, sorted({*before.releases, new}))
    keep = set(after.releases[-keep_releases:])
    keep |= {r for r in (after.current, after.previous, before.current) if r}
    return [r for r in after.releases if r not in keep]


def remove_release(s: Session, cfg: DeployConfig, release: str) -> None:
    """Drop a release that never passed (never the one ``current`` points at)."""
    s.run(f"[ \"$(readlink {q(cfg.current)})\" = {q(cfg.release_dir(release))} ] || "
          f"rm -rf -- {q(cfg.release_dir(release))} "
          f"{q(posixpath.join(cfg.releases_dir, '.' + release + '.tar.gz'))}")
