"""The autoscaling decision, rule by rule."""

from __future__ import annotations

import pytest

from taureau.functions.scaler import Decision, ScaleInput, decide


def state(**changes) -> ScaleInput:
    base = dict(current=1, running=1, minimum=0, maximum=4, backlog=0, pending_invocations=0, rate=100.0,
                idle_s=0.0, quiet_s=0.0, since_change_s=10.0, idle_timeout_s=60.0)
    base.update(changes)
    return ScaleInput(**base)


@pytest.mark.parametrize("given,expected", [
    # 1. wake from zero
    (state(current=0, running=0, backlog=5), Decision(1, "woke up: backlog 5")),
    (state(current=0, running=0, minimum=2, backlog=5), Decision(2, "woke up: backlog 5")),
    (state(current=0, running=0, pending_invocations=1), Decision(1, "woke up: 1 invocation(s) waiting")),
    (state(current=0, running=0), None),
    # 2. scale out on a backlog that drains too slowly, in proportion, capped
    (state(backlog=2000, rate=100), Decision(4, "backlog 2000 at 100 msg/s would take 20.0s")),
    (state(backlog=700, rate=100), Decision(2, "backlog 700 at 100 msg/s would take 7.0s")),
    (state(backlog=400, rate=100), None),  # 4 s: fast enough
    (state(backlog=2000, rate=100, since_change_s=1.0), None),  # cooling down after a change
    (state(backlog=2000, rate=100, current=4, running=4), None),  # at the ceiling
    (state(backlog=2000, rate=0), None),  # no rate yet: nothing to extrapolate from
    # 2b. invocations waiting
    (state(pending_invocations=3), Decision(3, "3 invocations waiting for 1 instance(s)")),
    (state(pending_invocations=9), Decision(4, "9 invocations waiting for 1 instance(s)")),
    # 3. idle: down to the floor (zero)
    (state(idle_s=61, quiet_s=61, since_change_s=100), Decision(0, "idle for 61s")),
    (state(current=3, minimum=1, idle_s=61, quiet_s=61, since_change_s=100), Decision(1, "idle for 61s")),
    (state(idle_s=30, quiet_s=30, since_change_s=100), None),
    (state(idle_s=61, quiet_s=61, since_change_s=10), None),  # a change this recent holds
    # 4. no backlog but some traffic: one fewer, never below one
    (state(current=3, idle_s=61, quiet_s=5, rate=2.0, since_change_s=100),
     Decision(2, "no backlog for 61s at 2.0 msg/s")),
    (state(current=1, idle_s=61, quiet_s=5, since_change_s=100), None),
])
def test_decide(given, expected):
    assert decide(given) == expected
