"""Run on a lock host (stdlib only): one operator run at a time, by a lease file per scope.

argv: [--dir DIR] ACTION ARGS (DIR defaults to /var/lib/opskit/locks)
  acquire SCOPE TTL        owner record as JSON on stdin -> {"ok": true, "expires": ..}
                           or {"ok": false, "holder": {..}} (another run holds it, unexpired)
  renew SCOPE RUN_ID TTL   -> {"ok": true, "expires": ..} or {"ok": false, "holder": ..|null}
  release SCOPE RUN_ID     -> {"ok": true} (removed) or {"ok": false, "holder": ..|null}
  break SCOPE              -> {"ok": true, "holder": the removed record|null}
  show SCOPE               -> {"ok": true, "holder": ..|null, "expired": bool}
Every answer is one JSON line on stdout and carries "now" (this host's clock, epoch seconds).
A refusal (bad scope, unsafe lock dir, bad input) is {"ok": false, "error": ..}, exit 2.

Times are this host's: ``expires`` = now + ttl here, so the operator's clock skew is moot.
Every action holds ``flock`` on ``DIR/.guard`` from read to write, so read-decide-write is
atomic among all processes on the host. The lock dir is opened once (O_NOFOLLOW) after its
checks and every file is then reached relative to that descriptor: swapping the path for a
symlink after the check changes nothing. A lease file is replaced whole (tmp + os.replace).
"""

import fcntl
import json
import os
import re
import stat
import sys
import time

DEFAULT_DIR = "/var/lib/opskit/locks"
SCOPE = re.compile(r"[a-z][a-z0-9_.%-]{0,199}")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
MAX_TTL = 86400.0
MAX_INPUT = 16384
# The owner record's fields and their type; nothing else from stdin is written.
FIELDS = {"owner": str, "pid": int, "run_id": str, "command": str}


class Refused(Exception):
    pass


def say(doc):
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()


def scope_arg(text):
    if not SCOPE.fullmatch(text) or ".." in text:
        raise Refused(f"not a lease scope: {text!r}")
    return text


def run_id_arg(text):
    if not RUN_ID.fullmatch(text):
        raise Refused(f"not a run id: {text!r}")
    return text


def ttl_arg(text):
    try:
        ttl = float(text)
    except ValueError:
        ttl = -1.0
    if not 0 < ttl <= MAX_TTL:  # also refuses nan and inf
        raise Refused(f"not a ttl in seconds (0 < ttl <= {MAX_TTL:g}): {text!r}")
    return ttl


def trusted_owners():
    """root, and whoever runs this (the login user, or via sudo the user who ran sudo)."""
    owners = {0, os.geteuid()}
    sudo_uid = os.environ.get("SUDO_UID", "")
    if os.geteuid() == 0 and sudo_uid.isdigit():
        owners.add(int(sudo_uid))
    return owners


def check_safe(path, st, owners):
    """Refuse a lock dir (or a parent we made) that another local user could change."""
    if stat.S_ISLNK(st.st_mode):
        raise Refused(f"lock dir {path} is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise Refused(f"lock dir {path} is not a directory")
    if st.st_uid not in owners:
        raise Refused(f"lock dir {path} is owned by uid {st.st_uid}, not root or this user")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Refused(f"lock dir {path} is group- or other-writable "
                      f"(mode {stat.S_IMODE(st.st_mode):04o})")


def check_ancestor(path, owners):
    """An existing parent must not let another user replace what is below it: owned by a
    trusted user and not writable by others (unless sticky, like /tmp); a symlink on the way
    must itself be a trusted user's."""
    lst = os.lstat(path)
    if stat.S_ISLNK(lst.st_mode) and lst.st_uid not in owners:
        raise Refused(f"{path} (above the lock dir) is a symlink of uid {lst.st_uid}")
    st = os.stat(path)
    sticky = st.st_mode & stat.S_ISVTX
    if st.st_uid not in owners or (st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky):
        raise Refused(f"{path} (above the lock dir) can be changed by another user "
                      f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})")


def open_dir(path):
    """The lock dir's descriptor: made 0700 where missing, checked, opened without
    following a symlink."""
    if not os.path.isabs(path):
        raise Refused(f"lock dir must be an absolute path: {path!r}")
    path = os.path.normpath(path)
    owners = trusted_owners()
    check_ancestor("/", owners)
    current = ""
    for part in path.strip("/").split("/"):
        current = f"{current}/{part}"
        try:
            os.mkdir(current, 0o700)
        except FileExistsError:
            if current != path:
                check_ancestor(current, owners)
        else:
            # Made just now, under a checked parent: no other user can have swapped it.
            check_safe(current, os.lstat(current), owners)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        check_safe(path, os.lstat(path), owners)  # says why: a symlink, not a directory
        raise Refused(f"cannot open lock dir {path}: {exc.strerror}") from None
    check_safe(path, os.fstat(fd), owners)
    return fd


def guard(dfd):
    """flock on DIR/.guard, held until this process exits."""
    fd = os.open(".guard", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                 dir_fd=dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in trusted_owners():
        raise Refused("the lock dir's .guard is not a regular file of root or this user")
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def lease_name(scope):
    return f"{scope}.lease"


def read(dfd, scope):
    """The lease record, or None. An unreadable or malformed file is a holder of its own
    ("corrupt"): it is never silently taken over -- only ``break`` removes it."""
    try:
        fd = os.open(lease_name(scope), os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"corrupt": f"cannot open: {exc.strerror}", "expires": float("inf")}
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_INPUT + 1)
    try:
        rec = json.loads(data.decode())
        if not isinstance(rec, dict) or not isinstance(rec.get("expires"), (int, float)):
            raise ValueError("no expiry")
    except ValueError as exc:
        return {"corrupt": f"not a lease record: {exc}", "expires": float("inf")}
    return rec


def write(dfd, scope, rec):
    name = lease_name(scope)
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp, dir_fd=dfd)  # a leftover of a killed run with our pid
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise
    os.fsync(dfd)


def remove(dfd, scope):
    os.unlink(lease_name(scope), dir_fd=dfd)
    os.fsync(dfd)


def expired(rec, now):
    return rec is not None and rec["expires"] <= now


def shown(rec, now):
    """A record as answered: with "expired", and inf (corrupt) made JSON-safe."""
    if rec is None:
        return None
    out = dict(rec)
    out["expired"] = expired(rec, now)
    if out["expires"] == float("inf"):
        out["expires"] = None
    return out


def owner_record():
    data = sys.stdin.buffer.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise Refused("owner record too long")
    try:
        doc = json.loads(data.decode())
    except ValueError:
        raise Refused("the owner record on stdin is not JSON") from None
    if not isinstance(doc, dict):
        raise Refused("the owner record on stdin is not a JSON object")
    rec = {}
    for key, kind in FIELDS.items():
        value = doc.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise Refused(f"owner record: {key} missing or not {kind.__name__}")
        if isinstance(value, str) and (len(value) > 200 or not value.isprintable()):
            raise Refused(f"owner record: {key} too long or not printable")
        rec[key] = value
    run_id_arg(rec["run_id"])
    return rec


def stamp(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def acquire(dfd, scope, ttl, rec):
    now = time.time()
    old = read(dfd, scope)
    if old is not None and not expired(old, now) and old.get("run_id") != rec["run_id"]:
        return {"ok": False, "holder": shown(old, now), "now": now}
    same_run = old is not None and old.get("run_id") == rec["run_id"]
    rec["started"] = old.get("started", stamp(now)) if same_run else stamp(now)
    rec["expires"], rec["ttl"] = now + ttl, ttl
    write(dfd, scope, rec)
    answer = {"ok": True, "expires": rec["expires"], "now": now}
    if old is not None and not same_run:
        answer["took_over"] = shown(old, now)  # an expired lease of another run
    return answer


def renew(dfd, scope, run_id, ttl):
    now = time.time()
    old = read(dfd, scope)
    if old is None or old.get("run_id") != run_id:
        return {"ok": False, "holder": shown(old, now), "now": now}
    old["expires"], old["ttl"] = now + ttl, ttl
    write(dfd, scope, old)
    return {"ok": True, "expires": old["expires"], "now": now}


def release(dfd, scope, run_id):
    now = time.time()
    old = read(dfd, scope)
    if old is None or old.get("run_id") != run_id:
        return {"ok": False, "holder": shown(old, now), "now": now}
    remove(dfd, scope)
    return {"ok": True, "now": now}


def break_(dfd, scope):
    now = time.time()
    old = read(dfd, scope)
    if old is not None:
        remove(dfd, scope)
    return {"ok": True, "holder": shown(old, now), "now": now}


def show(dfd, scope):
    now = time.time()
    old = read(dfd, scope)
    return {"ok": True, "holder": shown(old, now), "expired": expired(old, now), "now": now}


def parse(argv):
    """The action as a function of the lock dir's descriptor; every argument (and the
    owner record on stdin) checked before the lock dir is touched or the guard taken."""
    a = argv[1:]
    if argv[:1] == ["acquire"] and len(a) == 2:
        scope, ttl, rec = scope_arg(a[0]), ttl_arg(a[1]), owner_record()
        return lambda dfd: acquire(dfd, scope, ttl, rec)
    if argv[:1] == ["renew"] and len(a) == 3:
        scope, run_id, ttl = scope_arg(a[0]), run_id_arg(a[1]), ttl_arg(a[2])
        return lambda dfd: renew(dfd, scope, run_id, ttl)
    if argv[:1] == ["release"] and len(a) == 2:
        scope, run_id = scope_arg(a[0]), run_id_arg(a[1])
        return lambda dfd: release(dfd, scope, run_id)
    if argv[:1] == ["break"] and len(a) == 1:
        scope = scope_arg(a[0])
        return lambda dfd: break_(dfd, scope)
    if argv[:1] == ["show"] and len(a) == 1:
        scope = scope_arg(a[0])
        return lambda dfd: show(dfd, scope)
    raise Refused("usage: [--dir DIR] acquire SCOPE TTL | renew SCOPE RUN_ID TTL | "
                  "release SCOPE RUN_ID | break SCOPE | show SCOPE")


def main(argv):
    directory = DEFAULT_DIR
    if argv[:1] == ["--dir"] and len(argv) >= 2:
        directory, argv = argv[1], argv[2:]
    action = parse(argv)
    dfd = open_dir(directory)
    guard(dfd)
    say(action(dfd))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Refused as exc:
        say({"ok": False, "error": str(exc), "now": time.time()})
        sys.exit(2)
    except OSError as exc:
        say({"ok": False, "error": f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
             "now": time.time()})
        sys.exit(2)
