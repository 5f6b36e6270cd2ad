"""How many instances an autoscaled function should run: a pure decision, table-tested.

The rules, in order:
1. Nothing running and work waiting (a backlog, an invocation): wake to max(min, 1).
2. A backlog that the running instances would take more than TARGET_DRAIN_S to clear at
   their measured rate: scale up in proportion, at most to max. More invocations waiting than
   instances (each serves one at a time): one instance per waiting invocation, at most max.
3. No backlog and nothing received for the idle timeout: scale down to min (zero if min is 0).
4. No backlog for the idle timeout but some traffic: one instance fewer (never below 1).
Up-scaling waits UP_COOLDOWN_S after a change (new instances need a moment to show their
rate); down-scaling waits the idle timeout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TARGET_DRAIN_S = 5.0
UP_COOLDOWN_S = 2.0


@dataclass(frozen=True, slots=True)
class ScaleInput:
    current: int  # instances wanted now
    running: int  # of which are up and reporting
    minimum: int
    maximum: int
    backlog: int  # unacknowledged messages on the function's subscription
    pending_invocations: int  # HTTP / cron invocations waiting for an instance
    rate: float  # messages/s the running instances processed lately
    idle_s: float  # seconds since the backlog was last non-zero or a message was received
    quiet_s: float  # seconds since anything at all was received
    since_change_s: float  # seconds since the last scaling decision took effect
    idle_timeout_s: float


@dataclass(frozen=True, slots=True)
class Decision:
    target: int
    reason: str


def decide(s: ScaleInput) -> Decision | None:
    """The new instance count and why, or None to leave it as it is."""
    floor = max(s.minimum, 0)
    if s.current == 0:
        if s.backlog > 0 or s.pending_invocations > 0:
            what = f"backlog {s.backlog}" if s.backlog else f"{s.pending_invocations} invocation(s) waiting"
            return Decision(max(floor, 1), f"woke up: {what}")
        return None
    if s.current < s.maximum and s.since_change_s >= UP_COOLDOWN_S:
        if s.backlog > 0 and s.running > 0 and s.rate > 0:
            drain_s = s.backlog / s.rate
            if drain_s > TARGET_DRAIN_S:
                target = min(s.maximum, max(s.current + 1, math.ceil(s.current * drain_s / TARGET_DRAIN_S)))
                return Decision(target, f"backlog {s.backlog} at {s.rate:.0f} msg/s would take {drain_s:.1f}s")
        if s.pending_invocations > s.current:
            return Decision(min(s.maximum, s.pending_invocations),
                            f"{s.pending_invocations} invocations waiting for {s.current} instance(s)")
    if s.backlog == 0 and s.pending_invocations == 0 and s.idle_s >= s.idle_timeout_s \
            and s.since_change_s >= s.idle_timeout_s:
        if s.quiet_s >= s.idle_timeout_s and s.current > floor:
            return Decision(floor, f"idle for {s.quiet_s:.0f}s")
        if s.current > max(floor, 1):
            return Decision(s.current - 1, f"no backlog for {s.idle_s:.0f}s at {s.rate:.1f} msg/s")
    return None
