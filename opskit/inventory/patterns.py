"""``--limit`` host patterns, with Ansible's semantics.

A pattern is a list of terms separated by ``,`` (or by ``:`` when there is no comma, ``:``
inside brackets excepted). A term is a host or group name, a glob over host AND group names
(``app*``, ``app0[1-5]``), a host range (``app[01:05]``) or a regex (``~pg\\d+a``, matched
from the start of the name as Ansible does). ``!term`` excludes, ``&term`` intersects.
Unions are taken first, then intersections, then exclusions; the result is in inventory
order without duplicates. A pattern of only ``!``/``&`` terms starts from ``all``.

Matching works on names only (host order and the transitive members of each group), so it
is pure and independent of how the inventory was loaded.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opskit.errors import PatternError
from opskit.inventory import hostrange

_GLOB_CHARS = frozenset("*?[")
# Ansible's subscript: GROUP[3], GROUP[0:2], GROUP[1-5], GROUP[:4] (positions in the group).
_SUBSCRIPT = re.compile(r"(?P<group>.+)\[(?:-?\d+|\d*[:-]\d*)\]\Z")


@dataclass(frozen=True)
class Term:
    op: str  # '' union, '&' intersection, '!' exclusion
    text: str  # the term without its operator


def split(pattern: str) -> list[Term]:
    """Parse ``pattern`` into terms; raises PatternError on an empty ``!``/``&`` term."""
    pieces = pattern.split(",") if "," in pattern else _split_colons(pattern)
    terms = []
    for piece in (p.strip() for p in pieces):
        if not piece:
            continue  # 'a,,b' and a trailing ':' are harmless
        op = piece[0] if piece[0] in "!&" else ""
        text = piece[len(op) :].strip()
        if not text or text[0] in "!&":
            raise PatternError(
                f"bad term '{piece}' in pattern '{pattern}'",
                hint="write '!name' to exclude and '&name' to intersect, e.g. 'app*:!app01'",
            )
        terms.append(Term(op, text))
    return terms


def _split_colons(pattern: str) -> list[str]:
    """Split on ':' outside brackets, so ranges like app[01:05] stay whole."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(pattern):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(depth - 1, 0)
        elif ch == ":" and depth == 0:
            pieces.append(pattern[start:i])
            start = i + 1
    pieces.append(pattern[start:])
    return pieces


def select(
    pattern: str | None, hosts: Sequence[str], members: Mapping[str, Sequence[str]]
) -> list[str]:
    """Host names matching ``pattern``, in the order of ``hosts``.

    ``members`` maps every group name to all its hosts, descendants' included.
    Raises PatternError when a union or intersection term matches nothing (naming the
    closest names) or when the result is empty.
    """
    pattern = (pattern or "").strip()
    if pattern in ("", "all", "*"):
        if not hosts:
            raise PatternError("the inventory has no hosts", hint="check the -i inventory path")
        return list(hosts)
    terms = split(pattern)
    if not terms:
        raise PatternError(f"empty pattern '{pattern}'", hint="give a host or group name")

    matched = {t: match_term(t.text, hosts, members) for t in terms}
    # A union or intersection term that matches nothing is almost always a typo: at 3 a.m.
    # `-l app01:dbx` must not quietly act on app01 alone.
    for t in terms:
        if t.op != "!" and not matched[t]:
            raise PatternError(
                f"no hosts match '{t.text}'", hint=_close_hint(t.text, hosts, members)
            )
    unions = [t for t in terms if t.op == ""]
    chosen: set[str] = set(hosts) if not unions else set().union(*(matched[t] for t in unions))
    for t in terms:
        if t.op == "&":
            chosen &= matched[t]
    for t in terms:
        if t.op == "!":
            chosen -= matched[t]
    if not chosen:
        raise _empty_error(pattern)
    return [h for h in hosts if h in chosen]


def match_term(text: str, hosts: Sequence[str], members: Mapping[str, Sequence[str]]) -> set[str]:
    """Hosts matched by one term (without its operator)."""
    if text.startswith("~"):
        return _match_regex(text, hosts, members)
    subscript = _SUBSCRIPT.match(text)
    if subscript and subscript["group"] in members:
        # Ansible picks hosts by position here; a range of names would silently differ.
        raise PatternError(
            f"'{text}' is an Ansible subscript (hosts by position in group "
            f"'{subscript['group']}'), which opskit does not support",
            hint="name the hosts, a range of host names (app[01:05]) or a glob (app0[1-5])")
    if hostrange.has_range(text):
        try:
            names = hostrange.expand(text, keep_classes=True)
        except hostrange.RangeError as exc:
            raise PatternError(
                str(exc), hint="a range is [begin:end] or [begin:end:stride]"
            ) from None
        found: set[str] = set()
        for name in names:
            found |= _match_name(name, hosts, members)
        return found
    return _match_name(text, hosts, members)


def _match_name(name: str, hosts: Sequence[str], members: Mapping[str, Sequence[str]]) -> set[str]:
    if _GLOB_CHARS.intersection(name):
        regex = re.compile(fnmatch.translate(name))
        return _match_compiled(regex, hosts, members)
    if name in members:
        return set(members[name])  # a group wins over a host of the same name (Ansible)
    return {name} if name in set(hosts) else set()


def _match_regex(text: str, hosts: Sequence[str], members: Mapping[str, Sequence[str]]) -> set[str]:
    try:
        regex = re.compile(text[1:])
    except re.error as exc:
        raise PatternError(
            f"bad regex '{text}': {exc}",
            hint="the part after '~' is a Python regular expression matched from the start",
        ) from None
    return _match_compiled(regex, hosts, members)


def _match_compiled(
    regex: re.Pattern[str], hosts: Sequence[str], members: Mapping[str, Sequence[str]]
) -> set[str]:
    """Globs and regexes match group names (→ their hosts) and host names alike."""
    found = {h for h in hosts if regex.match(h)}
    for group, group_hosts in members.items():
        if regex.match(group):
            found.update(group_hosts)
    return found


def _empty_error(pattern: str) -> PatternError:
    return PatternError(
        f"no hosts left after '{pattern}'",
        hint="its '&' and '!' terms removed every host the other terms matched",
    )


def _close_hint(text: str, hosts: Sequence[str], members: Mapping[str, Sequence[str]]) -> str:
    names = [g for g in members if g not in ("all", "ungrouped")] + list(hosts)
    probe = text.lstrip("~").strip("*?[]^$")
    close = difflib.get_close_matches(probe, names, n=6, cutoff=0.5)
    if close:
        return "close matches: " + ", ".join(close)
    groups = sorted(g for g in members if g not in ("all", "ungrouped"))
    shown = ", ".join(groups[:12]) + (", …" if len(groups) > 12 else "")
    return f"no close names; groups are: {shown}" if groups else "the inventory has no groups"
