"""Taking a host out of its ELBv2 target group for its deploy, and back in.

A host takes part when its vars name ``deploy.target_group_arn`` and ``aws.instance_id``.
Waits are bounded: draining by ``deploy.drain_timeout`` (then AWS's own deregistration delay
finishes it), healthy-again by ``deploy.healthy_timeout`` (then the host counts as failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opskit import aws
from opskit.deploy.config import DeployConfig
from opskit.inventory import Host
from opskit.runner import wait
from opskit.transport.errors import CommandFailed

POLL = 0.25


@dataclass(frozen=True)
class Target:
    arn: str
    instance_id: str
    client: Any

    def state(self) -> str:
        """The target's health state; 'unused' once it is out of the group."""
        resp = self.client.describe_target_health(
            TargetGroupArn=self.arn, Targets=[{"Id": self.instance_id}]
        )
        descs = resp.get("TargetHealthDescriptions", [])
        return descs[0]["TargetHealth"]["State"] if descs else "unused"


def target_for(host: Host, cfg: DeployConfig) -> Target | None:
    instance = cfg.aws.get("instance_id")
    if not cfg.target_group_arn or not instance:
        return None
    return Target(cfg.target_group_arn, instance, aws.client("elbv2", cfg.aws))


def _wait(t: Target, done: Callable[[str], bool], timeout: float) -> tuple[str, float]:
    """The target's state once ``done`` (or at the deadline: callers report it, not fail)."""
    start = time.monotonic()

    def probe() -> tuple[bool, str]:
        state = t.state()
        return done(state), state

    try:
        state = wait.until(probe, what=f"{t.instance_id} in the target group", timeout=timeout,
                           interval=POLL)
    except wait.WaitTimedOut as exc:
        state = str(exc.seen)
    return state, time.monotonic() - start


def deregister(t: Target, drain_timeout: float, note: Callable[[str], None]) -> dict[str, Any]:
    # Out of the group already (a deploy interrupted between its deregister and register):
    # nothing to drain, and DeregisterTargets would refuse a target that is not registered.
    before = aws.call(t.state, "read target health", error=CommandFailed)
    if before == "unused":
        note(f"{t.instance_id} is not in the target group: nothing to drain")
        return {"deregistered": False, "drain_state": before, "drain_seconds": 0.0}
    aws.call(lambda: t.client.deregister_targets(TargetGroupArn=t.arn,
                                                 Targets=[{"Id": t.instance_id}]),
             "deregister from target group", error=CommandFailed)
    note(f"draining {t.instance_id} (up to {drain_timeout:g}s)")
    state, waited = aws.call(lambda: _wait(t, lambda s: s == "unused", drain_timeout),
                             "wait for draining", error=CommandFailed)
    return {"deregistered": True, "drain_state": state, "drain_seconds": round(waited, 3)}


def register(t: Target, healthy_timeout: float, note: Callable[[str], None]) -> dict[str, Any]:
    aws.call(lambda: t.client.register_targets(TargetGroupArn=t.arn,
                                               Targets=[{"Id": t.instance_id}]),
             "register in target group", error=CommandFailed)
    note(f"waiting for {t.instance_id} to be healthy (up to {healthy_timeout:g}s)")
    state, waited = aws.call(lambda: _wait(t, lambda s: s == "healthy", healthy_timeout),
                             "wait for healthy", error=CommandFailed)
    if state != "healthy":
        raise CommandFailed(f"target {t.instance_id} is {state}, not healthy, after "
                         f"{healthy_timeout:g}s in the target group")
    return {"registered": True, "healthy_seconds": round(waited, 3)}
