"""Run on a host (stdlib only): page-cache residency of every regular file under a directory.

argv: DIR
Prints one JSON document: {"root", "page_size", "files": {relpath: {"size", "pages",
"resident": [[first_page, count], ...]}}, "skipped": {relpath: why}}. Residency comes from
mincore(2) over a read-only shared mapping (mapping does not read anything: no page is made
resident by looking). Files that vanish or cannot be opened are listed in "skipped".
"""

import ctypes
import ctypes.util
import json
import mmap
import os
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte))
libc.mincore.restype = ctypes.c_int
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long)
libc.mmap.restype = ctypes.c_void_p
libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
MAP_FAILED = ctypes.c_void_p(-1).value


def runs(vec):
    """Run-length ranges [[first, count], ...] of the resident pages in a mincore vector."""
    out, start = [], None
    for i, b in enumerate(vec):
        if b & 1:
            if start is None:
                start = i
        elif start is not None:
            out.append([start, i - start])
            start = None
    if start is not None:
        out.append([start, len(vec) - start])
    return out


def residency(path):
    # libc's mmap, not Python's: a read-only mapping cannot be exported as a ctypes buffer.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return size, 0, []
        pages = (size + PAGE - 1) // PAGE
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, MAP_FAILED):
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            return size, pages, runs(vec)
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def main():
    root = sys.argv[1]
    files, skipped = {}, {}
    for dirpath, _dirs, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            try:
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                size, pages, resident = residency(path)
            except (OSError, ValueError) as exc:  # vanished, unreadable, changed under us
                skipped[rel] = str(exc)
                continue
            files[rel] = {"size": size, "pages": pages, "resident": resident}
    json.dump({"root": root, "page_size": PAGE, "files": files, "skipped": skipped},
              sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
