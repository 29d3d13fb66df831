"""A set taken outside its freeze window: delete it, or else mark it, and say so in one line.

``snapshot create`` comes here when the freeze guard did not vouch that the freeze held until
the snapshot call returned (:attr:`~opskit.snapshot.freeze.FreezeWindow.held`). Such
snapshots may hold a torn filesystem, so they must never pass for a backup: they are
deleted; those that cannot be deleted are tagged ``opskit:consistent=false``, which
``sets.py`` shows as ``inconsistent`` (never complete) and prune deletes. They carry no
member tags either, so even a lost consistent tag leaves the set incomplete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opskit import aws
from opskit.snapshot.freeze import FreezeWindow, ThawNotConfirmed
from opskit.snapshot.sets import CONSISTENT, SET_ID
from opskit.transport.errors import CommandFailed

CALLS = {"CreateSnapshots": "CreateSnapshots", "CreateSnapshot per volume":
         "the CreateSnapshot calls"}


class InconsistentSet(CommandFailed):
    """The host's snapshots were not taken inside the freeze (exit 2, with a hint)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def discard(ec2: Any, where: str, set_id: str, method: str, returned: Sequence[str],
            window: FreezeWindow, took_s: float,
            thaw: ThawNotConfirmed | None = None) -> InconsistentSet:
    """Delete the set's snapshots (tag the ones that stay); the error to raise for the host."""
    snapshots = _of_set(ec2, set_id, returned)
    left, why_left = _delete(ec2, snapshots)
    n = len(snapshots)
    noun = f"{n} snapshot{'s' if n != 1 else ''}"
    if not snapshots:
        fate = "and no snapshot came back"
    elif not left:
        fate = f"its {noun} {'were' if n != 1 else 'was'} deleted"
    else:
        tagged = _mark(ec2, left)
        fate = (f"{len(left)} of its {noun} could not be deleted ({why_left}) and "
                + (f"are tagged {CONSISTENT}=false" if tagged is None
                   else f"could not be tagged either ({tagged}): delete them by hand")
                + f": {' '.join(left)}")
    call = CALLS.get(method, method)
    when = (f"gave no answer to THAW after {call} returned" if window.reason is None
            else f"{window.why()} before {call} returned")
    message = (f"{where}: the freeze guard {when} (took {took_s:.1f}s): the set is not "
               f"consistent, {fate}")
    hint = _hint(window)
    if thaw is not None:
        message += "; THAW NOT CONFIRMED"
        hint = f"{thaw.hint}; then {hint}"
    return InconsistentSet(message, hint)


def _of_set(ec2: Any, set_id: str, returned: Sequence[str]) -> list[str]:
    """The call's snapshots, and any other carrying the set's id: a slow call that botocore
    retried after its read timeout made snapshots that no response ever named."""
    try:
        found = aws.call(lambda: [
            snap["SnapshotId"]
            for page in ec2.get_paginator("describe_snapshots").paginate(
                OwnerIds=["self"], Filters=[{"Name": f"tag:{SET_ID}", "Values": [set_id]}])
            for snap in page.get("Snapshots", [])], error=CommandFailed)
    except CommandFailed:
        found = []  # the returned ones are still known: go on with those
    return list(dict.fromkeys([*returned, *found]))


def _delete(ec2: Any, snapshots: Sequence[str]) -> tuple[list[str], str]:
    """The snapshots that could not be deleted, and the first reason why."""
    left, why = [], ""
    for snap in snapshots:
        try:
            aws.call(lambda snap=snap: ec2.delete_snapshot(SnapshotId=snap),
                     error=CommandFailed)
        except CommandFailed as exc:
            left.append(snap)
            why = why or str(exc)
    return left, why


def _mark(ec2: Any, snapshots: Sequence[str]) -> str | None:
    """Tag ``snapshots`` inconsistent in one call (most likely to get through); the error."""
    try:
        aws.call(lambda: ec2.create_tags(Resources=list(snapshots),
                                         Tags=[{"Key": CONSISTENT, "Value": "false"}]),
                 error=CommandFailed)
    except CommandFailed as exc:
        return str(exc)
    return None


def _hint(window: FreezeWindow) -> str:
    if window.reason == "already":
        return ("something else thawed the filesystem during the snapshot (an fsfreeze -u?); "
                "retry when nothing else freezes it")
    if window.reason in ("eof", "signal", None):
        return "the guard's connection or process ended early: check the host, then retry"
    return (f"raise --freeze-timeout (or snapshot.freeze_timeout, now {window.timeout:g}s) "
            "above how long the snapshot call takes, or find out why AWS was slow; then retry")
