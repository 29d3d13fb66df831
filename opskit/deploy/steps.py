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
from dataclasses import dataclass, field

from opskit.deploy import validate
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
    # What the host has that is not a release of ours: names in releases/ that are not
    # release ids, and where ``current`` points when that is not releases/<id>. Never used.
    ignored: list[str] = field(default_factory=list)
    foreign_current: str | None = None

    @property
    def previous(self) -> str | None:
        """The release before current, in release-id (time) order."""
        if self.current not in self.releases:
            return None
        i = self.releases.index(self.current)
        return self.releases[i - 1] if i > 0 else None

    def warnings(self, cfg: DeployConfig) -> list[str]:
        """One line per thing ignored (the names repr-quoted: they may hold anything)."""
        lines = [f"ignored {n!r} in {cfg.releases_dir}: not a release id (not made by opskit)"
                 for n in self.ignored]
        if self.foreign_current is not None:
            lines.append(f"ignored {cfg.current} -> {self.foreign_current!r}: not a release "
                         f"under {cfg.releases_dir}")
        return lines


def _parse_releases(out: str, cfg: DeployConfig) -> HostReleases:
    """The listing of ``_list_releases_sh``: current's target, then names, NUL-separated."""
    link, *entries = out.split("\0")
    names, ignored = [], []
    for name in entries:
        if name:
            (names if validate.is_release_id(name) else ignored).append(name)
    current = foreign = None
    if link:
        target = link.rstrip("/")
        base = posixpath.basename(target)
        if validate.is_release_id(base) and posixpath.dirname(target) == cfg.releases_dir:
            current = base
        else:
            foreign = link
    return HostReleases(current, sorted(names), sorted(ignored), foreign)


def _list_releases_sh(cfg: DeployConfig) -> str:
    # NUL-separated: a name in releases/ may hold newlines. Hidden names are not listed (the
    # upload's .<id>.tar.gz); the glob is sorted, and sorted again where it is read.
    return (f"printf '%s\\0' \"$(readlink -- {q(cfg.current)})\"; "
            f"cd {q(cfg.releases_dir)} 2>/dev/null && for f in *; do "
            f"{{ [ -e \"$f\" ] || [ -L \"$f\" ]; }} && printf '%s\\0' \"$f\"; done; cd /")


def read_releases(s: Session, cfg: DeployConfig) -> HostReleases:
    return _parse_releases(s.run(_list_releases_sh(cfg)).stdout, cfg)


# Exit statuses of the ship script that mean "refused before changing anything".
_ALREADY_CURRENT, _BAD_CHECKSUM, _REFUSED = 65, 66, 67  # 67: onhost/release_setup.py's
_END = "/end"  # after the listing: no name in releases/ can hold a "/"


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
    tarball's sha256, extracts into releases/<id> (mode 700 until it passed), then
    ``onhost/release_setup.py`` refuses a hostile tree (symlinks out of the release, device
    files, FIFOs, setuid/setgid) and writes RELEASE and REVISION and links the shared paths
    without following symlinks in the release. A refused or failed unpack removes the release
    dir. ``current`` is not touched.
    """
    rel = cfg.release_dir(art.release)
    tarball = posixpath.join(cfg.releases_dir, f".{art.release}.tar.gz")
    setup = {
        "dir": rel,
        "files": {"RELEASE": f"{art.release}\n", "REVISION": f"{art.revision}\n"},
        "shared_dirs": [[posixpath.join(cfg.shared_dir, d), d] for d in cfg.shared_dirs],
        "shared_files": [[posixpath.join(cfg.shared_dir, f), f] for f in cfg.shared_files],
    }
    setup_argv = shlex.join(["python3", "-I", "-S", "-c", script("release_setup"),
                             json.dumps(setup)])
    lines = [
        f"mkdir -p {q(cfg.releases_dir)} {q(cfg.shared_dir)} || exit",
        _list_releases_sh(cfg),
        f"printf '%s\\0' {q(_END)}",
        f"[ \"$(readlink {q(cfg.current)})\" = {q(rel)} ] && exit {_ALREADY_CURRENT}",
        "set -e",
        f"cat > {q(tarball)}",
        f"printf '%s  %s\\n' {q(art.sha256)} {q(tarball)} | sha256sum -c --quiet >&2 "
        f"|| {{ rm -f {q(tarball)}; exit {_BAD_CHECKSUM}; }}",
        # Private until checked: nobody runs a setuid file of it meanwhile (a "./" member
        # cannot reopen it: --no-overwrite-dir keeps the mode of the existing dir).
        f"mkdir -m 700 {q(rel)}",
        f"tar --no-overwrite-dir -xzf {q(tarball)} -C {q(rel)} "
        f"|| {{ rc=$?; rm -rf -- {q(rel)} {q(tarball)}; exit $rc; }}",
        f"rm -f {q(tarball)}",
        f"{setup_argv} || {{ rc=$?; rm -rf -- {q(rel)}; exit $rc; }}",
        f"chmod 755 {q(rel)}",
    ]
    out = s.run_input("\n".join(lines), art.path.read_bytes(), check=False)
    listing, ended, _ = out.stdout.partition(f"\0{_END}\0")
    before = _parse_releases(listing + "\0", cfg) if ended else None
    if before is not None and out.exit_status == 0:
        return before
    if out.exit_status == _ALREADY_CURRENT:
        raise ShipFailed(f"release {art.release} is already current", before,
                         already_current=True)
    if out.exit_status == _BAD_CHECKSUM:
        why = f"checksum mismatch after upload of {art.path.name}"
    elif out.exit_status == _REFUSED:
        said = [ln.removeprefix("refused: ") for ln in out.stderr.splitlines()
                if ln.startswith("refused: ")]
        more = f" (+{len(said) - 1} more)" if len(said) > 1 else ""
        why = f"artifact refused: {said[0] if said else 'see stderr'}{more}; release removed"
    else:
        why = f"upload/unpack failed (exit status {out.exit_status})"
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
    # The pid file is read first: one that holds no valid pid stops everything, unswitched.
    lines = [_read_pid_sh(cfg.pid_file)] if cfg.reload != "command" and cfg.pid_file else []
    lines += [f"test -d {q(rel)} && ln -sfn {q(rel)} {q(tmp)} && mv -T {q(tmp)} {q(cfg.current)} "
              f"|| {{ rm -f {q(tmp)}; echo {q(f'release {release} could not be made current')} "
              f">&2; exit 1; }}",
              "echo switched"]
    if cfg.reload == "command":
        lines.append(f"sh -c {q(cfg.reload_command or '')}")
    elif cfg.pid_file:
        if cfg.reload == "hup":
            lines.append('[ -z "$pid" ] || kill -HUP "$pid" || exit')
        lines.append('echo "master=$pid"')
    out = s.run("\n".join(lines), check=False)
    said = out.stdout.split()
    if out.exit_status == _BAD_PID and said[:1] == [_BAD_PID_WORD]:
        held = out.stdout.partition(f"{_BAD_PID_WORD}\n")[2]
        raise NotSwitched(f"pid file {cfg.pid_file} holds {held!r}, not a process id > 1: no "
                          f"signal sent, {cfg.current} not switched", out.exit_status, out.stderr)
    if "switched" not in said:
        raise NotSwitched(f"switch to {release} failed", out.exit_status, out.stderr)
    if out.exit_status != 0:
        raise CommandFailed(f"reload ({cfg.reload}) failed after the switch (exit status "
                         f"{out.exit_status})", out.exit_status, out.stderr)
    if cfg.reload == "command":
        return {"method": "command", "master_pid_before": None, "master_pid_after": None}
    pids = [w.partition("=")[2] for w in said if w.startswith("master=")]
    before = validate.pid(pids[0]) if pids else None
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


# A pid file that holds anything but a decimal integer > 1 (e.g. -1: every process of the
# user, 0: our own process group, 1: init) stops the reload before any kill.
_BAD_PID, _BAD_PID_WORD = 68, "opskit-bad-pid"
_PID_OK = '''case "$pid" in ''|*[!0-9]*|0*|1) false;; *) true;; esac'''


def _read_pid_sh(pid_file: str) -> str:
    """Sets ``$pid`` to the live master's pid, or empty when the pid file is missing, empty
    or unreadable or its process is gone (then ``start`` runs, as before); exits _BAD_PID,
    before any kill, when it holds anything else than a valid pid."""
    pf = q(pid_file)
    return (f"pid=$(cat -- {pf} 2>/dev/null) || pid=; if [ -n \"$pid\" ]; then "
            f"{_PID_OK} || {{ echo {_BAD_PID_WORD}; printf '%s' \"$pid\" | head -c 40; "
            f"exit {_BAD_PID}; }}; kill -0 \"$pid\" 2>/dev/null || pid=; fi")


def _wait_master(s: Session, cfg: DeployConfig, old: int | None, timeout: float = 15.0) -> int:
    """Wait (in one remote loop, not many round trips) for a live master other than ``old``."""
    out = s.run(
        f"i=0; while [ $i -lt {int(timeout * 10)} ]; do "
        f"pid=$(cat {q(cfg.pid_file or '')} 2>/dev/null) && {_PID_OK} "
        f"&& kill -0 \"$pid\" 2>/dev/null "
        f"&& [ \"$pid\" != \"$OLD\" ] && {{ echo \"$pid\"; exit 0; }}; "
        f"sleep 0.1; i=$((i+1)); done; exit 1",
        check=False, env={"OLD": str(old) if old else "none"},
    )
    pid = validate.pid(out.stdout.strip())
    if out.exit_status != 0 or pid is None:
        raise CommandFailed(f"gunicorn master did not come up (pid file {cfg.pid_file})",
                         out.exit_status, out.stderr)
    return pid


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
