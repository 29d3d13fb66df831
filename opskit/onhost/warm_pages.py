"""Run on a host (stdlib only): read exactly the given pages of files into the page cache.

stdin: one JSON document {"root": DIR, "files": [[relpath, [[first_page, count], ...]], ...],
"max_bytes": N or null, "rate": bytes per second or null}. Files are warmed in the order given
(the caller puts the hottest first). Each file is opened with POSIX_FADV_RANDOM so the kernel
reads no more than asked (no readahead), then the ranges are pread in chunks of up to 1 MiB.
Prints "progress BYTES" lines as it goes, then one JSON line {"read_bytes", "read_pages",
"files", "skipped": {relpath: why}, "seconds", "truncated"}.
"""

import json
import os
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 1 << 20


def main():
    plan = json.load(sys.stdin)
    root, limit, rate = plan["root"], plan.get("max_bytes"), plan.get("rate")
    done = pages_read = files = 0
    skipped, truncated = {}, False
    t0 = last = time.monotonic()
    for rel, ranges in plan["files"]:
        if truncated:
            break
        path = os.path.join(root, rel)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:  # vanished since the map: not fatal
            skipped[rel] = str(exc)
            continue
        try:
            size = os.fstat(fd).st_size
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            files += 1
            for first, count in ranges:
                off, end = first * PAGE, min((first + count) * PAGE, size)
                while off < end:
                    n = min(CHUNK, end - off)
                    if limit is not None and done + n > limit:
                        n = (limit - done) // PAGE * PAGE
                        truncated = True
                    if n <= 0:
                        break
                    got = len(os.pread(fd, n, off))
                    done += got
                    pages_read += (got + PAGE - 1) // PAGE
                    off += n
                    if rate:  # stay under the byte rate asked for
                        ahead = done / rate - (time.monotonic() - t0)
                        if ahead > 0:
                            time.sleep(ahead)
                    now = time.monotonic()
                    if now - last > 0.2:
                        print(f"progress {done}", flush=True)
                        last = now
                    if truncated:
                        break
                if truncated:
                    break
        except OSError as exc:
            skipped[rel] = str(exc)
        finally:
            os.close(fd)
    print(json.dumps({"read_bytes": done, "read_pages": pages_read, "files": files,
                      "skipped": skipped, "seconds": round(time.monotonic() - t0, 3),
                      "truncated": truncated}), flush=True)


if __name__ == "__main__":
    main()
