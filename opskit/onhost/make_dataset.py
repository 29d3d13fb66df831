"""Run on a lab host (stdlib only): a deterministic data set of mixed-size files, cold.

argv: DIR SEED SPEC  (SPEC: comma-separated sizes in KiB; file i gets SPEC[i] KiB of bytes
from random.Random(SEED + i)). Idempotent: a manifest of the same seed and spec means the set
is already there (the manifest is DIR.manifest, beside it). Every file is fsynced and
dropped from the page cache (starts cold).
Prints one JSON line {"created": N, "kept": N, "bytes": N}.
"""

import json
import os
import random
import sys


def main():
    root, seed, spec = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3].split(",")]
    os.makedirs(root, exist_ok=True)
    manifest = root.rstrip("/") + ".manifest"  # beside the set: the set holds data files only
    want = json.dumps({"seed": seed, "spec": spec})
    try:
        with open(manifest) as fh:
            if fh.read() == want:
                print(json.dumps({"created": 0, "kept": len(spec), "bytes": sum(spec) * 1024}))
                return 0
    except OSError:
        pass
    total = 0
    for i, kib in enumerate(spec):
        rnd = random.Random(seed + i)
        path = os.path.join(root, f"f{i:03d}.dat")
        with open(path, "wb") as fh:
            left = kib * 1024
            while left:
                n = min(left, 1 << 20)
                fh.write(rnd.randbytes(n))
                left -= n
            fh.flush()
            os.fsync(fh.fileno())
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        total += kib * 1024
    with open(manifest, "w") as fh:
        fh.write(want)
    print(json.dumps({"created": len(spec), "kept": 0, "bytes": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
