"""opskit.redis.actions with redis-cli replaced by a script of replies: the order of a
switchover's commands (no acknowledged write lost, no wait for Redis's once-a-second ACK)
and writes unpaused when the target does not catch up."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from opskit.redis import actions
from opskit.transport.errors import CommandFailed

MASTER = SimpleNamespace(name="redis1:6379", address="10.0.0.1", port=6379)
TARGET = SimpleNamespace(name="redis2:6379", address="10.0.0.2", port=6379)


class Redis:
    """Stands in for opskit.redis.tools: records each command; the target replays up to
    ``caught_up_after`` INFO probes, the master's failover ends at its first probe."""

    def __init__(self, caught_up_after: int | None = 2) -> None:
        self.done: list[str] = []
        self.caught_up_after, self.target_probes = caught_up_after, 0

    def transaction(self, s: Any, i: Any, commands: Sequence[Sequence[str]]) -> list[str]:
        self.done.append(f"{i.name}: MULTI " + "; ".join(" ".join(c) for c in commands))
        replies = ["OK"] * len(commands)
        if commands[-1][0] == "ROLE":  # as redis-cli prints it: one line per element
            replies[-1:] = ["master", "500", "10.0.0.2", "6379", "480"]
        return replies

    def call(self, s: Any, i: Any, *args: str) -> str:
        self.done.append(f"{i.name}: {' '.join(args)}")
        if args[:1] != ("INFO",):
            return "OK"
        if i is TARGET:
            self.target_probes += 1
            ready = self.caught_up_after is not None and \
                self.target_probes >= self.caught_up_after
            return ("role:slave\nmaster_link_status:up\nslave_repl_offset:"
                    + ("500" if ready else "480"))
        return "role:slave\nmaster_failover_state:no-failover"


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> Redis:
    r = Redis()
    monkeypatch.setattr(actions, "tools", r)
    return r


def test_failover_pauses_waits_for_the_target_then_forces_the_swap(redis: Redis) -> None:
    actions.failover_to(None, MASTER, TARGET, 5000)  # type: ignore[arg-type]
    assert redis.done == [
        "redis1:6379: MULTI CLIENT PAUSE 10000 WRITE; ROLE",
        "redis2:6379: INFO replication",  # offset 480 of 500: not yet
        "redis2:6379: INFO replication",  # 500: every write the master took
        "redis1:6379: MULTI FAILOVER TO 10.0.0.2 6379 TIMEOUT 1 FORCE; CLIENT UNPAUSE",
        "redis1:6379: INFO replication",  # the failover is done, redis1 a replica
        "redis1:6379: CONFIG REWRITE"]


def test_a_target_that_does_not_catch_up_leaves_the_master_unpaused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    r = Redis(caught_up_after=None)
    monkeypatch.setattr(actions, "tools", r)
    with pytest.raises(CommandFailed, match="did not catch up in 100 ms .*offset 480 of 500"):
        actions.failover_to(None, MASTER, TARGET, 100)  # type: ignore[arg-type]
    assert r.done[0].startswith("redis1:6379: MULTI CLIENT PAUSE")
    assert not any("FAILOVER" in d for d in r.done)
    assert r.done[-1] == "redis1:6379: CLIENT UNPAUSE"


def test_make_master_needs_no_second_round_trip(redis: Redis) -> None:
    actions.make_master(None, TARGET)  # type: ignore[arg-type]
    assert redis.done == ["redis2:6379: MULTI REPLICAOF NO ONE; CONFIG REWRITE; ROLE"]
