"""Which snapshot sets ``snapshot prune`` keeps and which it deletes (restic/borg ``forget``).

Pure logic: :func:`plan` takes :class:`~opskit.snapshot.sets.SnapshotSet` objects, a
:class:`KeepPolicy` and the current time, and returns a :class:`PrunePlan`. It never calls AWS;
the command deletes ``plan.delete`` and nothing else.

Rules, in the order they are applied:

1. Only sets opskit wrote (``by_opskit``: every member has ``opskit:set-id`` and
   ``opskit:created-by``) are considered. Any other set is reported in ``ignored`` and is never
   kept or deleted by this module: someone else owns it.
2. The policy is applied separately to each (host, mount) group, so one busy host cannot push
   another host's sets out of a "last N" or bucket window.
3. Within a group only COMPLETE sets (every member present once, every snapshot completed)
   count for the rules below; a set that cannot restore the array must never fill a slot.

   * ``last=N``: the N newest complete sets.
   * ``hourly``/``daily``/``weekly``/``monthly=N``: the newest complete set in each of the N
     most recent buckets that have one. Buckets are UTC hours, UTC days, ISO weeks (Monday to
     Sunday, ``%G-W%V``) and UTC months. Buckets with no complete set do not use up N, so a
     host that was down for a week still keeps N daily sets. Rules are independent: one set
     may be kept for several reasons, and each rule counts its own buckets.
   * The newest complete set of the group is ALWAYS kept ("newest complete set"), whatever
     the policy says: a prune can never leave a host without its latest good copy.

4. Sets that are not complete:

   * ``pending`` and younger than :data:`PENDING_GRACE` (1 day): kept ("pending"); EC2 may
     still be copying blocks, and deleting it would waste the work.
   * newer than the group's newest complete set: kept, so the failure stays visible until a
     later good set supersedes it.
   * in a group that has no complete set at all: kept; with nothing good to fall back on,
     pruning is not the place to decide.
   * otherwise (incomplete, error, or pending for more than a day, and older than the newest
     complete set): deleted. They never count toward any bucket.
   * ``inconsistent`` sets (taken after the freeze guard thawed, ``opskit:consistent=false``)
     are garbage whatever their age or neighbours: always deleted, none of the above keeps
     them.

Ordering is deterministic: groups by (host, mount) ascending, then newest first by
(``created``, ``set_id``) descending within a group. Ties in ``created`` are broken by
``set_id``, so the same input always gives the same plan. Reasons list the rules in the
order above. Planning again on the kept sets deletes nothing (idempotent).

The policy applies to every set it is given regardless of its ``opskit:retention`` class:
callers that keep classes apart pass only the sets of one class.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from opskit.errors import UsageError
from opskit.snapshot.sets import SnapshotSet, newest_first, sort_key

PENDING_GRACE = timedelta(days=1)
RULES = ("last", "hourly", "daily", "weekly", "monthly")

NEWEST = "newest complete set"
PENDING = "pending"
NEWER_THAN_COMPLETE = "newer than the newest complete set"
NO_COMPLETE = "no complete set in this group"

_EXAMPLE = "e.g. --keep-daily 7 --keep-weekly 4 (or 'daily=7,weekly=4')"


def _hour(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H")


def _day(t: datetime) -> str:
    return t.strftime("%Y-%m-%d")


def _week(t: datetime) -> str:
    # ISO year, not calendar year: 2027-01-01 is in 2026-W53.
    year, week, _ = t.isocalendar()
    return f"{year}-W{week:02d}"


def _month(t: datetime) -> str:
    return t.strftime("%Y-%m")


BUCKETS: tuple[tuple[str, Callable[[datetime], str]], ...] = (
    ("hourly", _hour), ("daily", _day), ("weekly", _week), ("monthly", _month),
)


# -- policy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepPolicy:
    """How many sets to keep per rule; 0 turns a rule off. At least one rule must be > 0.

    Validation happens on construction, so a KeepPolicy that exists is always usable: an
    all-zero policy would make prune delete everything but the newest set, which is never
    what someone who forgot an option meant.
    """

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __post_init__(self) -> None:
        for name in RULES:
            value = getattr(self, name)
            # bool is an int subclass; True as a count is a bug upstream, not "1".
            if isinstance(value, bool) or not isinstance(value, int):
                raise UsageError(f"--keep-{name} must be a whole number, not {value!r}",
                                 hint=f"give a count of sets to keep, {_EXAMPLE}")
            if value < 0:
                raise UsageError(f"--keep-{name} cannot be negative (got {value})",
                                 hint="use 0 to turn that rule off, or a count of sets to keep")
        if not any(getattr(self, name) for name in RULES):
            raise UsageError("refusing to prune with a policy that keeps nothing",
                             hint=f"say what to keep, {_EXAMPLE}")

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any]) -> KeepPolicy:
        """A policy from ``"last=3,daily=7 weekly=4"`` or a mapping such as inventory vars.

        Names may be spelt ``daily``, ``keep-daily``, ``keep_daily`` or ``--keep-daily``.
        Mapping values that are None are skipped, so CLI options left unset can be passed
        straight through: ``KeepPolicy.parse({"daily": opts.keep_daily, ...})``.
        """
        pairs = _split_spec(spec) if isinstance(spec, str) else list(spec.items())
        counts: dict[str, int] = {}
        for raw_name, raw_value in pairs:
            if raw_value is None:
                continue
            name = _rule_name(str(raw_name))
            if name in counts:
                raise UsageError(f"keep rule {name!r} given twice",
                                 hint="give each of last/hourly/daily/weekly/monthly once")
            counts[name] = _count(name, raw_value)
        return cls(**counts)

    def describe(self) -> str:
        """One line for humans, e.g. ``last 3, daily 7, weekly 4 (UTC buckets)``."""
        parts = [f"{name} {getattr(self, name)}" for name in RULES if getattr(self, name)]
        buckets = any(getattr(self, name) for name, _ in BUCKETS)
        return ", ".join(parts) + (" (UTC buckets, ISO weeks)" if buckets else "")

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _split_spec(spec: str) -> list[tuple[str, str]]:
    pairs = []
    for item in re.split(r"[,\s]+", spec.strip()):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"bad keep rule {item!r}: expected NAME=COUNT",
                             hint=f"rules are last, hourly, daily, weekly, monthly; {_EXAMPLE}")
        pairs.append((name, value))
    return pairs


def _rule_name(raw: str) -> str:
    name = raw.strip().lower().lstrip("-").replace("_", "-")
    name = name.removeprefix("keep-")
    if name not in RULES:
        raise UsageError(f"unknown keep rule {raw!r}",
                         hint="rules are last, hourly, daily, weekly, monthly")
    return name


def _count(name: str, raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw  # negatives are reported by KeepPolicy itself, with the same wording
    if isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
        return int(raw)
    raise UsageError(f"--keep-{name} must be a whole number, not {raw!r}",
                     hint=f"give a count of sets to keep, {_EXAMPLE}")


# -- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrunePlan:
    """What prune would do. ``keep``, ``delete`` and ``ignored`` partition the input sets."""

    keep: list[tuple[SnapshotSet, list[str]]]
    delete: list[SnapshotSet]
    ignored: list[SnapshotSet]
    policy: KeepPolicy
    now: datetime

    def reasons(self, set_id: str) -> list[str]:
        """Why ``set_id`` is kept; empty if it is not kept."""
        return next((list(r) for s, r in self.keep if s.set_id == set_id), [])

    @property
    def delete_snapshot_ids(self) -> list[str]:
        """Every member snapshot of every set to delete, in plan order."""
        return [sid for s in self.delete for sid in s.snapshot_ids]

    @property
    def freed_gib(self) -> int:
        """Sum of volume sizes of deleted snapshots: an upper bound, EBS bills changed blocks."""
        return sum(s.size_gib for s in self.delete)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.to_dict(),
            "now": self.now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "keep": [{**s.to_dict(), "reasons": list(r)} for s, r in self.keep],
            "delete": [s.to_dict() for s in self.delete],
            "ignored": [s.to_dict() for s in self.ignored],
        }


def plan(sets: Sequence[SnapshotSet], policy: KeepPolicy, now: datetime) -> PrunePlan:
    """Apply ``policy`` to ``sets`` per (host, mount); see the module docstring for the rules."""
    if now.tzinfo is None:
        # A naive "now" would silently compare local time against UTC tags.
        raise ValueError("plan() needs a timezone-aware 'now'")
    dupes = sorted(sid for sid, n in Counter(s.set_id for s in sets).items() if n > 1)
    if dupes:
        raise ValueError(f"duplicate set ids: {', '.join(dupes)}")

    groups: dict[tuple[str, str], list[SnapshotSet]] = {}
    for s in sets:
        groups.setdefault((s.host, s.mount), []).append(s)

    keep: list[tuple[SnapshotSet, list[str]]] = []
    delete: list[SnapshotSet] = []
    ignored: list[SnapshotSet] = []
    for key in sorted(groups):
        ordered = newest_first(groups[key])
        ignored.extend(s for s in ordered if not s.by_opskit)
        ours = [s for s in ordered if s.by_opskit]
        reasons = _plan_group(ours, policy, now)
        for s in ours:
            if reasons.get(s.set_id):
                keep.append((s, reasons[s.set_id]))
            else:
                delete.append(s)
    return PrunePlan(keep=keep, delete=delete, ignored=ignored, policy=policy, now=now)


def _plan_group(ours: Sequence[SnapshotSet], policy: KeepPolicy,
                now: datetime) -> dict[str, list[str]]:
    """Reasons to keep, by set id, for one (host, mount) group given newest first."""
    reasons: dict[str, list[str]] = {s.set_id: [] for s in ours}
    complete = [s for s in ours if s.complete]
    if complete:
        reasons[complete[0].set_id].append(NEWEST)
    for i, s in enumerate(complete[:policy.last], start=1):
        reasons[s.set_id].append(f"last {i} of {policy.last}")
    for rule, bucket_of in BUCKETS:
        for s, bucket in _newest_per_bucket(complete, bucket_of, getattr(policy, rule)):
            reasons[s.set_id].append(f"{rule} {bucket}")
    newest = complete[0] if complete else None
    for s in ours:
        if not s.complete and s.consistent:
            reasons[s.set_id].extend(_unfinished_reasons(s, newest, now))
    return reasons


def _newest_per_bucket(complete: Sequence[SnapshotSet], bucket_of: Callable[[datetime], str],
                       n: int) -> list[tuple[SnapshotSet, str]]:
    """The first (newest) set of each of the ``n`` most recent buckets.

    ``complete`` is newest first, so bucket labels only ever move back in time and a change
    of label is the start of an older bucket.
    """
    picked: list[tuple[SnapshotSet, str]] = []
    last_bucket: str | None = None
    for s in complete:
        if len(picked) >= n:
            break
        bucket = bucket_of(s.created.astimezone(timezone.utc))
        if bucket != last_bucket:
            picked.append((s, bucket))
            last_bucket = bucket
    return picked


def _unfinished_reasons(s: SnapshotSet, newest: SnapshotSet | None, now: datetime) -> list[str]:
    out = []
    if s.state == "pending" and now - s.created < PENDING_GRACE:
        out.append(PENDING)
    if newest is None:
        out.append(NO_COMPLETE)
    elif sort_key(s) > sort_key(newest):
        out.append(NEWER_THAN_COMPLETE)
    return out
