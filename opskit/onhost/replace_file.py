"""Run on a target host (stdlib only): replace one file atomically and safely.

argv: PATH [SHA256]; stdin: the new content.
The content goes to an exclusive temp file with an unpredictable name in PATH's directory
(``tempfile.mkstemp``: O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), gets the original's owner and
mode, is fsynced and renamed over PATH (readers see the old file or the new one, never half).
A symlink planted anywhere, at an old fixed temp name or at PATH itself, is never followed.
With SHA256, PATH must still hold the content of that digest (it was read before the new
content was computed), else nothing is written. A new file gets mode 0644.
Prints one JSON line {"replaced": PATH}; on refusal one line on stderr, exit 1.
"""

import hashlib
import json
import os
import stat
import sys
import tempfile


class Refused(Exception):
    pass


def replace(path, data, expect=None):
    directory = os.path.dirname(path) or "."
    try:
        old = os.lstat(path)
    except FileNotFoundError:
        old = None
    if old is not None and not stat.S_ISREG(old.st_mode):
        raise Refused(f"{path} is not a regular file (a symlink?): not replaced")
    if expect is not None:
        if old is None:
            raise Refused(f"{path} is gone: not replaced")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            if hashlib.sha256(fh.read()).hexdigest() != expect:
                raise Refused(f"{path} changed while it was being rewritten: not replaced")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".opskit")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if old is not None:
                # chown first: it clears set-id bits that the chmod then restores.
                os.fchown(fh.fileno(), old.st_uid, old.st_gid)
                os.fchmod(fh.fileno(), stat.S_IMODE(old.st_mode))
            else:
                os.fchmod(fh.fileno(), 0o644)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def main():
    path = sys.argv[1]
    expect = sys.argv[2] if len(sys.argv) > 2 else None
    try:
        replace(path, sys.stdin.buffer.read(), expect)
    except (Refused, OSError) as exc:
        print(f"replace_file: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"replaced": path}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
