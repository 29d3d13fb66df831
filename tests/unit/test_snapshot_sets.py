"""Grouping describe_snapshots output into snapshot sets, and judging each set."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from opskit.snapshot import sets
from opskit.snapshot.sets import SnapshotSet

T0 = datetime(2026, 11, 24, 4, 50, 12, 345000, tzinfo=timezone.utc)


def snap(set_id: str, member: int | str | None, *, members: str = "4", state: str = "completed",
         created: str = "2026-11-24T04:50:12Z", host: str = "db1", mount: str = "/data",
         snapshot_id: str | None = None, size: int = 500, by_opskit: bool = True,
         extra: dict[str, str] | None = None) -> dict[str, Any]:
    """One snapshot as boto3's describe_snapshots returns it."""
    tags = {
        "opskit:set-id": set_id, "opskit:host": host, "opskit:mount": mount,
        "opskit:array": "/dev/md0", "opskit:members": members, "opskit:created": created,
        "opskit:retention": "default", "Name": f"{host}:{mount} 2026-11-24 04:50Z",
        **(extra or {}),
    }
    if member is not None:
        tags["opskit:member"] = str(member)
    if by_opskit:
        tags["opskit:created-by"] = "opskit 0.1.0 root@ops1"
    return {
        "SnapshotId": snapshot_id or f"snap-{set_id}-{member}",
        "VolumeId": f"vol-0{member}",
        "State": state,
        "Progress": "100%" if state == "completed" else "42%",
        "StartTime": T0,
        "VolumeSize": size,
        "OwnerId": "123456789012",
        "Encrypted": True,
        "Description": f"opskit {set_id} member {member}",
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }


def whole(set_id: str, **kw: Any) -> list[dict[str, Any]]:
    return [snap(set_id, i, **kw) for i in range(4)]


def only(snapshots: list[dict[str, Any]]) -> SnapshotSet:
    (s,) = sets.group(snapshots)
    return s


def test_complete_set_of_four() -> None:
    # Members arrive out of order, as describe_snapshots does not sort.
    s = only(list(reversed(whole("db1-data-1", extra={"team": "dba"}))))
    assert s.complete and s.state == "complete" and s.reason is None
    assert (s.set_id, s.host, s.mount, s.array) == ("db1-data-1", "db1", "/data", "/dev/md0")
    assert s.created == datetime(2026, 11, 24, 4, 50, 12, tzinfo=timezone.utc)
    assert s.expected_members == 4 and s.missing == [] and s.size_gib == 2000
    assert [m.index for m in s.members] == [0, 1, 2, 3]
    assert s.members[0].snapshot_id == "snap-db1-data-1-0" and s.members[0].start_time == T0
    assert s.by_opskit and s.retention == "default"
    # Common tags include user tags but not the per-member index.
    assert s.tags["team"] == "dba" and "opskit:member" not in s.tags


def test_one_member_pending() -> None:
    snaps = whole("s1")
    snaps[2] = snap("s1", 2, state="pending")
    s = only(snaps)
    assert not s.complete and s.state == "pending"
    assert s.reason == "1 member pending" and s.missing == []


def test_missing_member() -> None:
    s = only([snap("s1", i) for i in (0, 1, 3)])
    assert s.state == "incomplete" and s.missing == [2] and not s.complete
    assert "missing member 2" in (s.reason or "")


def test_duplicate_member_index_is_incomplete() -> None:
    snaps = [*whole("s1"), snap("s1", 1, snapshot_id="snap-extra")]
    s = only(snaps)
    assert s.state == "incomplete" and s.duplicates == [1] and s.missing == []
    assert "duplicate member 1" in (s.reason or "")


def test_duplicate_hiding_a_missing_member() -> None:
    # Four snapshots for four members, yet index 3 is missing: the count alone must not pass.
    snaps = [snap("s1", i) for i in (0, 1, 2)] + [snap("s1", 2, snapshot_id="snap-dup")]
    s = only(snaps)
    assert not s.complete and s.missing == [3] and s.duplicates == [2]


def test_index_out_of_range_is_incomplete() -> None:
    s = only([snap("s1", i, members="2") for i in (0, 1, 2)])
    assert s.state == "incomplete" and s.unexpected == [2]


def test_error_member() -> None:
    snaps = whole("s1")
    snaps[0] = snap("s1", 0, state="error")
    s = only(snaps)
    assert s.state == "error" and "1 member error" in (s.reason or "")


def test_snapshots_without_set_id_are_ignored() -> None:
    stray = {"SnapshotId": "snap-manual", "VolumeId": "vol-9", "State": "completed",
             "Progress": "100%", "StartTime": T0, "VolumeSize": 8, "Description": "manual"}
    tagged = {**stray, "SnapshotId": "snap-other", "Tags": [{"Key": "Name", "Value": "x"}]}
    result = sets.group([stray, tagged, *whole("s1")])
    assert [s.set_id for s in result] == ["s1"] and len(result[0].members) == 4


def test_set_without_created_by_is_not_by_opskit() -> None:
    s = only(whole("s1", by_opskit=False))
    assert not s.by_opskit and s.complete
    # One member lacking it is enough: prune must only touch what opskit wrote.
    snaps = whole("s2")
    snaps[3] = snap("s2", 3, by_opskit=False)
    assert not only(snaps).by_opskit


def test_malformed_member_tag_does_not_crash() -> None:
    snaps = whole("s1")
    snaps[1] = snap("s1", "one")
    s = only(snaps)
    assert s.state == "incomplete" and not s.complete
    assert s.members[0].index is None  # unreadable indexes sort first
    assert "bad opskit:member tag 'one'" in (s.reason or "") and s.missing == [1]


def test_missing_member_tag() -> None:
    snaps = whole("s1")
    snaps[3] = snap("s1", None)
    s = only(snaps)
    assert s.state == "incomplete" and "has no opskit:member tag" in (s.reason or "")


def test_bad_member_count_and_created_date() -> None:
    s = only(whole("s1", members="four", created="yesterday"))
    assert s.state == "incomplete" and s.expected_members is None
    assert "bad opskit:members tag 'four'" in (s.reason or "")
    assert "bad opskit:created tag 'yesterday'" in (s.reason or "")
    # Falls back to the earliest StartTime, so the set still sorts where it belongs.
    assert s.created == T0 and s.created.tzinfo is not None


def test_members_disagreeing_on_created() -> None:
    snaps = whole("s1")
    snaps[0] = snap("s1", 0, created="2026-11-24T05:00:00Z")
    s = only(snaps)
    assert s.state == "incomplete" and "members disagree on opskit:created" in (s.reason or "")
    assert s.created == datetime(2026, 11, 24, 4, 50, 12, tzinfo=timezone.utc)


def test_no_tags_and_odd_values_do_not_crash() -> None:
    odd = {"SnapshotId": "snap-x", "Tags": [{"Key": "opskit:set-id", "Value": "s9"}, {"Oops": 1}],
           "StartTime": "2026-11-20T10:00:00+02:00", "VolumeSize": None}
    s = only([odd])
    assert s.state == "incomplete" and not s.by_opskit and s.size_gib == 0
    assert s.created == datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
    assert s.reason and "no opskit:members tag" in s.reason
    json.dumps(s.to_dict())


def test_created_with_offset_is_converted_to_utc() -> None:
    s = only(whole("s1", created="2026-11-24T06:50:12+02:00"))
    assert s.created == datetime(2026, 11, 24, 4, 50, 12, tzinfo=timezone.utc) and s.complete


def test_newest_first_and_stable_ties() -> None:
    snaps = [*whole("a-old", created="2026-11-01T00:00:00Z"),
             *whole("b-new", created="2026-11-24T04:50:12Z"),
             *whole("a-new", created="2026-11-24T04:50:12Z", host="db2")]
    assert [s.set_id for s in sets.group(snaps)] == ["b-new", "a-new", "a-old"]


def test_to_dict_is_json() -> None:
    snaps = whole("s1")
    snaps[0] = snap("s1", 0, state="pending")
    d = json.loads(json.dumps(only(snaps).to_dict()))
    assert d["state"] == "pending" and d["created"] == "2026-11-24T04:50:12Z"
    assert d["size_gib"] == 2000 and len(d["members"]) == 4 and d["missing"] == []
    assert d["members"][0]["start_time"] == "2026-11-24T04:50:12Z"


# -- sets taken outside the freeze window (opskit:consistent=false) ---------------------------


def test_consistent_false_on_every_member_is_inconsistent_never_complete() -> None:
    s = only(whole("s1", extra={"opskit:consistent": "false"}))
    assert not s.consistent and not s.complete and s.state == "inconsistent"
    assert s.reason is not None and "not consistent" in s.reason
    d = json.loads(json.dumps(s.to_dict()))
    assert d["state"] == "inconsistent" and d["complete"] is False and d["consistent"] is False


def test_one_member_saying_inconsistent_is_enough() -> None:
    snaps = whole("s1")
    snaps[2] = snap("s1", 2, extra={"opskit:consistent": "false"})
    assert only(snaps).state == "inconsistent"


def test_inconsistent_wins_over_missing_member_tags() -> None:
    # What create leaves when deletion fails: no member tags, only the consistent=false mark.
    s = only([snap("s1", None, snapshot_id=f"snap-{i}", extra={"opskit:consistent": "false"})
              for i in range(4)])
    assert s.problems and s.state == "inconsistent" and not s.complete
    assert s.reason is not None and s.reason.startswith("not consistent")


def test_damaged_consistent_value_cannot_vouch() -> None:
    assert only(whole("s1", extra={"opskit:consistent": "yes?"})).state == "inconsistent"


def test_consistent_true_or_absent_is_complete() -> None:
    for extra in ({}, {"opskit:consistent": "true"}, {"opskit:consistent": " True "}):
        s = only(whole("s1", extra=extra))
        assert s.consistent and s.complete and s.state == "complete", extra
