"""Host-range expansion in Ansible syntax: ``app[01:25]`` → app01 … app25.

A bracket holds ``begin:end`` or ``begin:end:stride``; numbers keep the zero padding of
``begin`` (``[01:25]`` → 01, 02, …), single letters count through the alphabet
(``db[a:c]``), and several brackets in one name multiply (``r[1:2][a:b]`` → r1a r1b r2a r2b).

The inventory loader and the ``--limit`` matcher both use it; each adds its own context
(file and group, or the pattern) to a :class:`RangeError`.
"""

from __future__ import annotations

import itertools
import string

# The most names one range (all its brackets multiplied) may expand to: far above any real
# fleet, and checked before anything is allocated, so app[1:100000000] is a one-line error
# instead of a MemoryError.
MAX_HOSTS = 100_000


class RangeError(ValueError):
    """A malformed host range; the message names the offending name."""


def has_range(name: str) -> bool:
    """True if ``name`` holds a ``[begin:end]`` range (a ``[…]`` without ':' is not one)."""
    start = name.find("[")
    while start != -1:
        end = name.find("]", start)
        if end == -1:
            return False
        if ":" in name[start:end]:
            return True
        start = name.find("[", end)
    return False


def expand(name: str, *, keep_classes: bool = False) -> list[str]:
    """Expand every range in ``name``, in order; a name without brackets is returned as is.

    ``keep_classes`` keeps a bracket without ':' literally (a glob class such as
    ``app0[1-5]`` in a --limit pattern); without it such a bracket is an error, because an
    inventory host name with brackets is almost always a mistyped range.
    """
    if "[" not in name and "]" not in name:
        return [name]
    parts = _split(name, keep_classes)
    total = 1
    for alternatives in parts:
        total *= len(alternatives)
    if total > MAX_HOSTS:
        raise _too_many(name, total)
    return ["".join(combo) for combo in itertools.product(*parts)]


def _split(name: str, keep_classes: bool) -> list[list[str]]:
    """Cut ``name`` into literal pieces (one alternative) and ranges (many alternatives)."""
    parts: list[list[str]] = []
    pos = 0
    while pos < len(name):
        open_at = name.find("[", pos)
        close_at = name.find("]", pos)
        if open_at == -1:
            if close_at != -1:
                raise RangeError(f"bad host range '{name}': ']' without '['")
            parts.append([name[pos:]])
            break
        if close_at != -1 and close_at < open_at:
            raise RangeError(f"bad host range '{name}': ']' without '['")
        close_at = name.find("]", open_at)
        nested = name.find("[", open_at + 1)
        if close_at == -1 or (nested != -1 and nested < close_at):
            raise RangeError(f"bad host range '{name}': '[' without ']'")
        if open_at > pos:
            parts.append([name[pos:open_at]])
        body = name[open_at + 1 : close_at]
        if ":" in body:
            parts.append(_range(name, body))
        elif keep_classes:
            parts.append([name[open_at : close_at + 1]])
        else:
            raise RangeError(
                f"bad host range '{name}': '[{body}]' is not begin:end (write e.g. [01:25])"
            )
        pos = close_at + 1
    return parts


def _range(name: str, body: str) -> list[str]:
    """The values of one ``begin:end[:stride]`` bracket."""
    fields = body.split(":")
    if len(fields) not in (2, 3):
        raise RangeError(f"bad host range '{name}': '[{body}]' is not begin:end[:stride]")
    begin, end = fields[0].strip(), fields[1].strip()
    stride = _stride(name, fields[2].strip() if len(fields) == 3 else "1")
    if begin == "" and end.isdigit():
        begin = "0"  # Ansible allows [:9]
    if begin.isdigit() and end.isdigit():
        return _numbers(name, begin, end, stride)
    if _is_letter(begin) and _is_letter(end) and begin.islower() == end.islower():
        return _letters(name, begin, end, stride)
    raise RangeError(
        f"bad host range '{name}': begin and end must both be numbers or both be "
        f"single letters of the same case (got '{begin}' and '{end}')"
    )


def _stride(name: str, text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise RangeError(f"bad host range '{name}': stride must be a positive integer")
    return int(text)


def _numbers(name: str, begin: str, end: str, stride: int) -> list[str]:
    lo, hi = int(begin), int(end)
    if lo > hi:
        raise RangeError(f"bad host range '{name}': begin {begin} is after end {end}")
    # A leading zero on begin means "pad to this width"; Ansible insists end agrees.
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    if width and len(end) != width:
        raise RangeError(
            f"bad host range '{name}': zero-padded begin '{begin}' and end '{end}' "
            "must have the same width"
        )
    count = (hi - lo) // stride + 1
    if count > MAX_HOSTS:
        raise _too_many(name, count)
    return [str(n).zfill(width) for n in range(lo, hi + 1, stride)]


def _too_many(name: str, count: int) -> RangeError:
    return RangeError(f"host range '{name}' expands to {count:,} names, more than the "
                      f"limit of {MAX_HOSTS:,}")


def _is_letter(text: str) -> bool:
    return len(text) == 1 and text in string.ascii_letters


def _letters(name: str, begin: str, end: str, stride: int) -> list[str]:
    if begin > end:
        raise RangeError(f"bad host range '{name}': begin '{begin}' is after end '{end}'")
    return [chr(c) for c in range(ord(begin), ord(end) + 1, stride)]
