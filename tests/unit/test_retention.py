"""Prune planning: worked examples, policy parsing, and properties over random histories."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opskit.errors import UsageError
from opskit.snapshot.retention import KeepPolicy, PrunePlan, plan
from opskit.snapshot.sets import Member, SnapshotSet

UTC = timezone.utc
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

# Member states per kind of set; "incomplete" lacks member 1 of 2.
KIND_STATES = {
    "complete": ("completed", "completed"),
    "pending": ("completed", "pending"),
    "error": ("completed", "error"),
    "incomplete": ("completed",),
}


def mkset(set_id: str, created: datetime, *, kind: str = "complete", host: str = "db1",
          mount: str = "/data", by_opskit: bool = True) -> SnapshotSet:
    members = tuple(
        Member(index=i, snapshot_id=f"snap-{set_id}-{i}", volume_id=f"vol-{i}", state=state,
               progress="100%" if state == "completed" else "10%", size_gib=100,
               start_time=created)
        for i, state in enumerate(KIND_STATES[kind])
    )
    s = SnapshotSet(set_id=set_id, host=host, mount=mount, array="/dev/md0", created=created,
                    expected_members=2, members=members, by_opskit=by_opskit)
    assert s.state == kind  # the fixture itself must mean what it says
    return s


def ids(items: list[SnapshotSet]) -> list[str]:
    return [s.set_id for s in items]


def kept_ids(p: PrunePlan) -> list[str]:
    return [s.set_id for s, _ in p.keep]


def daily_sets(days: int, end: datetime = NOW) -> list[SnapshotSet]:
    """One complete set a day at 04:50 UTC, ids d-YYYY-MM-DD, ending on ``end``'s day."""
    last = end.replace(hour=4, minute=50, second=0, microsecond=0)
    return [mkset(f"d-{t:%Y-%m-%d}", t) for t in (last - timedelta(days=i) for i in range(days))]


# -- worked examples -------------------------------------------------------------------------


def test_thirty_days_keep_daily_7_weekly_4() -> None:
    # 2026-11-24 is a Tuesday in ISO week 48.
    p = plan(daily_sets(30), KeepPolicy(daily=7, weekly=4), NOW)
    assert kept_ids(p) == [
        "d-2026-11-24", "d-2026-11-23", "d-2026-11-22", "d-2026-11-21", "d-2026-11-20",
        "d-2026-11-19", "d-2026-11-18",  # 7 days
        "d-2026-11-15",  # Sunday, newest of W46 (W47's newest is the 22nd, already daily)
        "d-2026-11-08",  # Sunday, newest of W45
    ]
    assert len(p.delete) == 21 and p.ignored == []
    assert p.reasons("d-2026-11-24") == ["newest complete set", "daily 2026-11-24",
                                         "weekly 2026-W48"]
    assert p.reasons("d-2026-11-22") == ["daily 2026-11-22", "weekly 2026-W47"]
    assert p.reasons("d-2026-11-08") == ["weekly 2026-W45"]


def test_last_counts_only_complete_sets() -> None:
    sets = [
        mkset("c1", NOW - timedelta(hours=1), kind="incomplete"),
        mkset("c2", NOW - timedelta(hours=2)),
        mkset("c3", NOW - timedelta(hours=3), kind="error"),
        mkset("c4", NOW - timedelta(hours=4)),
        mkset("c5", NOW - timedelta(hours=5)),
        mkset("c6", NOW - timedelta(hours=6)),
    ]
    p = plan(sets, KeepPolicy(last=3), NOW)
    # c1 is newer than the newest complete set (kept to show the failure); c3 is not.
    assert kept_ids(p) == ["c1", "c2", "c4", "c5"]
    assert ids(p.delete) == ["c3", "c6"]
    assert p.reasons("c1") == ["newer than the newest complete set"]
    assert p.reasons("c5") == ["last 3 of 3"]


def test_newest_complete_set_always_kept_odd_times() -> None:
    sets = [
        mkset("late-broken", datetime(2026, 11, 24, 0, 10, tzinfo=UTC), kind="incomplete"),
        mkset("just-before-midnight", datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC)),
        mkset("earlier", datetime(2026, 11, 23, 0, 0, tzinfo=UTC)),
        mkset("old-broken", datetime(2026, 11, 22, 0, 0, tzinfo=UTC), kind="error"),
    ]
    p = plan(sets, KeepPolicy(hourly=0, last=0, daily=1), NOW)
    assert kept_ids(p) == ["late-broken", "just-before-midnight"]
    assert p.reasons("just-before-midnight") == ["newest complete set", "daily 2026-11-23"]
    assert ids(p.delete) == ["earlier", "old-broken"]


def test_unfinished_sets() -> None:
    sets = [
        mkset("young-pending", NOW - timedelta(hours=23), kind="pending"),
        mkset("good", NOW - timedelta(days=1, hours=1)),
        mkset("stuck-pending", NOW - timedelta(days=2), kind="pending"),
        mkset("broken", NOW - timedelta(days=3), kind="incomplete"),
        mkset("failed", NOW - timedelta(days=4), kind="error"),
        mkset("older-good", NOW - timedelta(days=5)),
    ]
    p = plan(sets, KeepPolicy(last=5), NOW)
    assert kept_ids(p) == ["young-pending", "good", "older-good"]
    assert p.reasons("young-pending") == ["pending", "newer than the newest complete set"]
    assert ids(p.delete) == ["stuck-pending", "broken", "failed"]


def test_young_pending_older_than_newest_complete_is_kept() -> None:
    sets = [mkset("good", NOW - timedelta(hours=1)),
            mkset("slow", NOW - timedelta(hours=5), kind="pending")]
    p = plan(sets, KeepPolicy(last=1), NOW)
    assert kept_ids(p) == ["good", "slow"] and p.reasons("slow") == ["pending"]


def inconsistent(set_id: str, created: datetime, kind: str = "complete") -> SnapshotSet:
    s = dataclasses.replace(mkset(set_id, created, kind=kind), consistent=False)
    assert s.state == "inconsistent" and not s.complete
    return s


def test_inconsistent_sets_are_always_deleted() -> None:
    # Newer than the newest complete set, young, structurally whole: still garbage.
    sets = [inconsistent("torn-new", NOW - timedelta(minutes=5)),
            inconsistent("torn-pending", NOW - timedelta(minutes=9), kind="pending"),
            mkset("good", NOW - timedelta(hours=1)),
            inconsistent("torn-old", NOW - timedelta(days=2))]
    p = plan(sets, KeepPolicy(last=10), NOW)
    assert kept_ids(p) == ["good"] and p.reasons("good")[0] == "newest complete set"
    assert ids(p.delete) == ["torn-new", "torn-pending", "torn-old"]


def test_inconsistent_sets_go_even_without_a_complete_set() -> None:
    sets = [inconsistent("torn", NOW - timedelta(hours=1)),
            mkset("broken", NOW - timedelta(hours=2), kind="incomplete")]
    p = plan(sets, KeepPolicy(daily=7), NOW)
    assert kept_ids(p) == ["broken"] and ids(p.delete) == ["torn"]


def test_group_without_complete_set_keeps_everything() -> None:
    sets = [mkset("a", NOW - timedelta(days=3), kind="incomplete"),
            mkset("b", NOW - timedelta(days=9), kind="error")]
    p = plan(sets, KeepPolicy(daily=7), NOW)
    assert kept_ids(p) == ["a", "b"] and p.delete == []
    assert p.reasons("b") == ["no complete set in this group"]


def test_policy_applies_per_host_and_mount() -> None:
    sets = [
        mkset("db1-data-new", NOW - timedelta(hours=1)),
        mkset("db1-data-old", NOW - timedelta(days=1)),
        mkset("db1-wal-old", NOW - timedelta(days=40), mount="/wal"),
        mkset("db2-data-old", NOW - timedelta(days=60), host="db2"),
        mkset("db2-data-older", NOW - timedelta(days=61), host="db2"),
    ]
    p = plan(sets, KeepPolicy(last=1), NOW)
    # Ordered by (host, mount), newest first inside each group.
    assert kept_ids(p) == ["db1-data-new", "db1-wal-old", "db2-data-old"]
    assert ids(p.delete) == ["db1-data-old", "db2-data-older"]
    assert all("newest complete set" in r for _, r in p.keep)


def test_foreign_sets_are_ignored_never_deleted() -> None:
    sets = [mkset("ours", NOW - timedelta(hours=1)),
            mkset("manual", NOW - timedelta(days=100), by_opskit=False),
            mkset("ours-old", NOW - timedelta(days=100))]
    p = plan(sets, KeepPolicy(last=1), NOW)
    assert kept_ids(p) == ["ours"] and ids(p.delete) == ["ours-old"]
    assert ids(p.ignored) == ["manual"]


def test_hourly_and_monthly_buckets() -> None:
    times = [datetime(2026, 11, 24, 10, 59, tzinfo=UTC), datetime(2026, 11, 24, 10, 1, tzinfo=UTC),
             datetime(2026, 11, 24, 8, 30, tzinfo=UTC), datetime(2026, 10, 31, 23, 0, tzinfo=UTC),
             datetime(2026, 10, 1, 0, 0, tzinfo=UTC), datetime(2026, 8, 15, 0, 0, tzinfo=UTC)]
    sets = [mkset(f"s{i}", t) for i, t in enumerate(times)]
    p = plan(sets, KeepPolicy(hourly=2, monthly=3), NOW)
    assert kept_ids(p) == ["s0", "s2", "s3", "s5"]
    assert p.reasons("s2") == ["hourly 2026-11-24T08"]
    # September has no set, so it does not use up one of the 3 months.
    assert p.reasons("s5") == ["monthly 2026-08"]


def test_iso_week_across_new_year() -> None:
    # 2027-01-01 (Friday) belongs to ISO week 2026-W53, together with 2026-12-28.
    sets = [mkset("jan1", datetime(2027, 1, 1, tzinfo=UTC)),
            mkset("dec28", datetime(2026, 12, 28, tzinfo=UTC)),
            mkset("dec27", datetime(2026, 12, 27, tzinfo=UTC))]
    p = plan(sets, KeepPolicy(weekly=2), datetime(2027, 1, 2, tzinfo=UTC))
    assert kept_ids(p) == ["jan1", "dec27"]
    assert p.reasons("jan1")[1:] == ["weekly 2026-W53"]


def test_input_order_does_not_matter() -> None:
    sets = daily_sets(20) + [mkset("tie", NOW.replace(hour=4, minute=50, second=0))]
    shuffled = sets[:]
    random.Random(7).shuffle(shuffled)
    policy = KeepPolicy(last=2, daily=3, weekly=2)
    assert plan(sets, policy, NOW).to_dict() == plan(shuffled, policy, NOW).to_dict()
    # Equal times: the larger set id counts as newer.
    assert plan(sets, policy, NOW).reasons("tie")[0] == "newest complete set"


def test_plan_output_helpers() -> None:
    p = plan(daily_sets(3), KeepPolicy(last=1), NOW)
    assert p.delete_snapshot_ids == ["snap-d-2026-11-23-0", "snap-d-2026-11-23-1",
                                     "snap-d-2026-11-22-0", "snap-d-2026-11-22-1"]
    assert p.freed_gib == 400
    d = json.loads(json.dumps(p.to_dict()))
    assert d["policy"]["last"] == 1 and d["now"] == "2026-11-24T12:00:00Z"
    assert d["keep"][0]["reasons"] == ["newest complete set", "last 1 of 1"]


def test_plan_rejects_naive_now_and_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan([], KeepPolicy(last=1), datetime(2026, 11, 24))
    with pytest.raises(ValueError, match="duplicate set ids: x"):
        plan([mkset("x", NOW), mkset("x", NOW)], KeepPolicy(last=1), NOW)


def test_empty_input() -> None:
    p = plan([], KeepPolicy(last=1), NOW)
    assert p.keep == [] and p.delete == [] and p.ignored == []


# -- policy ----------------------------------------------------------------------------------


def test_policy_parse_forms() -> None:
    expected = KeepPolicy(last=3, daily=7, weekly=4)
    assert KeepPolicy.parse("last=3,daily=7,weekly=4") == expected
    assert KeepPolicy.parse(" keep-last=3  keep_daily=7, --keep-weekly=4 ") == expected
    assert KeepPolicy.parse({"last": 3, "daily": "7", "weekly": 4, "monthly": None}) == expected
    assert KeepPolicy.parse({"keep-daily": 7, "keep-last": 3, "keep-weekly": 4}) == expected


def test_policy_describe() -> None:
    assert KeepPolicy(last=3, daily=7, weekly=4).describe() == (
        "last 3, daily 7, weekly 4 (UTC buckets, ISO weeks)")
    assert KeepPolicy(last=2).describe() == "last 2"
    assert KeepPolicy(monthly=12).to_dict() == {"last": 0, "hourly": 0, "daily": 0,
                                                "weekly": 0, "monthly": 12}


@pytest.mark.parametrize(("make", "message"), [
    (lambda: KeepPolicy(daily=-1), "--keep-daily cannot be negative (got -1)"),
    (lambda: KeepPolicy.parse("daily=-2"), "--keep-daily cannot be negative (got -2)"),
    (lambda: KeepPolicy(), "refusing to prune with a policy that keeps nothing"),
    (lambda: KeepPolicy.parse("daily=0,last=0"), "a policy that keeps nothing"),
    (lambda: KeepPolicy.parse({}), "a policy that keeps nothing"),
    (lambda: KeepPolicy.parse("daily=seven"), "--keep-daily must be a whole number"),
    (lambda: KeepPolicy.parse({"daily": 1.5}), "--keep-daily must be a whole number"),
    (lambda: KeepPolicy(last=True), "--keep-last must be a whole number"),  # type: ignore[arg-type]
    (lambda: KeepPolicy.parse("yearly=1"), "unknown keep rule 'yearly'"),
    (lambda: KeepPolicy.parse("daily"), "bad keep rule 'daily': expected NAME=COUNT"),
    (lambda: KeepPolicy.parse("daily=1,keep-daily=2"), "keep rule 'daily' given twice"),
])
def test_policy_errors(make: Callable[[], object], message: str) -> None:
    with pytest.raises(UsageError) as exc:
        make()
    assert message in exc.value.message and "\n" not in exc.value.message
    assert exc.value.hint


# -- properties ------------------------------------------------------------------------------

# Crosses a new year, where ISO weeks and calendar weeks part ways (2026-W53).
BASE = datetime(2026, 11, 1, tzinfo=UTC)
SPAN = timedelta(days=90)
PROPS = settings(max_examples=200, deadline=None, database=None)

counts = st.one_of(st.just(0), st.integers(1, 8))
policies = st.tuples(st.one_of(st.just(0), st.integers(1, 5)), counts, counts, counts,
                     counts).filter(any).map(lambda t: KeepPolicy(*t))


KINDS = ("complete", "complete", "complete", "complete", "pending", "incomplete", "error")
HOSTS = ("db1", "db2", "db3")
MOUNTS = ("/data", "/wal")
ATTRS = len(KINDS) * 4 * len(HOSTS) * len(MOUNTS) * 96  # x 96 quarter-hours a day
DAYS = SPAN.days

# Day of a set: two in three at hot spots where rules have edges, the rest over 90 days.
days = st.one_of(
    st.integers(0, DAYS - 1),
    st.integers(DAYS - 3, DAYS - 1),  # last 3 days: fresh pending sets next to newer complete ones
    st.integers(55, 64),  # 2026-12-26..2027-01-04: ISO week 2026-W53 straddles the new year
)


def decode(i: int, day: int, attrs: int) -> SnapshotSet:
    """Set number ``i``; time of day, kind, owner, host and mount packed in one draw, because
    Hypothesis' cost per draw, not planning, is what bounds the examples per second."""
    attrs, kind = divmod(attrs, len(KINDS))
    attrs, ours = divmod(attrs, 4)  # 3 in 4 sets are ours
    attrs, host = divmod(attrs, len(HOSTS))
    quarter, mount = divmod(attrs, len(MOUNTS))
    # Quarter-hour grid: many same-hour/day collisions and some exact ties.
    created = BASE + timedelta(days=day, minutes=15 * quarter)
    return mkset(f"set-{i:02d}", created, kind=KINDS[kind], host=HOSTS[host],
                 mount=MOUNTS[mount], by_opskit=ours != 3)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[SnapshotSet], datetime]:
    """Up to 30 sets over ~90 days across 3 hosts x 2 mounts, with a 'now' just after."""
    # Size drawn first: Hypothesis' own list sizes are mostly tiny, and the interesting cases
    # (bucket collisions inside one group) need a dozen sets or more.
    size = draw(st.integers(0, 30))
    specs = draw(st.lists(st.tuples(days, st.integers(0, ATTRS - 1)),
                          min_size=size, max_size=size))
    now = BASE + SPAN + timedelta(minutes=draw(st.integers(0, 12 * 60)))
    return [decode(i, *spec) for i, spec in enumerate(specs)], now


def newest(sets: list[SnapshotSet]) -> list[SnapshotSet]:
    # The documented order, restated here so the tests do not trust the module's helper.
    return sorted(sets, key=lambda s: (s.created, s.set_id), reverse=True)


def complete_groups(sets: list[SnapshotSet]) -> dict[tuple[str, str], list[SnapshotSet]]:
    """Complete by_opskit sets per (host, mount), newest first."""
    groups: dict[tuple[str, str], list[SnapshotSet]] = {}
    for s in newest(sets):
        if s.by_opskit and s.complete:
            groups.setdefault((s.host, s.mount), []).append(s)
    return groups


def newest_in_recent_buckets(complete: list[SnapshotSet], bucket: Callable[[datetime], object],
                             n: int) -> set[str]:
    """Oracle: newest set of each of the n most recent buckets that have a set."""
    best: dict[object, SnapshotSet] = {}
    for s in complete:  # newest first, so the first seen per bucket is its newest
        best.setdefault(bucket(s.created), s)
    recent = sorted(best, key=lambda b: best[b].created, reverse=True)[:n]
    return {best[b].set_id for b in recent}


BUCKET_ORACLES: dict[str, Callable[[datetime], object]] = {
    "hourly": lambda t: (t.date(), t.hour),
    "daily": lambda t: t.date(),
    "weekly": lambda t: t.isocalendar()[:2],
    "monthly": lambda t: (t.year, t.month),
}


# Each invariant is a function so a failure names it; the generated history is shared by all
# of them because Hypothesis' per-example cost, not planning, dominates (budget: ~5 s a file).


def check_partition(sets: list[SnapshotSet], p: PrunePlan) -> None:
    """(a) keep, delete and ignored partition the input."""
    out = kept_ids(p) + ids(p.delete) + ids(p.ignored)
    assert sorted(out) == sorted(ids(sets)), "not a partition of the input"
    assert len(set(out)) == len(out), "a set is in two lists"


def check_foreign_untouched(sets: list[SnapshotSet], p: PrunePlan) -> None:
    """(b) a set opskit did not write is never deleted (nor kept: it is ignored)."""
    assert all(s.by_opskit for s in p.delete), "deleted a set opskit did not write"
    assert all(s.by_opskit for s, _ in p.keep)
    assert sorted(ids(p.ignored)) == sorted(s.set_id for s in sets if not s.by_opskit)


def check_newest_complete_kept(sets: list[SnapshotSet], p: PrunePlan) -> None:
    """(c) the newest complete set of every (host, mount) is kept, with that reason."""
    marked = {s.set_id for s, r in p.keep if "newest complete set" in r}
    assert marked == {group[0].set_id for group in complete_groups(sets).values()}


def check_reasons(sets: list[SnapshotSet], p: PrunePlan, now: datetime) -> None:
    """(d) every kept set has a reason; an unfinished set deleted is old and superseded."""
    assert all(reasons for _, reasons in p.keep), "kept a set without a reason"
    young_pending = {s.set_id for s in sets if s.by_opskit and s.state == "pending"
                     and now - s.created < timedelta(days=1)}
    assert young_pending <= {s.set_id for s, r in p.keep if "pending" in r}
    groups = complete_groups(sets)
    for s in p.delete:
        if not s.complete:
            top = groups[(s.host, s.mount)][0]
            assert (s.created, s.set_id) < (top.created, top.set_id)
            assert not (s.state == "pending" and now - s.created < timedelta(days=1))


def check_last_n(sets: list[SnapshotSet], p: PrunePlan, n: int) -> None:
    """(e) last=N keeps the N newest complete sets of each group."""
    kept = set(kept_ids(p))
    for group in complete_groups(sets).values():
        assert {s.set_id for s in group[:n]} <= kept, f"last={n} not honoured"


def check_idempotent(p: PrunePlan) -> None:
    """(f) planning again on what survived deletes nothing more and gives the same reasons."""
    again = plan([s for s, _ in p.keep] + p.ignored, p.policy, p.now)
    assert again.delete == [], "a second prune would delete more"
    assert [(s.set_id, r) for s, r in again.keep] == [(s.set_id, r) for s, r in p.keep]


def check_daily_n(sets: list[SnapshotSet], p: PrunePlan, n: int) -> None:
    """(g) daily=N keeps the newest complete set of each of the N most recent days with one."""
    kept = set(kept_ids(p))
    for group in complete_groups(sets).values():
        for day in sorted({s.created.date() for s in group}, reverse=True)[:n]:
            newest_that_day = max((s for s in group if s.created.date() == day),
                                  key=lambda s: (s.created, s.set_id))
            assert newest_that_day.set_id in kept, f"daily={n}: {day} not kept"


def check_nothing_extra(sets: list[SnapshotSet], p: PrunePlan) -> None:
    """Complete sets kept are exactly those some rule asks for, by an independent oracle."""
    kept_complete = {s.set_id for s, _ in p.keep if s.complete}
    wanted: set[str] = set()
    for group in complete_groups(sets).values():
        wanted |= {group[0].set_id} | {s.set_id for s in group[:p.policy.last]}
        for rule, bucket in BUCKET_ORACLES.items():
            wanted |= newest_in_recent_buckets(group, bucket, getattr(p.policy, rule))
    assert kept_complete == wanted


@PROPS
@given(histories(), policies)
def test_prop_plan_invariants(history: tuple[list[SnapshotSet], datetime],
                              policy: KeepPolicy) -> None:
    """(a)-(g) and the oracle, for random histories and random policies."""
    sets, now = history
    p = plan(sets, policy, now)
    check_partition(sets, p)
    check_foreign_untouched(sets, p)
    check_newest_complete_kept(sets, p)
    check_reasons(sets, p, now)
    check_last_n(sets, p, policy.last)
    check_daily_n(sets, p, policy.daily)
    check_nothing_extra(sets, p)
    check_idempotent(p)


@PROPS
@given(histories(), st.integers(1, 10))
def test_prop_daily_only(history: tuple[list[SnapshotSet], datetime], n: int) -> None:
    """(g) on its own: with only daily=N, no other rule can hide a missed day."""
    sets, now = history
    p = plan(sets, KeepPolicy(daily=n), now)
    check_partition(sets, p)
    check_daily_n(sets, p, n)
    check_nothing_extra(sets, p)
    check_idempotent(p)
