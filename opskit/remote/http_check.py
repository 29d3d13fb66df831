"""Run on a target host (stdlib only): poll an HTTP URL until it answers 200.

argv: URL TIMEOUT_SECONDS [EXPECT_TEXT]
Prints one JSON line {"status": N, "body": "...", "seconds": S}; exit 0 when the answer was
200 (and contained EXPECT_TEXT, if given) before the deadline, else 1.
"""

import json
import sys
import time
import urllib.error
import urllib.request


def probe(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        return None, str(exc)


def main():
    url, timeout = sys.argv[1], float(sys.argv[2])
    expect = sys.argv[3] if len(sys.argv) > 3 else ""
    start = time.monotonic()
    status, body = None, ""
    while True:
        status, body = probe(url)
        if status == 200 and expect in body:
            break
        if time.monotonic() - start > timeout:
            break
        time.sleep(0.2)
    seconds = round(time.monotonic() - start, 3)
    print(json.dumps({"status": status, "body": body[:500], "seconds": seconds}))
    return 0 if status == 200 and expect in body else 1


if __name__ == "__main__":
    sys.exit(main())
