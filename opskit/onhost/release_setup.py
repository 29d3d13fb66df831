"""Run on a target host (stdlib only): check an unpacked release, then finish it.

argv: one JSON document {"dir": RELEASE_DIR, "files": {"RELEASE": text, ...},
"shared_dirs": [[TARGET, PATH], ...], "shared_files": [[TARGET, PATH], ...]}
(PATH relative to RELEASE_DIR, TARGET absolute).

The artifact is input, not trusted: it is refused (one line per problem on stderr, exit 67)
if it holds a symlink that resolves outside the release, a device file, FIFO or socket, or a
setuid/setgid bit. Then, never following a symlink inside the release: the files are written
(what was at their name is unlinked, a new file created with O_EXCL|O_NOFOLLOW) and the shared
paths linked (every parent opened with O_NOFOLLOW; a symlink there is refused, what is at the
last name is removed without following it). The symlinks are resolved once more after the
shared links exist (``log/../x`` moves with ``log``). A missing shared file: exit 3.
Nothing is printed on stdout.
"""

import json
import os
import shutil
import stat
import sys

REFUSED = 67
MISSING = 3
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class Refused(Exception):
    pass


def inside(path, root):
    return path == root or path.startswith(root + "/")


def check_tree(top):
    """Problems of the unpacked tree, and its symlinks (paths relative to ``top``)."""
    root = os.path.realpath(top)
    problems, links = [], []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, top)
            st = os.lstat(path)
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                links.append(rel)
                where = os.path.realpath(path)
                if not inside(where, root):
                    problems.append(f"{rel!r}: symlink to {os.readlink(path)!r} resolves "
                                    f"outside the release")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                kind = ("FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
                        else "device file")
                problems.append(f"{rel!r}: {kind}")
            elif mode & (stat.S_ISUID | stat.S_ISGID):
                problems.append(f"{rel!r}: setuid/setgid bit (mode {stat.S_IMODE(mode):o})")
    return problems, links


def open_parent(top_fd, path, create):
    """An fd of ``path``'s parent directory inside the release, never through a symlink."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    fd = os.dup(top_fd)
    try:
        for i, part in enumerate(parts[:-1]):
            if create:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                raise Refused(f"{'/'.join(parts[:i + 1])!r}: not a directory (a symlink?); "
                              f"{path!r} would be made through it") from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def remove_at(fd, name, top, path):
    """Remove what is at ``name`` in directory ``fd`` (if anything), following no symlink."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        # The parents were just opened without following links: the path names this dir.
        shutil.rmtree(os.path.join(top, path))
    else:
        os.unlink(name, dir_fd=fd)


def write_file(top_fd, top, name, text):
    fd, last = open_parent(top_fd, name, create=False)
    try:
        st = None
        try:
            st = os.stat(last, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise Refused(f"{name!r}: a directory in the artifact")
        remove_at(fd, last, top, name)
        out = os.open(last, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                      dir_fd=fd)
        try:
            os.write(out, text.encode())
        finally:
            os.close(out)
    finally:
        os.close(fd)


def link(top_fd, top, target, path):
    fd, last = open_parent(top_fd, path, create=True)
    try:
        remove_at(fd, last, top, path)
        os.symlink(target, last, dir_fd=fd)
    finally:
        os.close(fd)


def main(doc):
    top = doc["dir"]
    problems, links = check_tree(top)
    if problems:
        raise Refused(*problems)
    top_fd = os.open(top, _DIR_FLAGS)
    try:
        for name, text in doc["files"].items():
            write_file(top_fd, top, name, text)
        made = set()
        for target, path in doc["shared_dirs"]:
            os.makedirs(target, exist_ok=True)
            link(top_fd, top, target, path)
            made.add(os.path.normpath(path))
        for target, path in doc["shared_files"]:
            if not os.path.exists(target):
                print(f"missing shared file {target}", file=sys.stderr)
                return MISSING
            link(top_fd, top, target, path)
            made.add(os.path.normpath(path))
    finally:
        os.close(top_fd)
    root = os.path.realpath(top)
    again = []
    for rel in links:
        path = os.path.join(top, rel)
        if rel in made or not os.path.islink(path):
            continue
        if not inside(os.path.realpath(path), root):
            again.append(f"{rel!r}: symlink to {os.readlink(path)!r} resolves outside the "
                         f"release once the shared paths are linked")
    if again:
        raise Refused(*again)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(json.loads(sys.argv[1])))
    except Refused as exc:
        for line in exc.args[:5]:
            print(f"refused: {line}", file=sys.stderr)
        if len(exc.args) > 5:
            print(f"refused: ... and {len(exc.args) - 5} more", file=sys.stderr)
        sys.exit(REFUSED)
