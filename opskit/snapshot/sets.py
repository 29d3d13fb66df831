"""Group EBS snapshots into the sets ``snapshot create`` made, and judge each set.

Pure logic: input is what ``ec2.describe_snapshots`` returns (``SnapshotId``, ``VolumeId``,
``State``, ``Progress``, ``StartTime``, ``VolumeSize``, ``Tags``...), output is one
:class:`SnapshotSet` per ``opskit:set-id`` tag value. No AWS call happens here.

A set is only usable for a restore when every member of the RAID array is there exactly once
and every snapshot has completed, so that is what :attr:`SnapshotSet.complete` means. Tags can
be damaged (hand edits, a tagging call that failed half way): that must never crash a listing
or a prune, so malformed tags make the set ``incomplete`` and the problem is recorded in
:attr:`SnapshotSet.problems` / :attr:`SnapshotSet.reason` instead of raising.

A set whose snapshots ``snapshot create`` could not vouch for (the freeze guard thawed before
the snapshot call returned) and could not delete is tagged ``opskit:consistent=false``: such a
set is ``inconsistent``, never complete, whatever else it looks like. Any member with that tag
(or any value but ``true``) is enough.

Order is deterministic everywhere: sets newest first by (``created``, ``set_id``) descending,
members by (index, snapshot id).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

TAG = "opskit:"
SET_ID = f"{TAG}set-id"
HOST = f"{TAG}host"
MOUNT = f"{TAG}mount"
ARRAY = f"{TAG}array"
MEMBER = f"{TAG}member"
MEMBERS = f"{TAG}members"
CREATED = f"{TAG}created"
RETENTION = f"{TAG}retention"
CREATED_BY = f"{TAG}created-by"
CONSISTENT = f"{TAG}consistent"

DEFAULT_RETENTION = "default"
# Used only when neither the created tag nor any StartTime can be read: sorts such a set last.
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Tags that legitimately differ between the members of one set, so never "common".
_PER_MEMBER_TAGS = frozenset({MEMBER})


@dataclass(frozen=True)
class Member:
    """One snapshot of a set. ``index`` is None when its ``opskit:member`` tag is unreadable."""

    index: int | None
    snapshot_id: str
    volume_id: str
    state: str
    progress: str
    size_gib: int
    start_time: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "snapshot_id": self.snapshot_id,
            "volume_id": self.volume_id,
            "state": self.state,
            "progress": self.progress,
            "size_gib": self.size_gib,
            "start_time": _iso(self.start_time) if self.start_time else None,
        }


@dataclass(frozen=True)
class SnapshotSet:
    """The snapshots of one ``opskit:set-id``: one consistent copy of a RAID mount."""

    set_id: str
    host: str
    mount: str
    array: str
    created: datetime
    expected_members: int | None
    members: tuple[Member, ...]
    retention: str = DEFAULT_RETENTION
    by_opskit: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    # Tag damage found while grouping (bad member index, bad date, members disagreeing...).
    # Any entry makes the set incomplete: we cannot vouch for a set we cannot read.
    problems: tuple[str, ...] = ()
    # False when a member says opskit:consistent=false: taken outside the freeze window.
    consistent: bool = True

    # -- verdicts ------------------------------------------------------------------------

    @property
    def indexes(self) -> list[int]:
        return sorted(m.index for m in self.members if m.index is not None)

    @property
    def missing(self) -> list[int]:
        """Member indexes 0..expected-1 that no snapshot carries (empty if expected unknown)."""
        if self.expected_members is None:
            return []
        present = set(self.indexes)
        return [i for i in range(self.expected_members) if i not in present]

    @property
    def duplicates(self) -> list[int]:
        """Member indexes carried by more than one snapshot."""
        return sorted(i for i, n in Counter(self.indexes).items() if n > 1)

    @property
    def unexpected(self) -> list[int]:
        """Member indexes outside 0..expected-1 (a member count tag that disagrees)."""
        if self.expected_members is None:
            return []
        return sorted({i for i in self.indexes if not 0 <= i < self.expected_members})

    @property
    def _structurally_whole(self) -> bool:
        # Every member 0..n-1 exactly once, nothing else, and tags we could read.
        return (
            not self.problems
            and self.expected_members is not None
            and len(self.members) == self.expected_members
            and not self.missing
            and not self.duplicates
            and not self.unexpected
        )

    # Cached: prune asks every set for its verdict many times, and the fields never change
    # (cached_property writes the instance __dict__ directly, which a frozen dataclass allows).
    @cached_property
    def complete(self) -> bool:
        """True only when the set can restore the whole array: all members, all completed."""
        return (self.consistent and self._structurally_whole
                and all(m.state == "completed" for m in self.members))

    @cached_property
    def state(self) -> str:
        """``complete`` | ``pending`` | ``incomplete`` | ``error`` | ``inconsistent``.

        ``inconsistent`` (an ``opskit:consistent=false`` tag) wins over everything: the
        snapshots were taken after the thaw, so no member state can make them usable.
        Then unreadable tags (``incomplete``): a prune must treat a set it
        cannot read as broken rather than guess. Then any member in ``error`` makes the set
        ``error``; a missing/duplicate member ``incomplete``; a still-running snapshot
        ``pending``. Other EC2 states (``recoverable``...) are not restorable now: incomplete.
        """
        if not self.consistent:
            return "inconsistent"
        if self.problems:
            return "incomplete"
        if any(m.state == "error" for m in self.members):
            return "error"
        if not self._structurally_whole:
            return "incomplete"
        states = {m.state for m in self.members}
        if states == {"completed"}:
            return "complete"
        if states <= {"completed", "pending"}:
            return "pending"
        return "incomplete"

    @property
    def reason(self) -> str | None:
        """Why the set is not complete, in one line; None when it is complete."""
        if self.complete:
            return None
        if not self.consistent:
            # The one reason that matters: nothing else can make this set usable.
            return (f"not consistent: taken after the freeze guard thawed ({CONSISTENT}="
                    "false)")
        parts = list(self.problems)
        if self.expected_members is None and not any(MEMBERS in p for p in self.problems):
            parts.append(f"no {MEMBERS} tag")
        if self.missing:
            parts.append("missing member " + ", ".join(map(str, self.missing)))
        if self.duplicates:
            parts.append("duplicate member " + ", ".join(map(str, self.duplicates)))
        if self.unexpected:
            parts.append(f"member index out of range 0..{self.expected_members - 1}: "
                         + ", ".join(map(str, self.unexpected)))
        for state, n in sorted(Counter(m.state for m in self.members).items()):
            if state != "completed":
                parts.append(f"{n} member{'s' if n != 1 else ''} {state}")
        return "; ".join(parts) or "incomplete"

    @property
    def size_gib(self) -> int:
        return sum(m.size_gib for m in self.members)

    @property
    def snapshot_ids(self) -> list[str]:
        return [m.snapshot_id for m in self.members]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (``--json`` output): plain str/int/bool/list/dict only."""
        return {
            "set_id": self.set_id,
            "host": self.host,
            "mount": self.mount,
            "array": self.array,
            "created": _iso(self.created),
            "state": self.state,
            "complete": self.complete,
            "consistent": self.consistent,
            "reason": self.reason,
            "problems": list(self.problems),
            "expected_members": self.expected_members,
            "missing": self.missing,
            "size_gib": self.size_gib,
            "retention": self.retention,
            "by_opskit": self.by_opskit,
            "tags": dict(sorted(self.tags.items())),
            "members": [m.to_dict() for m in self.members],
        }


def sort_key(s: SnapshotSet) -> tuple[datetime, str]:
    """Ascending age order key; sort with ``reverse=True`` for newest first."""
    return (s.created, s.set_id)


def newest_first(sets: Iterable[SnapshotSet]) -> list[SnapshotSet]:
    return sorted(sets, key=sort_key, reverse=True)


def group(snapshots: Iterable[Mapping[str, Any]]) -> list[SnapshotSet]:
    """One :class:`SnapshotSet` per ``opskit:set-id``, newest first.

    Snapshots without that tag are not ours to group and are skipped. Never raises on
    damaged tags: the damage is recorded on the set.
    """
    by_id: dict[str, list[tuple[Mapping[str, Any], dict[str, str]]]] = {}
    for snap in snapshots:
        tags = tag_dict(snap.get("Tags"))
        sid = tags.get(SET_ID, "").strip()
        if sid:
            by_id.setdefault(sid, []).append((snap, tags))
    return newest_first(_build(sid, items) for sid, items in by_id.items())


def tag_dict(tags: Any) -> dict[str, str]:
    """EC2's ``[{'Key':..,'Value':..}]`` as a dict; tolerant of None and odd entries."""
    out: dict[str, str] = {}
    for t in tags or ():
        if isinstance(t, Mapping) and "Key" in t:
            out[str(t["Key"])] = str(t.get("Value", ""))
    return out


# -- building one set ------------------------------------------------------------------------


def _build(sid: str, items: Sequence[tuple[Mapping[str, Any], dict[str, str]]]) -> SnapshotSet:
    problems: list[str] = []
    members = tuple(sorted((_member(snap, tags, problems) for snap, tags in items),
                           key=lambda m: (m.index if m.index is not None else -1, m.snapshot_id)))
    all_tags = [tags for _, tags in items]

    def common(key: str, default: str = "") -> str:
        return _agreed(all_tags, key, default, problems)

    expected = _expected_members(common(MEMBERS), problems)
    created = _created(common(CREATED), members, problems)
    return SnapshotSet(
        set_id=sid,
        host=common(HOST),
        mount=common(MOUNT),
        array=common(ARRAY),
        created=created,
        expected_members=expected,
        members=members,
        retention=common(RETENTION, DEFAULT_RETENTION) or DEFAULT_RETENTION,
        # Only sets opskit itself wrote may ever be pruned, so every member must say so.
        by_opskit=all(CREATED_BY in t for t in all_tags),
        tags=_common_tags(all_tags),
        problems=tuple(problems),
        consistent=not any(_says_inconsistent(t) for t in all_tags),
    )


def _says_inconsistent(tags: Mapping[str, str]) -> bool:
    # Only an explicit "true" vouches; a damaged value cannot.
    return CONSISTENT in tags and tags[CONSISTENT].strip().lower() != "true"


def _member(snap: Mapping[str, Any], tags: dict[str, str], problems: list[str]) -> Member:
    snapshot_id = str(snap.get("SnapshotId", ""))
    raw = tags.get(MEMBER)
    index: int | None = None
    if raw is None:
        problems.append(f"{snapshot_id} has no {MEMBER} tag")
    else:
        try:
            index = int(raw.strip())
        except ValueError:
            problems.append(f"{snapshot_id} has a bad {MEMBER} tag {raw!r}")
    try:
        size = int(snap.get("VolumeSize") or 0)
    except (TypeError, ValueError):
        size = 0
    return Member(
        index=index,
        snapshot_id=snapshot_id,
        volume_id=str(snap.get("VolumeId", "")),
        state=str(snap.get("State", "unknown")),
        progress=str(snap.get("Progress", "")),
        size_gib=size,
        start_time=_as_utc(snap.get("StartTime")),
    )


def _agreed(all_tags: Sequence[dict[str, str]], key: str, default: str,
            problems: list[str]) -> str:
    """The value every member carries for ``key``; a disagreement is a problem.

    On disagreement the smallest value is returned, only so that output stays stable.
    """
    values = sorted({t.get(key, default) for t in all_tags})
    if len(values) > 1:
        problems.append(f"members disagree on {key}: " + ", ".join(repr(v) for v in values))
    return values[0] if values else default


def _expected_members(raw: str, problems: list[str]) -> int | None:
    if not raw:
        return None  # reported by SnapshotSet.reason
    try:
        n = int(raw.strip())
    except ValueError:
        problems.append(f"bad {MEMBERS} tag {raw!r}")
        return None
    if n < 1:
        problems.append(f"bad {MEMBERS} tag {raw!r}")
        return None
    return n


def _created(raw: str, members: Sequence[Member], problems: list[str]) -> datetime:
    """The set's creation time from its tag; the earliest member StartTime if unreadable."""
    parsed = parse_time(raw) if raw else None
    if parsed is not None:
        return parsed
    problems.append(f"bad {CREATED} tag {raw!r}" if raw else f"no {CREATED} tag")
    starts = [m.start_time for m in members if m.start_time is not None]
    return min(starts) if starts else EPOCH


def _common_tags(all_tags: Sequence[dict[str, str]]) -> dict[str, str]:
    if not all_tags:
        return {}
    first, rest = all_tags[0], all_tags[1:]
    return {
        k: v for k, v in sorted(first.items())
        if k not in _PER_MEMBER_TAGS and all(t.get(k) == v for t in rest)
    }


# -- time helpers ----------------------------------------------------------------------------


def parse_time(raw: str) -> datetime | None:
    """ISO 8601 -> tz-aware UTC datetime; naive means UTC; None if unreadable."""
    text = raw.strip()
    # fromisoformat learnt "Z" only in 3.11; opskit supports 3.10.
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return _as_utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, str):
        return parse_time(value)
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
